"""Tests for DeepFool (L2 and Linf)."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from tfadv import attacks
from tests import testing
from tests.attacks.test_core import EPS, RANGES, assert_in_ball_and_range, batch_in_range


def norms(delta, norm):
    flat = np.asarray(delta, np.float64).reshape(len(delta), -1)
    return np.abs(flat).max(-1) if norm == "linf" else np.sqrt((flat ** 2).sum(-1))


@pytest.mark.parametrize("pixel_range", RANGES)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_stays_in_ball_and_range(tiny_model, norm, pixel_range):
    x, y = batch_in_range(pixel_range, seed=1)
    y = testing.predicted(tiny_model, x).astype("int32")  # all correctly classified: every example moves
    eps = EPS[(norm, pixel_range)]
    attack = attacks.get("deepfool", norm=norm, eps=eps, max_iter=5, pixel_range=pixel_range)
    x_adv = attack(tiny_model, x, y)
    assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)
    assert np.abs(x_adv.numpy() - x).max() > 1e-3


@pytest.fixture(scope="module")
def affine_binary():
    """logits = flatten(x) @ W + b with 2 classes; class 0 wins at x by a small margin."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 2)).astype("float32")
    b = np.zeros(2, "float32")
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.layers[-1].set_weights([w, b])
    x = rng.uniform(0.4, 0.6, size=(6, 4, 4, 1)).astype("float32")
    z = x.reshape(6, -1) @ w
    b[0] = 0.3 - (z[:, 0] - z[:, 1]).min()  # margin z0 - z1 >= 0.3 for every example
    model.layers[-1].set_weights([w, b])
    z = x.reshape(6, -1) @ w + b
    return model, x, np.zeros(6, "int32"), w, z


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_affine_binary_model_gets_the_analytic_minimal_perturbation(affine_binary, norm):
    model, x, y, w, z = affine_binary
    w_diff = (w[:, 1] - w[:, 0]).astype(np.float64)
    f_diff = (z[:, 1] - z[:, 0]).astype(np.float64)  # < 0: class 0 wins
    overshoot = 0.02
    if norm == "l2":  # r* = |f'| / ‖w'‖₂² · w'  (DeepFool eq. 3)
        dist = np.abs(f_diff) / np.linalg.norm(w_diff)
        direction = w_diff / np.linalg.norm(w_diff)
    else:  # r* = |f'| / ‖w'‖₁ · sign(w')  (sec. 3.3, q = 1)
        dist = np.abs(f_diff) / np.abs(w_diff).sum()
        direction = np.sign(w_diff)
    # One linearisation step is exact for an affine model; 1e-4 is the release's stabiliser.
    expected = x.reshape(6, -1) + (1 + overshoot) * (dist + 1e-4)[:, None] * direction
    assert 0.0 < expected.min() and expected.max() < 1.0  # the range does not bind
    x_adv = attacks.get("deepfool", norm=norm, overshoot=overshoot)(model, x, y).numpy()
    np.testing.assert_allclose(x_adv.reshape(6, -1), expected, rtol=0, atol=2e-5)
    np.testing.assert_allclose(norms(x_adv - x, norm), (1 + overshoot) * dist, rtol=0,
                               atol=(1 + overshoot) * 1e-4 + 1e-5)
    assert np.all(testing.predicted(model, x_adv) == 1)
    # Without overshoot the point lands just past the boundary z0 = z1: the 1e-4 stabiliser moves
    # the logit difference by 1e-4·‖w'‖_q (q = 2 for L2, the dual q = 1 for Linf).
    on_boundary = attacks.get("deepfool", norm=norm, overshoot=0.0)(model, x, y).numpy()
    logits = model(on_boundary).numpy().astype(np.float64)
    dual = np.linalg.norm(w_diff) if norm == "l2" else np.abs(w_diff).sum()
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], 1e-4 * dual, atol=1e-4)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_fools_a_trained_model_with_small_perturbations(digits_model, digits_test, norm):
    x, y = digits_test
    correct = testing.predicted(digits_model, x) == y
    x_adv = attacks.get("deepfool", norm=norm)(digits_model, x, y).numpy()
    assert_in_ball_and_range(x_adv, x, norm, 1e9, "[0,1]")
    fooled = testing.predicted(digits_model, x_adv) != y
    assert fooled[correct].mean() > 0.9
    # Misclassified examples are returned unchanged.
    np.testing.assert_array_equal(x_adv[~correct], x[~correct])
    # Near-minimal perturbations: at the median DeepFool size, even 20-step PGD cannot fool every
    # example (the DeepFool points are not far beyond the decision boundary).
    sizes = norms(x_adv - x, norm)[correct & fooled]
    radius = float(np.median(sizes))
    pgd = attacks.get("pgd", eps=radius, norm=norm, num_steps=20, random_start="none")
    pgd_fooled = testing.predicted(digits_model, pgd(digits_model, x, y).numpy()) != y
    assert pgd_fooled[correct].mean() < 0.999
    # With eps, points are projected onto the ball: fooled only if fooled within eps.
    x_eps = attacks.get("deepfool", norm=norm, eps=radius)(digits_model, x, y).numpy()
    assert_in_ball_and_range(x_eps, x, norm, radius, "[0,1]")
    fooled_eps = testing.predicted(digits_model, x_eps) != y
    assert fooled_eps.sum() <= fooled.sum()
    assert fooled_eps[correct].mean() >= 0.3


def test_graph_mode_matches_eager(tiny_model):
    x, y = batch_in_range("[-1,1]", seed=4)
    attack = attacks.get("deepfool", norm="l2", eps=1.0, max_iter=4, pixel_range="[-1,1]",
                         candidates=4)
    eager = attack(tiny_model, x, y).numpy()
    graph = tf.function(lambda a, b: attack(tiny_model, a, b))(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(graph.numpy(), eager, atol=1e-5)


def test_config_and_cost():
    attack = attacks.get("deepfool", norm="linf", eps=0.1)
    assert attack.get_config()["overshoot"] == 0.02
    assert (attack.max_iter, attack.candidates) == (50, 10)
    assert attack.model_calls_per_example() == 50 * 9 + 1


@pytest.mark.parametrize("params", [dict(norm="l1"), dict(overshoot=-0.1), dict(max_iter=0),
                                    dict(candidates=1), dict(norm="linf", eps=3.0),
                                    dict(eps=-1.0), dict(max_iter=2.5)])
def test_errors(params):
    with pytest.raises(ValueError, match="Received"):
        attacks.get("deepfool", **params)


def test_bad_labels_raise(tiny_model):
    x, y = batch_in_range("[0,1]", seed=5)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("deepfool")(tiny_model, x, y + 10)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("deepfool")(tiny_model, x * 3 - 1, y)
