"""Tests for tfadv.attacks.fab: the box-constrained hyperplane projections and FAB / FAB-T."""

import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from tfadv import attacks, ranges
from tfadv.attacks import fab as fab_lib
from tests import testing

RANGES = ("[0,1]", "[-1,1]")
EPS = {("linf", "[0,1]"): 0.1, ("linf", "[-1,1]"): 0.2, ("l2", "[0,1]"): 0.5, ("l2", "[-1,1]"): 1.0}


batch_in_range = testing.images_in_range
predicted = testing.predicted
linear_model = testing.linear_two_class_model


def lp_min_linf(z, w, b, low, high):
    """Brute-force reference: min λ s.t. |d_i| ≤ λ, low ≤ z + d ≤ high, ⟨w, z + d⟩ + b = 0 (an LP);
    None when infeasible."""
    dim = len(z)
    cost = np.zeros(dim + 1)
    cost[-1] = 1.0
    a_ub, b_ub = [], []
    for i in range(dim):
        for s in (1.0, -1.0):
            row = np.zeros(dim + 1)
            row[i], row[-1] = s, -1.0
            a_ub.append(row)
            b_ub.append(0.0)
    bounds = [(low - z[i], high - z[i]) for i in range(dim)] + [(0, None)]
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=[np.append(w, 0.0)], b_eq=[-(w @ z + b)],
                  bounds=bounds, method="highs")
    return res.fun if res.status == 0 else None


def brute_force_min_l2(z, w, b, low, high):
    """Exact min ‖d‖₂ on the plane in the box by enumerating active sets: each coordinate is free
    (d_F = −μ w_F) or at its lower or upper bound; the best feasible candidate is the optimum."""
    best = None
    for states in itertools.product((0, 1, 2), repeat=len(z)):
        states = np.array(states)
        d = np.where(states == 1, low - z, np.where(states == 2, high - z, 0.0))
        free = states == 0
        rest = -(w @ z + b) - w[~free] @ d[~free]
        norm_free = w[free] @ w[free]
        if norm_free == 0:
            if abs(rest) > 1e-12:
                continue
        else:
            d[free] = rest / norm_free * w[free]
        if np.all(z + d >= low - 1e-12) and np.all(z + d <= high + 1e-12):
            if best is None or d @ d < best @ best:
                best = d
    return best


# ------------------------------------------------------------------------------------ projection


def test_projection_hand_cases():
    # Box inactive: w = (1, 1), the plane x1 + x2 = 1.5 is reached with d = (0.25, 0.25).
    d = fab_lib.project_linf(np.array([[0.5, 0.5]]), np.array([[1.0, 1.0]]), np.array([-1.5]),
                             0.0, 1.0).numpy()
    np.testing.assert_allclose(d, [[0.25, 0.25]], atol=1e-12)
    # Box active: from (0.9, 0.5) to x1 + x2 = 1.8 the first coordinate stops at 1 after 0.1, the
    # second must then travel 0.3 (the unconstrained answer (0.2, 0.2) would leave the box).
    d = fab_lib.project_linf(np.array([[0.9, 0.5]]), np.array([[1.0, 1.0]]), np.array([-1.8]),
                             0.0, 1.0).numpy()
    np.testing.assert_allclose(d, [[0.1, 0.3]], atol=1e-12)
    # Negative weight and a zero weight: -x1 + 0 x2 = -0.2 from (0.5, 0.7) needs d = (-0.3, 0).
    d = fab_lib.project_linf(np.array([[0.5, 0.7]]), np.array([[-1.0, 0.0]]), np.array([0.2]),
                             0.0, 1.0).numpy()
    np.testing.assert_allclose(d, [[-0.3, 0.0]], atol=1e-12)
    # A point on the plane does not move.
    d = fab_lib.project_linf(np.array([[0.5, 0.5]]), np.array([[2.0, -1.0]]), np.array([-0.5]),
                             0.0, 1.0).numpy()
    np.testing.assert_allclose(d, [[0.0, 0.0]], atol=1e-12)


