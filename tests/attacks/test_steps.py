"""Tests for tfadv.attacks.steps: ascent steps, projections and random starts (Linf and L2)."""

import numpy as np
import pytest
import tensorflow as tf

from tfadv.attacks import steps as steps_lib


def test_get_norms():
    assert steps_lib.get("linf").name == "linf"
    assert steps_lib.get("inf").name == "linf"
    assert steps_lib.get("L2").name == "l2"
    with pytest.raises(ValueError, match="Received"):
        steps_lib.get("l1")


def test_linf_step_and_projection_hand_values():
    step = steps_lib.get("linf")
    x = tf.constant([[0.5, 0.5, 0.5]])
    grad = tf.constant([[2.0, -0.1, 0.0]])
    np.testing.assert_allclose(step.step(x, grad, 0.1).numpy(), [[0.6, 0.4, 0.5]], atol=1e-7)
    x_adv = tf.constant([[0.9, 0.1, 0.52]])
    np.testing.assert_allclose(step.project(x_adv, x, 0.05).numpy(), [[0.55, 0.45, 0.52]],
                               atol=1e-7)
    np.testing.assert_allclose(step.norm(x_adv - x).numpy(), [0.4], atol=1e-7)


def test_l2_step_and_projection_hand_values():
    step = steps_lib.get("l2")
    x = tf.zeros((2, 2))
    grad = tf.constant([[3.0, 4.0], [0.0, 0.0]])
    # normalised gradient (3/5, 4/5); a zero gradient does not move (no NaN)
    np.testing.assert_allclose(step.step(x, grad, 0.5).numpy(), [[0.3, 0.4], [0.0, 0.0]],
                               atol=1e-7)
    x_adv = tf.constant([[3.0, 4.0], [0.3, 0.4]])
    # norm 5 -> scaled to radius 1; norm 0.5 is inside and unchanged
    np.testing.assert_allclose(step.project(x_adv, x, 1.0).numpy(), [[0.6, 0.8], [0.3, 0.4]],
                               atol=1e-6)
    np.testing.assert_allclose(step.norm(x_adv - x).numpy(), [5.0, 0.5], atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_uniform_start_inside_ball_and_spread(norm):
    step = steps_lib.get(norm)
    x = tf.fill((500, 4, 4, 1), 0.5)
    eps = 0.2
    x0 = step.random_init(x, eps, "uniform", seed=3)
    norms = step.norm(x0 - x).numpy()
    assert np.all(norms <= eps + 1e-6)
    if norm == "linf":  # coordinates uniform on [-eps, eps]
        delta = (x0 - x).numpy()
        assert abs(delta.mean()) < 0.01 and abs(delta.std() - eps / np.sqrt(3)) < 0.01
    else:  # uniform in a 16-dim ball: radius eps*U^(1/16), median eps*0.5^(1/16)
        assert np.median(norms) == pytest.approx(eps * 0.5 ** (1 / 16), rel=0.03)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_gaussian_and_none_starts(norm):
    step = steps_lib.get(norm)
    x = tf.fill((200, 8, 8, 1), 0.5)
    np.testing.assert_array_equal(step.random_init(x, 0.1, "none").numpy(), x.numpy())
    delta = (step.random_init(x, 0.1, "gaussian", gaussian_std=1e-3) - x).numpy()
    assert abs(delta.std() - 1e-3) < 1e-4 and abs(delta.mean()) < 1e-4
    with pytest.raises(ValueError, match="Received"):
        step.random_init(x, 0.1, "laplace")
