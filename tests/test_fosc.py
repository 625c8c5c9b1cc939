"""FOSC (Wang et al. 2019, equation under (4)): properties and the brute-force Frank-Wolfe gap."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfadv.fosc import fosc


def brute_force_gap(g, x_adv, x_nat, eps):
    """max over the vertices v of the Linf ball around x_nat of <v - x_adv, g> (a linear function's
    maximum over a box is attained at a vertex)."""
    d = g.size
    best = -np.inf
    for signs in itertools.product((-1.0, 1.0), repeat=d):
        v = x_nat.ravel() + eps * np.asarray(signs)
        best = max(best, float(np.dot(v - x_adv.ravel(), g.ravel())))
    return best


def test_zero_at_an_interior_stationary_point():
    rng = np.random.default_rng(0)
    x_nat = rng.uniform(size=(3, 2, 2, 1)).astype("float32")
    x_adv = x_nat + rng.uniform(-0.05, 0.05, size=x_nat.shape).astype("float32")
    out = fosc(np.zeros_like(x_nat), x_adv, x_nat, 0.1).numpy()
    assert out.shape == (3,)
    np.testing.assert_allclose(out, 0.0, atol=0)


def test_zero_at_a_boundary_point_aligned_with_the_gradient_sign():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(4, 6)).astype("float32")
    x_nat = rng.uniform(size=(4, 6)).astype("float32")
    eps = 0.03
    x_adv = x_nat + eps * np.sign(g)
    np.testing.assert_allclose(fosc(g, x_adv, x_nat, eps).numpy(), 0.0, atol=1e-6)
    # the opposite vertex is the worst point: FOSC = 2 eps ||g||_1
    x_bad = x_nat - eps * np.sign(g)
    np.testing.assert_allclose(fosc(g, x_bad, x_nat, eps).numpy(), 2 * eps * np.abs(g).sum(1), rtol=1e-5)


def test_non_negative_everywhere_in_the_ball():
    rng = np.random.default_rng(2)
    eps = 0.1
    for _ in range(20):
        g = rng.normal(size=(64, 3, 3, 2)).astype("float32")
        x_nat = rng.uniform(size=g.shape).astype("float32")
        x_adv = x_nat + rng.uniform(-eps, eps, size=g.shape).astype("float32")
        assert np.all(fosc(g, x_adv, x_nat, eps).numpy() >= -1e-6)


def test_equals_the_frank_wolfe_gap_by_brute_force():
    rng = np.random.default_rng(3)
    for d in (1, 3, 5):
        for _ in range(10):
            eps = float(rng.uniform(0.01, 0.5))
            g = rng.normal(size=(1, d))
            x_nat = rng.uniform(size=(1, d))
            x_adv = x_nat + rng.uniform(-eps, eps, size=(1, d))
            got = float(fosc(g, x_adv, x_nat, eps).numpy()[0])
            assert got == pytest.approx(brute_force_gap(g[0], x_adv[0], x_nat[0], eps), rel=1e-4, abs=1e-5)


def test_per_example_eps_graph_mode_and_errors():
    g = np.ones((2, 3), "float32")
    x = np.zeros((2, 3), "float32")
    np.testing.assert_allclose(fosc(g, x, x, [0.1, 0.2]).numpy(), [0.3, 0.6], rtol=1e-6)
    traced = tf.function(fosc)
    np.testing.assert_allclose(traced(g, x, x, 0.1).numpy(), [0.3, 0.3], rtol=1e-6)
    with pytest.raises(ValueError, match="Received"):
        fosc(g, np.zeros((2, 4), "float32"), x, 0.1)
    with pytest.raises(ValueError, match="Received"):
        fosc(g, x, x, np.ones((2, 2)))