@pytest.mark.parametrize("pixel_range", RANGES)
def test_projection_is_the_minimal_linf_point_on_plane_and_in_box(pixel_range):
    r = ranges.get_range(pixel_range)
    rng = np.random.default_rng(1)
    checked = infeasible = 0
    rows = []
    for _ in range(150):
        dim = int(rng.integers(1, 6))
        z = rng.uniform(r.low, r.high, dim)
        w = rng.normal(size=dim)
        if dim > 1 and rng.uniform() < 0.3:
            w[rng.integers(dim)] = 0.0
        b = -(w @ z) + rng.normal() * r.width * 0.7
        rows.append((z, w, b))
    # One batched call over problems of different sizes (zero padded: padding has w = 0).
    z_b = np.zeros((len(rows), 5)) + r.low
    w_b = np.zeros((len(rows), 5))
    b_b = np.array([row[2] for row in rows])
    for i, (z, w, _) in enumerate(rows):
        z_b[i, :len(z)], w_b[i, :len(w)] = z, w
    d_b = fab_lib.project_linf(z_b, w_b, b_b, r.low, r.high).numpy()
    for i, (z, w, b) in enumerate(rows):
        d = d_b[i, :len(z)]
        np.testing.assert_array_equal(d_b[i, len(z):], 0.0)
        best = lp_min_linf(z, w, b, r.low, r.high)
        point = z + d
        assert np.all(point >= r.low - 1e-12) and np.all(point <= r.high + 1e-12)
        if best is None:
            # Unreachable in the box: every coordinate goes to the face that moves it towards the
            # plane, the box point closest to it.
            infeasible += 1
            c = w @ z + b
            target = np.where(w * np.sign(c) > 0, r.low, r.high)
            np.testing.assert_allclose(point[w != 0], target[w != 0], atol=1e-12)
            continue
        checked += 1
        assert abs(w @ point + b) <= 1e-9 * max(1.0, np.abs(w).sum())
        assert abs(np.abs(d).max() - best) <= 1e-8, (np.abs(d).max(), best)
    assert checked > 50 and infeasible > 5


def test_projection_in_float32_on_image_sized_rows():
    rng = np.random.default_rng(2)
    z = rng.uniform(0, 1, (6, 3072)).astype("float32")
    w = rng.normal(size=(6, 3072)).astype("float32")
    b = (-(z * w).sum(1) + rng.normal(size=6) * 20).astype("float32")
    d = fab_lib.project_linf(z, w, b, 0.0, 1.0).numpy()
    point = z.astype(np.float64) + d
    assert point.min() >= -1e-6 and point.max() <= 1 + 1e-6
    residual = np.abs((w * point).sum(1) + b) / np.abs(w).sum(1)
    assert residual.max() < 1e-5


def test_l2_projection_hand_cases():
    # Box inactive: the Euclidean projection (0.5, 0.5) -> x1 + x2 = 1.5 is d = (0.25, 0.25).
    d = fab_lib.project_l2(np.array([[0.5, 0.5]]), np.array([[1.0, 1.0]]), np.array([-1.5]),
                           0.0, 1.0).numpy()
    np.testing.assert_allclose(d, [[0.25, 0.25]], atol=1e-12)
    # Box active: from (0.9, 0.5) to x1 + x2 = 1.8 the first coordinate stops at 1 (d1 = 0.1) and
    # the second supplies the rest (d2 = 0.3), instead of the unconstrained (0.2, 0.2).
    d = fab_lib.project_l2(np.array([[0.9, 0.5]]), np.array([[1.0, 1.0]]), np.array([-1.8]),
                           0.0, 1.0).numpy()
    np.testing.assert_allclose(d, [[0.1, 0.3]], atol=1e-12)
    # Unequal weights: (0.5, 0.5) onto 2 x1 + x2 = 2 is d = 0.5 (2, 1) / 5.
    d = fab_lib.project_l2(np.array([[0.5, 0.5]]), np.array([[2.0, 1.0]]), np.array([-2.0]),
                           0.0, 1.0).numpy()
    np.testing.assert_allclose(d, [[0.2, 0.1]], atol=1e-12)


