"""FOSC (Wang et al. 2019, equation under (4)): properties and the brute-force Frank-Wolfe gap."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfadv.attacks.fosc import fosc


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


# ------------------------------------------------------------------------- extensions (issue 5)

from tfadv import attacks  # noqa: E402
from tfadv.attacks import fosc as fosc_lib  # noqa: E402
from tfadv.attacks import StepState  # noqa: E402
from tests import testing  # noqa: E402


def test_l2_ball_is_the_frank_wolfe_gap_with_the_dual_norm():
    """Over {‖x − x0‖₂ ≤ ε} the maximiser of ⟨x − x_adv, g⟩ is x0 + ε g/‖g‖₂."""
    rng = np.random.default_rng(4)
    g = rng.normal(size=(5, 7))
    x_nat = rng.uniform(size=(5, 7))
    eps = 0.3
    direction = rng.normal(size=(5, 7))
    x_adv = x_nat + eps * rng.uniform(size=(5, 1)) * direction / np.linalg.norm(direction, axis=1,
                                                                                 keepdims=True)
    best = x_nat + eps * g / np.linalg.norm(g, axis=1, keepdims=True)
    expected = np.sum((best - x_adv) * g, axis=1)
    got = fosc(g, x_adv, x_nat, eps, norm="l2").numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.all(got >= -1e-6)
    # no point of the ball does better (random boundary points)
    for _ in range(200):
        v = rng.normal(size=(5, 7))
        v = x_nat + eps * v / np.linalg.norm(v, axis=1, keepdims=True)
        assert np.all(np.sum((v - x_adv) * g, axis=1) <= got + 1e-5)
    with pytest.raises(ValueError, match="Received"):
        fosc(g, x_adv, x_nat, eps, norm="l1")


def _state(x_adv, x_nat, grad, eps, x_start=None):
    return StepState(step=tf.constant(1), x_adv=tf.constant(x_adv), x_nat=tf.constant(x_nat),
                     grad=tf.constant(grad), logits=tf.zeros([len(x_adv), 2]),
                     labels=tf.zeros([len(x_adv)], tf.int32), eps=eps,
                     x_start=None if x_start is None else tf.constant(x_start))


def test_release_reference_measures_from_the_random_start_point():
    rng = np.random.default_rng(5)
    eps = 0.1
    x_nat = rng.uniform(0.3, 0.7, size=(4, 6)).astype("float32")
    x_start = (x_nat + rng.uniform(-eps, eps, size=x_nat.shape)).astype("float32")
    x_adv = (x_nat + rng.uniform(-eps, eps, size=x_nat.shape)).astype("float32")
    g = rng.normal(size=x_nat.shape).astype("float32")
    state = _state(x_adv, x_nat, g, eps, x_start)
    paper = fosc_lib.fosc_of_state(state).numpy()
    release = fosc_lib.fosc_of_state(state, reference="start").numpy()
    np.testing.assert_allclose(paper, fosc(g, x_adv, x_nat, eps).numpy(), rtol=1e-6)
    np.testing.assert_allclose(release, eps * np.abs(g).sum(1) - ((x_adv - x_start) * g).sum(1),
                               rtol=1e-5, atol=1e-6)
    # The release's variant is not a Frank-Wolfe gap of the ball: it can be negative.
    x_far = (x_nat + eps * np.sign(g)).astype("float32")
    x_back = (x_nat - eps * np.sign(g)).astype("float32")
    neg = fosc_lib.fosc_of_state(_state(x_far, x_nat, g, eps, x_back), reference="start").numpy()
    np.testing.assert_allclose(neg, -eps * np.abs(g).sum(1), rtol=1e-5)
    with pytest.raises(ValueError, match="Received"):
        fosc_lib.fosc_of_state(_state(x_adv, x_nat, g, eps), reference="start")
    with pytest.raises(ValueError, match="Received"):
        fosc_lib.fosc_of_state(state, reference="clean")


def test_fosc_of_pgd_outputs_decreases_with_steps_on_digits():
    """FOSC paper Figure 1b on a trained digits model: the mean FOSC of PGD-k outputs (step ε/4)
    decreases with k. Images are moved into the interior of [0,1] so that the ball (the paper's
    feasible set, without the pixel box) lies inside the range."""
    model = testing.trained_digits_model()
    _, _, x, y = testing.digits_split(num_test=200)
    x = 0.3 + 0.4 * x
    eps = 0.1
    means = []
    for k in (1, 3, 10, 20):
        pgd = attacks.get("pgd", eps=eps, step_size=eps / 4, num_steps=k, seed=0)
        x_adv = pgd(model, x, y)
        values, _, _ = fosc_lib.fosc_and_loss(lambda v: model(v, training=False), x_adv, x, y, eps)
        values = values.numpy()
        assert np.all(values >= -1e-5)
        means.append(float(values.mean()))
    assert means == sorted(means, reverse=True) and means[-1] < 0.5 * means[0], means
