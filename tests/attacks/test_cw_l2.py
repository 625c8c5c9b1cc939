"""Tests for the Carlini-Wagner L2 attack."""

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks
from tfadv.attacks.cw_l2 import CarliniWagnerL2
from tests import testing
from tests.attacks.test_core import EPS, RANGES, assert_in_ball_and_range, batch_in_range


def l2_norms(delta):
    flat = np.asarray(delta, np.float64).reshape(len(delta), -1)
    return np.sqrt((flat ** 2).sum(-1))


@pytest.mark.parametrize("pixel_range", RANGES)
def test_stays_in_ball_and_range(tiny_model, pixel_range):
    x, y = batch_in_range(pixel_range, seed=1)
    y = testing.predicted(tiny_model, x).astype("int32")
    eps = EPS[("l2", pixel_range)]
    attack = attacks.get("cw_l2", eps=eps, binary_search_steps=3, max_iterations=30,
                         initial_const=10.0, pixel_range=pixel_range)
    x_adv = attack(tiny_model, x, y).numpy()
    assert_in_ball_and_range(x_adv, x, "l2", eps, pixel_range)
    fooled = testing.predicted(tiny_model, x_adv) != y
    assert fooled.any()
    # Not fooled within eps: the clean image comes back.
    np.testing.assert_array_equal(x_adv[~fooled], x[~fooled])


def test_minimal_norm_successes_on_a_trained_model(digits_model, digits_test):
    x, y = digits_test
    correct = testing.predicted(digits_model, x) == y
    # lr 0.05 (release: 0.01 over up to 10,000 steps) so that 200 Adam steps per round converge.
    cw_params = dict(binary_search_steps=5, max_iterations=200, initial_const=0.1,
                     learning_rate=0.05)
    attack = attacks.get("cw_l2", **cw_params)
    x_adv = attack(digits_model, x, y).numpy()
    assert_in_ball_and_range(x_adv, x, "l2", 1e9, "[0,1]")
    fooled = testing.predicted(digits_model, x_adv) != y
    assert fooled[correct].mean() > 0.9
    np.testing.assert_array_equal(x_adv[~correct], x[~correct])  # never touched
    sizes = l2_norms(x_adv - x)[correct & fooled]
    # Same radius, PGD-L2 (50 steps): CW's points are (near-)minimal, so PGD at the median CW size
    # fools about as many examples as CW does within that radius, and CW-with-eps agrees.
    ordered = np.sort(sizes)  # a radius half-way between two sizes: no ties at the boundary
    radius = float(ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    cw_within = (fooled & (l2_norms(x_adv - x) <= radius))[correct].mean()
    assert 0.4 <= cw_within <= 0.6
    pgd = attacks.get("pgd", eps=radius, norm="l2", num_steps=50, step_size=radius / 10,
                      random_start="none")
    pgd_fooled = (testing.predicted(digits_model, pgd(digits_model, x, y).numpy()) != y)[correct].mean()
    assert cw_within >= pgd_fooled - 0.1, (cw_within, pgd_fooled)
    # With eps = radius: successes beyond eps count as failures (the clean image is returned).
    x_eps = attacks.get("cw_l2", eps=radius, **cw_params)(digits_model, x, y).numpy()
    assert_in_ball_and_range(x_eps, x, "l2", radius, "[0,1]")
    fooled_eps = testing.predicted(digits_model, x_eps) != y
    unchanged = np.all((x_eps == x).reshape(len(x), -1), axis=-1)
    assert np.all(unchanged | fooled_eps)
    np.testing.assert_array_equal(fooled_eps[correct], (fooled & (l2_norms(x_adv - x) <= radius))[
        correct])


def test_larger_constant_fools_more(digits_model, digits_test):
    x, y = digits_test
    correct = testing.predicted(digits_model, x) == y
    small = attacks.get("cw_l2", binary_search_steps=1, max_iterations=200, initial_const=1e-3)
    large = attacks.get("cw_l2", binary_search_steps=1, max_iterations=200, initial_const=100.0)
    fooled_small = testing.predicted(digits_model, small(digits_model, x, y).numpy()) != y
    x_large = large(digits_model, x, y).numpy()
    fooled_large = testing.predicted(digits_model, x_large) != y
    assert fooled_large[correct].mean() > 0.9
    assert fooled_small[correct].mean() < fooled_large[correct].mean()


def test_graph_mode(tiny_model):
    x, y = batch_in_range("[0,1]", seed=2)
    attack = attacks.get("cw_l2", eps=0.5, binary_search_steps=2, max_iterations=10)
    eager = attack(tiny_model, x, y).numpy()
    graph = tf.function(lambda a, b: attack(tiny_model, a, b))(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(graph.numpy(), eager, atol=1e-5)


def test_defaults_and_config():
    attack = attacks.get("cw_l2")
    assert isinstance(attack, CarliniWagnerL2) and attack.graph_safe
    config = attack.get_config()
    assert (config["binary_search_steps"], config["initial_const"], config["learning_rate"],
            config["confidence"], config["max_iterations"]) == (9, 1e-3, 0.01, 0.0, 1000)
    assert attack.model_calls_per_example() == 9 * 1000 + 1


@pytest.mark.parametrize("params", [dict(norm="linf"), dict(eps=-1.0), dict(eps="x"),
                                    dict(binary_search_steps=0), dict(max_iterations=1.5),
                                    dict(confidence=-1.0), dict(learning_rate=0.0),
                                    dict(initial_const=0.0)])
def test_errors(params):
    with pytest.raises(ValueError, match="Received"):
        attacks.get("cw_l2", **params)


def test_call_errors(tiny_model):
    x, y = batch_in_range("[0,1]", seed=3)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("cw_l2")(tiny_model, x, y[:3])
    with pytest.raises(ValueError, match="Received"):
        attacks.get("cw_l2", pixel_range="[0,1]")(tiny_model, x * 2 - 1, y)