@pytest.mark.parametrize("pixel_range", RANGES)
def test_l2_projection_is_the_minimal_l2_point_on_plane_and_in_box(pixel_range):
    r = ranges.get_range(pixel_range)
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(40):
        dim = int(rng.integers(1, 5))
        z = rng.uniform(r.low, r.high, dim)
        w = rng.normal(size=dim)
        b = -(w @ z) + rng.normal() * r.width * 0.4
        d = fab_lib.project_l2(z[None], w[None], np.array([b]), r.low, r.high).numpy()[0]
        point = z + d
        assert np.all(point >= r.low - 1e-12) and np.all(point <= r.high + 1e-12)
        reach = np.sum(np.where(w * np.sign(w @ z + b) > 0, z - r.low, r.high - z) * np.abs(w))
        if reach < abs(w @ z + b) - 1e-9:
            continue  # unreachable inside the box (covered by the Linf test's face rule)
        checked += 1
        assert abs(w @ point + b) <= 1e-9 * max(1.0, np.abs(w).sum())
        best = brute_force_min_l2(z, w, b, r.low, r.high)
        assert np.linalg.norm(d) <= np.linalg.norm(best) + 1e-9
        np.testing.assert_allclose(d, best, atol=1e-9)
    assert checked > 20


# ------------------------------------------------------------------------------------------- FAB


def _linear_problem():
    rng = np.random.default_rng(0)
    w = rng.normal(size=64).astype("float32")
    x = rng.uniform(0.4, 0.6, size=(8, 8, 8, 1)).astype("float32")
    scores = x.reshape(8, -1).astype(np.float64) @ w
    norm1 = float(np.abs(w).astype(np.float64).sum())
    bias = -float(scores.max()) - 0.02 * norm1
    dist = -(scores + bias) / norm1  # exact minimal Linf distance |f(x)| / ||w||_1 (box inactive)
    return linear_model(w, bias), x, dist, w


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ["fab", "fab_t"])
def test_finds_the_exact_minimal_perturbation_of_a_linear_model(name, norm):
    model, x, dist, w = _linear_problem()
    if norm == "l2":  # |f(x)| / ||w||_2, moving along w
        dist = dist * np.abs(w).astype(np.float64).sum() / np.linalg.norm(w.astype(np.float64))
        assert dist.max() * np.abs(w).max() / np.linalg.norm(w) < 0.35  # the box stays inactive
    assert dist.max() < 0.35  # the box stays inactive
    y = predicted(model, x)
    assert np.all(y == 0)
    params = dict(n_target_classes=1) if name == "fab_t" else {}
    x_adv = attacks.get(name, eps=0.5, norm=norm, n_iter=50, seed=0, **params)(model, x, y).numpy()
    assert np.all(predicted(model, x_adv) == 1)
    delta = (x_adv.astype(np.float64) - x).reshape(len(x), -1)
    found = np.abs(delta).max(-1) if norm == "linf" else np.linalg.norm(delta, axis=-1)
    assert np.all(found >= dist * (1 - 1e-4)), (found, dist)
    assert np.all(found <= dist * 1.01), (found / dist)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_nothing_counts_beyond_eps(norm):
    # With eps below the minimal distance nothing counts as fooled and x comes back unchanged.
    model, x, dist, w = _linear_problem()
    if norm == "l2":
        dist = dist * np.abs(w).astype(np.float64).sum() / np.linalg.norm(w.astype(np.float64))
    attack = attacks.get("fab_t", eps=0.9 * float(dist.min()), norm=norm, n_iter=20,
                         n_target_classes=1)
    np.testing.assert_array_equal(attack(model, x, predicted(model, x)).numpy(), x)


BALL_CASES = [("fab_t", "linf", "[0,1]"), ("fab_t", "linf", "[-1,1]"), ("fab_t", "l2", "[0,1]"),
              ("fab_t", "l2", "[-1,1]"), ("fab", "linf", "[-1,1]"), ("fab", "l2", "[0,1]")]


@pytest.mark.parametrize("name,norm,pixel_range", BALL_CASES, ids=["-".join(c) for c in BALL_CASES])
def test_stays_in_ball_and_range(tiny_model, pixel_range, name, norm):
    x = batch_in_range(pixel_range)
    y = predicted(tiny_model, x)
    eps = EPS[(norm, pixel_range)]
    params = dict(n_target_classes=3) if name == "fab_t" else {}
    attack = attacks.get(name, eps=eps, norm=norm, n_iter=8, n_restarts=2,
                         pixel_range=pixel_range, seed=0, **params)
    x_adv = attack(tiny_model, x, y).numpy()
    testing.assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)
    fooled = predicted(tiny_model, x_adv) != y
    assert fooled.any()
    changed = np.any(x_adv != x, axis=(1, 2, 3))
    np.testing.assert_array_equal(changed, fooled)  # unchanged exactly when not fooled


