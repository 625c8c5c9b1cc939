"""Tests for tfadv.attacks.square: the Linf Square Attack (Andriushchenko et al. 2020)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks
from tfadv.attacks import square as square_lib
from tests import testing

RANGES = ("[0,1]", "[-1,1]")
EPS = {("linf", "[0,1]"): 0.1, ("linf", "[-1,1]"): 0.2, ("l2", "[0,1]"): 0.5, ("l2", "[-1,1]"): 1.0}


batch_in_range = testing.images_in_range
predicted = testing.predicted
linear_model = testing.linear_two_class_model


class CountingModel:
    """A plain logits callable recording the batch size of every call."""

    def __init__(self, model):
        self.model = model
        self.sizes = []

    def __call__(self, x):
        self.sizes.append(int(x.shape[0]))
        return self.model(x, training=False)


# ------------------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("iteration,expected", [
    (0, 0.8), (5, 0.8), (6, 0.4), (25, 0.4), (26, 0.2), (100, 0.2), (101, 0.1), (250, 0.1),
    (251, 0.05), (500, 0.05), (501, 0.025), (1000, 0.025), (1001, 0.8 / 64), (2000, 0.8 / 64),
    (2001, 0.8 / 128), (3000, 0.8 / 128), (3001, 0.8 / 256), (4000, 0.8 / 256),
    (4001, 0.8 / 512), (4999, 0.8 / 512),
])
def test_p_schedule_rescaled_to_5000_queries(iteration, expected):
    # AutoAttack's setting: the 10,000-query breakpoints halve (i -> int(i / 5000 * 10000)).
    assert square_lib.p_schedule(iteration, 0.8, 5000) == pytest.approx(expected)


@pytest.mark.parametrize("iteration,expected", [
    (10, 0.05), (11, 0.025), (50, 0.025), (51, 0.0125), (8000, 0.05 / 256), (8001, 0.05 / 512),
    (9999, 0.05 / 512),
])
def test_p_schedule_at_10000_queries_is_the_papers(iteration, expected):
    assert square_lib.p_schedule(iteration, 0.05, 10000) == pytest.approx(expected)


def test_square_side():
    assert square_lib.square_side(0.8, 8, 8) == 7          # round(sqrt(51.2))
    assert square_lib.square_side(0.1, 8, 8) == 3          # round(sqrt(6.4))
    assert square_lib.square_side(1e-4, 8, 8) == 1         # never below one pixel
    assert square_lib.square_side(0.8, 32, 32) == round(math.sqrt(0.8 * 1024))
    assert square_lib.square_side(1.0, 4, 16) == 4         # never beyond the shorter side


@pytest.mark.parametrize("side", [1, 2, 3, 5, 8])
def test_l2_pattern_of_eq_2(side):
    pattern = square_lib.eta_pattern(side)
    assert pattern.shape == (side, side)
    assert np.sum(pattern ** 2) == pytest.approx(1.0)
    top, bottom = pattern[:side // 2], pattern[side // 2:]
    assert np.all(top > 0) and np.all(bottom < 0)
    np.testing.assert_allclose(pattern, pattern[:, ::-1] if side % 2 else pattern, atol=1e-12)
    if side >= 3:  # the weight peaks at the centre of each half (nested rectangles)
        assert np.abs(bottom).max() == np.abs(bottom[(side - side // 2) // 2, side // 2])


def test_window_positions_paper_and_release():
    seed = tf.constant([0, 1], tf.int32)
    for positions, last in (("paper", 5), ("release", 4)):
        attack = attacks.get("square", eps=0.1, window_positions=positions)
        masks, top, left = attack._windows(seed, 4000, 8, 8, 3)
        masks = masks.numpy()
        tops = np.argmax(masks.any(axis=2), axis=1)
        lefts = np.argmax(masks.any(axis=1), axis=1)
        np.testing.assert_array_equal(tops, top.numpy())
        np.testing.assert_array_equal(lefts, left.numpy())
        assert set(tops) == set(lefts) == set(range(last + 1))
        assert np.all(masks.sum(axis=(1, 2)) == 9)
        # A full-size window has a single position under both rules.
        assert attack._windows(seed, 5, 8, 8, 8)[0].numpy().all()


def test_linf_proposal_sets_one_window_to_the_ball_corner():
    # Algorithm 2: x̂ ± 2ε on an h×h window, projected: the window's pixels become x ± ε (one sign
    # per channel), every other pixel keeps x̂.
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.7, size=(6, 8, 8, 2)).astype("float32")
    x_best = (x + 0.1 * rng.choice([-1.0, 1.0], size=x.shape)).astype("float32")
    attack = attacks.get("square", eps=0.1)
    x_new = attack._propose_linf(tf.constant(x), tf.constant(x_best), 3, None,
                                 tf.constant([4, 2], tf.int32)).numpy()
    for new, clean, best in zip(x_new, x, x_best):
        moved = np.abs(new - best).max(axis=-1) > 1e-6
        rows, cols = np.flatnonzero(moved.any(axis=1)), np.flatnonzero(moved.any(axis=0))
        assert moved.any() and np.ptp(rows) < 3 and np.ptp(cols) < 3  # inside one 3×3 window
        np.testing.assert_allclose(np.abs(new - clean), 0.1, atol=1e-6)
        for c in range(2):  # one sign per channel inside the window
            assert len(set(np.sign(new[..., c] - clean[..., c])[moved])) <= 1


def test_l2_proposal_keeps_the_budget_and_touches_two_windows():
    # Algorithm 3 with the box inactive: ‖ν‖₂ stays ε and only pixels of W1 ∪ W2 change.
    rng = np.random.default_rng(1)
    x = rng.uniform(0.4, 0.6, size=(5, 9, 9, 3)).astype("float64")
    nu = rng.normal(size=x.shape)
    nu *= 0.5 / np.linalg.norm(nu.reshape(5, -1), axis=-1)[:, None, None, None]
    attack = attacks.get("square", eps=0.5, norm="l2")
    pattern = np.zeros((5, 5))
    pattern[:3, :3] = square_lib.eta_pattern(3)
    x_new = attack._propose_l2(tf.constant(x, tf.float32), tf.constant(x + nu, tf.float32), 3,
                               tf.constant(pattern), tf.constant([7, 1], tf.int32)).numpy()
    delta = x_new.astype(np.float64) - x.astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(delta.reshape(5, -1), axis=-1), 0.5, rtol=1e-4)
    changed = np.abs(delta - nu).max(axis=-1) > 1e-5
    assert np.all(changed.sum(axis=(1, 2)) <= 2 * 9)
    assert np.all(changed.sum(axis=(1, 2)) >= 1)


def test_margin_matches_definition():
    logits = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    np.testing.assert_allclose(square_lib.margin(logits, np.array([0, 0])), [1.0, -5.0])


# ----------------------------------------------------------------------------------- constraints


@pytest.mark.parametrize("pixel_range", RANGES)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_stays_in_ball_and_range(tiny_model, pixel_range, norm):
    x = batch_in_range(pixel_range)
    y = predicted(tiny_model, x)
    eps = EPS[(norm, pixel_range)]
    attack = attacks.get("square", eps=eps, norm=norm, n_queries=40, pixel_range=pixel_range,
                         seed=0, window_positions="release" if norm == "l2" else "paper")
    x_adv = attack(tiny_model, x, y).numpy()
    testing.assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)
    fooled = predicted(tiny_model, x_adv) != y
    assert fooled.any()
    # Examples it did not fool come back unchanged.
    np.testing.assert_array_equal(x_adv[~fooled], x[~fooled])


def test_margin_never_increases_and_seed_is_deterministic(tiny_model):
    x = batch_in_range("[0,1]", seed=1)
    y = predicted(tiny_model, x)
    records = []
    attack = attacks.get("square", eps=0.05, n_queries=60, n_restarts=2, seed=3)
    x_adv = attack(tiny_model, x, y,
                   callback=lambda restart, i, index, m: records.append((restart, i, index, m)))
    assert records
    for restart in {r[0] for r in records}:
        run = [r for r in records if r[0] == restart]
        assert [r[1] for r in run] == list(range(len(run)))
        margins = np.stack([r[3] for r in run])
        assert np.all(np.diff(margins, axis=0) <= 0), "an accepted update raised the margin"
    first = [r for r in records if r[0] == 0]
    second = [r for r in records if r[0] == 1]
    if second:  # the restart attacks exactly the examples the first run left robust
        np.testing.assert_array_equal(second[0][2], first[0][2][first[-1][3] > 0])
    # Determinism for a fixed seed.
    again = attacks.get("square", eps=0.05, n_queries=60, n_restarts=2, seed=3)(tiny_model, x, y)
    np.testing.assert_array_equal(x_adv.numpy(), again.numpy())


def test_a_start_that_fools_everything_runs_no_iteration():
    # One example 0.01 from a linear boundary: for some seeds the stripes alone cross it, and then
    # the search makes no query and the callback is never called.
    rng = np.random.default_rng(0)
    w = rng.normal(size=64).astype("float32")
    x = rng.uniform(0.4, 0.6, size=(1, 8, 8, 1)).astype("float32")
    model = linear_model(w, -float((x.reshape(1, -1) @ w).max()) - 0.01)
    y = np.zeros(1, "int64")
    outcomes = []
    for seed in range(6):
        records = []
        x_adv = attacks.get("square", eps=0.3, n_queries=5, seed=seed)(
            model, x, y, callback=lambda *args: records.append(args)).numpy()
        outcomes.append((len(records), predicted(model, x_adv)[0] == 1))
    assert (0, True) in outcomes and (5, False) in outcomes, outcomes  # fooled at the start, or not
    assert all(fooled for count, fooled in outcomes if count == 0)


def test_only_still_robust_examples_are_queried(tiny_model):
    x = batch_in_range("[0,1]", batch=16, seed=2)
    y = predicted(tiny_model, x)
    y[:4] = (y[:4] + 1) % 10  # four examples misclassified from the start: never attacked
    counting = CountingModel(tiny_model)
    records = []
    attack = attacks.get("square", eps=0.1, n_queries=30, seed=0)
    x_adv = attack(counting, x, y,
                   callback=lambda restart, i, index, m: records.append(m.copy())).numpy()
    np.testing.assert_array_equal(x_adv[:4], x[:4])
    sizes = counting.sizes
    assert sizes[0] == 16 and sizes[1] == 12  # clean pass, then stripes on the 12 robust ones
    # Iteration i > 0 queries exactly the examples whose best margin was still positive.
    for i in range(1, len(records)):
        assert sizes[2 + i] == int(np.sum(records[i - 1] > 0))
    assert len(sizes) == 2 + len(records)
    assert sum(sizes) <= attack.model_calls_per_example() * len(x)
    assert min(sizes[2:]) < 12  # some examples were fooled and dropped out


def test_finds_the_boundary_of_a_linear_model():
    rng = np.random.default_rng(0)
    w = rng.normal(size=64).astype("float32")
    x = rng.uniform(0.4, 0.6, size=(10, 8, 8, 1)).astype("float32")
    scores = x.reshape(10, -1) @ w
    norm1 = float(np.abs(w).sum())
    bias = -float(scores.max()) - 0.05 * norm1          # every image at Linf distance >= 0.05
    model = linear_model(w, bias)
    dist = -(scores + bias) / norm1                      # exact Linf distance (the box is inactive)
    y = predicted(model, x)
    assert np.all(y == 0)
    eps = 2.0 * float(dist.max())
    assert eps < 0.4
    found = attacks.get("square", eps=eps, n_queries=300, seed=0)(model, x, y).numpy()
    assert np.all(predicted(model, found) == 1)
    assert np.abs(found.astype(np.float64) - x).max() <= eps + 1e-6
    # Below the distance to the boundary nothing can be fooled and nothing is changed.
    small = 0.95 * float(dist.min())
    none = attacks.get("square", eps=small, n_queries=100, seed=0)(model, x, y).numpy()
    np.testing.assert_array_equal(none, x)


def test_l2_finds_the_boundary_of_a_linear_model():
    rng = np.random.default_rng(1)
    w = rng.normal(size=64).astype("float32")
    x = rng.uniform(0.4, 0.6, size=(10, 8, 8, 1)).astype("float32")
    scores = x.reshape(10, -1) @ w
    norm2 = float(np.linalg.norm(w))
    bias = -float(scores.max()) - 0.3 * norm2           # every image at L2 distance >= 0.3
    model = linear_model(w, bias)
    dist = -(scores + bias) / norm2
    y = predicted(model, x)
    assert np.all(y == 0)
    eps = 3.0 * float(dist.max())
    found = attacks.get("square", eps=eps, norm="l2", n_queries=300, seed=0)(model, x, y).numpy()
    assert np.all(predicted(model, found) == 1)
    delta = (found.astype(np.float64) - x).reshape(10, -1)
    assert np.linalg.norm(delta, axis=-1).max() <= eps + 1e-6
    none = attacks.get("square", eps=0.95 * float(dist.min()), norm="l2", n_queries=100,
                       seed=0)(model, x, y).numpy()
    np.testing.assert_array_equal(none, x)


def test_runs_batchnorm_in_inference_mode(tiny_model):
    x = batch_in_range("[0,1]", batch=6, seed=4)
    y = predicted(tiny_model, x)
    before = testing.bn_moving_stats(tiny_model)
    attack = attacks.get("square", eps=0.1, n_queries=5, seed=0)
    plain = attack(tiny_model, x, y).numpy()
    # Even a training-mode ModelFn is queried in inference mode: same result, statistics untouched.
    wrapped = attack(attacks.ModelFn(tiny_model, training=True), x, y).numpy()
    np.testing.assert_array_equal(plain, wrapped)
    for a, b in zip(before, testing.bn_moving_stats(tiny_model)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------- api & errors


def test_registry_and_query_count():
    attack = attacks.get("square", eps=0.1)
    assert isinstance(attack, square_lib.SquareAttack) and not attack.graph_safe
    assert attack.n_queries == 5000 and attack.p_init == 0.8 and attack.n_restarts == 1
    assert attack.model_calls_per_example() == 5000 + 2
    three = attacks.get("square", eps=0.1, n_queries=10, n_restarts=3)
    assert three.model_calls_per_example() == 3 * 11 + 1
    assert attack.get_config()["name"] == "square"


@pytest.mark.parametrize("params", [
    dict(eps=-0.1), dict(eps=2.0), dict(eps="big"), dict(eps=0.1, norm="l1"), dict(eps=np.inf),
    dict(eps=np.inf, norm="l2"),
    dict(eps=0.1, n_queries=0), dict(eps=0.1, n_queries=2.5), dict(eps=0.1, p_init=0.0),
    dict(eps=0.1, p_init=1.5), dict(eps=0.1, n_restarts=0), dict(eps=0.1, pixel_range="[0,255]"),
    dict(eps=0.1, seed=-1), dict(eps=0.1, unknown=1), dict(eps=0.1, window_positions="random"),
])
def test_bad_parameters_raise(params):
    with pytest.raises(ValueError, match="Received"):
        attacks.get("square", **params)


def test_bad_inputs_raise(tiny_model):
    attack = attacks.get("square", eps=0.1, n_queries=2)
    x = batch_in_range("[0,1]", batch=4)
    with pytest.raises(ValueError, match="Received"):
        attack(tiny_model, x, np.zeros(3, "int32"))
    with pytest.raises(ValueError, match="Received"):
        attack(tiny_model, x.reshape(4, -1), np.zeros(4, "int32"))
    with pytest.raises(ValueError, match="Received"):
        attack(tiny_model, x * 3.0, np.zeros(4, "int32"))
    with pytest.raises(ValueError, match="Received"):
        attack(tiny_model, x, np.full(4, 10, "int32"))
    with pytest.raises(ValueError, match="Received"):
        attack(tiny_model, x, np.zeros(4, "int32"), targets=np.zeros(4, "int32"))