def test_fab_t_on_trained_digits_between_pgd_and_clean():
    model = testing.trained_digits_model()
    _, _, x, y = testing.digits_split(num_test=100)
    clean = float(np.mean(predicted(model, x) == y))
    pgd = attacks.get("pgd", eps=0.1, num_steps=20, step_size=0.01, seed=0)
    pgd_acc = float(np.mean(predicted(model, pgd(model, x, y).numpy()) == y))
    fab_t = attacks.get("fab_t", eps=0.1, n_iter=20, seed=0)
    x_adv = fab_t(model, x, y).numpy()
    assert np.abs(x_adv.astype(np.float64) - x).max() <= 0.1 + 1e-6
    fab_acc = float(np.mean(predicted(model, x_adv) == y))
    assert fab_acc <= clean
    assert fab_acc >= pgd_acc - 0.15, (clean, pgd_acc, fab_acc)
    assert fab_acc < clean  # it does fool some digits


def test_runs_batchnorm_in_inference_mode(tiny_model):
    x = batch_in_range("[0,1]", batch=6, seed=4)
    y = predicted(tiny_model, x)
    before = testing.bn_moving_stats(tiny_model)
    attack = attacks.get("fab_t", eps=0.1, n_iter=3, n_target_classes=2, seed=0)
    plain = attack(tiny_model, x, y).numpy()
    # Even a training-mode ModelFn is queried in inference mode: same result, statistics untouched.
    wrapped = attack(attacks.ModelFn(tiny_model, training=True), x, y).numpy()
    np.testing.assert_array_equal(plain, wrapped)
    for a, b in zip(before, testing.bn_moving_stats(tiny_model)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------- api & errors


def test_registry_and_call_count():
    attack = attacks.get("fab_t", eps=0.1)
    assert isinstance(attack, fab_lib.FABAttack) and attack.targeted and not attack.graph_safe
    assert (attack.n_iter, attack.n_restarts, attack.n_target_classes) == (100, 1, 9)
    assert (attack.alpha_max, attack.eta, attack.beta) == (0.1, 1.05, 0.9)
    assert attack.model_calls_per_example() == 1 + 2 * 100 * 9
    untargeted = attacks.get("fab", eps=0.1, n_iter=10, n_restarts=2)
    assert not untargeted.targeted and untargeted.model_calls_per_example() == 41
    assert attack.get_config()["name"] == "fab_t"


@pytest.mark.parametrize("params", [
    dict(eps=-0.1), dict(eps=2.0), dict(eps=None), dict(eps=0.1, norm="l1"), dict(eps=float("nan")),
    dict(eps=0.1, n_iter=0), dict(eps=0.1, n_restarts=1.5), dict(eps=0.1, n_target_classes=0),
    dict(eps=0.1, alpha_max=2.0), dict(eps=0.1, eta=0.0), dict(eps=0.1, beta=1.5),
    dict(eps=0.1, pixel_range="[0,255]"), dict(eps=0.1, unknown=1),
])
def test_bad_parameters_raise(params):
    with pytest.raises(ValueError, match="Received"):
        attacks.get("fab_t", **params)


def test_bad_inputs_raise(tiny_model):
    attack = attacks.get("fab_t", eps=0.1, n_iter=2)
    x = batch_in_range("[0,1]", batch=4)
    with pytest.raises(ValueError, match="Received"):
        attack(tiny_model, x, np.zeros(3, "int32"))
    with pytest.raises(ValueError, match="Received"):
        attack(tiny_model, x - 2.0, np.zeros(4, "int32"))
    with pytest.raises(ValueError, match="Received"):
        attack(tiny_model, x, np.full(4, -1, "int32"))
    with pytest.raises(ValueError, match="Received"):
        attack(tiny_model, x, np.zeros(4, "int32"), targets=np.zeros(4, "int32"))
