"""Tests for APGD-CE / APGD-DLR / APGD-T (tfadv.attacks.apgd) and the DLR losses."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, losses
from tfadv.attacks import apgd
from tests import testing
from tests.testing import assert_in_ball_and_range

RANGES = ("[0,1]", "[-1,1]")
EPS = {("linf", "[0,1]"): 0.1, ("linf", "[-1,1]"): 0.2, ("l2", "[0,1]"): 0.5, ("l2", "[-1,1]"): 1.0}
SMALL = {"apgd_ce": {}, "apgd_dlr": {}, "apgd_t": {"n_target_classes": 2}}


@pytest.fixture(scope="module")
def digits_test():
    _, _, x, y = testing.digits_split(num_test=200)
    return x, y


def predictions(model, x):
    return np.argmax(model(x, training=False).numpy(), axis=-1).astype("int32")


def images(pixel_range, seed=0, batch=8):
    """Random images in the range, some pixels exactly on its bounds (callers label them with the
    model's own predictions, so that every point is attacked)."""
    return testing.images_in_range(pixel_range, batch=batch, seed=seed)


# ----------------------------------------------------------------------------------- DLR losses

Z = np.array([[3.0, 1.0, 2.0, 0.0, -1.0],
              [1.0, 4.0, 2.0, 3.0, 0.0]], np.float32)


def test_dlr_hand_values():
    # Row 0, y=0: -(3 - 2) / (3 - 1) = -0.5 (correct: negative). Row 1, y=3: -(3 - 4) / (4 - 2).
    out = losses.dlr(logits=Z, labels=np.array([0, 3])).numpy()
    np.testing.assert_allclose(out, [-0.5, 0.5], rtol=1e-6)
    # y = the runner-up of row 0 (class 2): -(2 - 3) / (3 - 1) = 0.5.
    np.testing.assert_allclose(losses.dlr(logits=Z[:1], labels=np.array([2])).numpy(), [0.5],
                               rtol=1e-6)
    assert losses.get("dlr") is losses.dlr


def test_dlr_targeted_hand_values():
    # Row 0, y=0, t=2: -(3 - 2) / (3 - (1 + 0)/2) = -0.4.
    # Row 1, y=3, t=1: -(3 - 4) / (4 - (2 + 1)/2) = 0.4.
    out = losses.dlr_targeted(logits=Z, labels=np.array([0, 3]), targets=np.array([2, 1])).numpy()
    np.testing.assert_allclose(out, [-0.4, 0.4], rtol=1e-6)
    # t = y gives 0.
    out = losses.dlr_targeted(logits=Z, labels=np.array([0, 3]), targets=np.array([0, 3])).numpy()
    np.testing.assert_allclose(out, [0.0, 0.0], atol=1e-7)


def test_dlr_is_shift_and_scale_invariant():
    z = np.random.default_rng(0).normal(size=(16, 10)).astype("float32")
    y = np.arange(16) % 10
    t = (y + 3) % 10
    for loss, kw in ((losses.dlr, {}), (losses.dlr_targeted, {"targets": t})):
        base = loss(logits=z, labels=y, **kw).numpy()
        np.testing.assert_allclose(loss(logits=10.0 * z, labels=y, **kw).numpy(), base, rtol=1e-5)
        np.testing.assert_allclose(loss(logits=z + 7.0, labels=y, **kw).numpy(), base,
                                   rtol=1e-4, atol=1e-5)


def test_dlr_needs_enough_classes():
    with pytest.raises(ValueError, match="Received"):
        losses.dlr(logits=np.zeros([2, 2], np.float32), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="Received"):
        losses.dlr_targeted(logits=np.zeros([2, 3], np.float32), labels=np.array([0, 1]),
                            targets=np.array([1, 2]))


# ----------------------------------------------------------------------------------- schedule


def test_checkpoints_are_the_papers_list_for_100_iterations():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99
    # (increments .22, .19, .16, .13, .10, .07, .06, .06; the next, 1.05, is past 1).
    assert apgd.checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("n_iter", [1, 5, 10, 20, 37, 100, 250, 1000])
def test_checkpoints_follow_the_recursion(n_iter):
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0 + 1e-9:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    expected = sorted({math.ceil(round(pj * n_iter, 6)) for pj in p})
    assert apgd.checkpoints(n_iter) == expected


def test_checkpoints_agree_with_the_reference_counter_for_100_iterations():
    # The reference release checks after a window of int(.22 N) iterations, then shrinks the window
    # by int(.03 N) down to int(.06 N): for N = 100 the same iterations as the paper's formula.
    n, window, at, checks = 100, 22, 0, [0]
    while at + window <= n:
        at += window
        checks.append(at)
        window = max(window - 3, 6)
    assert checks == apgd.checkpoints(100)


def increases(history):
    h = np.asarray(history)
    return int(np.sum(h[1:] > h[:-1]))


def test_halving_conditions_on_a_hand_made_loss_history():
    window = 22  # w_1 - w_0: 22 transitions f(x⁽⁰⁾) -> ... -> f(x⁽²²⁾)
    rising = np.arange(23.0)                                  # 22 increases, f_max improves
    zigzag = np.array([0.0, 1.0] * 11 + [0.5])                # 11 increases < 0.75 * 22
    eighteen = np.concatenate([np.arange(18.0), [16.0, 15.0, 14.0, 13.0, 20.0]])  # 17 + 1
    sixteen = np.concatenate([np.arange(17.0), [15.0, 14.0, 13.0, 12.0, 11.0, 10.0]])  # 16
    histories = [rising, zigzag, eighteen, sixteen]
    n_inc = [increases(h) for h in histories]
    assert n_inc == [22, 11, 18, 16]
    best_last = np.array([h[0] for h in histories], np.float32)
    best = np.array([h.max() for h in histories], np.float32)
    halve = apgd.halve_step_size(num_increases=n_inc, window=window, rho=0.75,
                                 halved_last=[False] * 4, best_last=best_last, best=best).numpy()
    # Condition 1 is 16.5 increases: 18 and 22 keep η, 11 and 16 halve it.
    np.testing.assert_array_equal(halve, [False, True, False, True])


def test_halving_condition_two_needs_an_unchanged_step_and_best_loss():
    # Many increases (Condition 1 false) but f_max did not move since the last checkpoint.
    kw = dict(num_increases=[7, 7, 7], window=7, rho=0.75)
    best_last = np.array([5.0, 5.0, 5.0], np.float32)
    halve = apgd.halve_step_size(halved_last=[False, True, False], best_last=best_last,
                                 best=np.array([5.0, 5.0, 5.5], np.float32), **kw).numpy()
    # Unchanged f_max and η unchanged -> halve; η was just halved -> keep; f_max grew -> keep.
    np.testing.assert_array_equal(halve, [True, False, False])
    # rho = 1 demands an increase at every iteration.
    np.testing.assert_array_equal(
        apgd.halve_step_size(num_increases=[6, 7], window=7, rho=1.0, halved_last=[True, True],
                             best_last=[0.0, 0.0], best=[1.0, 1.0]).numpy(), [True, False])


# ----------------------------------------------------------------------------------- Algorithm 1


def linear_model(seed=0, num_classes=10):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(64, num_classes)).astype("float32")
    b = rng.normal(size=(num_classes,)).astype("float32")
    fn = lambda x: tf.matmul(tf.reshape(x, [-1, 64]), w) + b  # noqa: E731
    return fn, w.astype(np.float64), b.astype(np.float64)


def numpy_algorithm1(x, y, x0, w, b, *, eps, norm, n_iter, rho=0.75):
    """Algorithm 1 of Croce & Hein (2020) in NumPy for a linear model and the CE loss."""
    n = len(x)
    flat = lambda t: t.reshape(n, -1)  # noqa: E731

    def f(xa):
        z = flat(xa) @ w + b
        z = z - z.max(-1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        loss = -np.log(p[np.arange(n), y])
        onehot = np.eye(w.shape[1])[y]
        grad = ((p - onehot) @ w.T).reshape(xa.shape)
        return loss, grad, np.argmax(z, -1) != y

    def project(xa):
        d = flat(xa - x)
        if norm == "linf":
            d = np.clip(d, -eps, eps)
        else:
            norms = np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
            d = d * np.minimum(1.0, eps / norms)
        return np.clip(x + d.reshape(x.shape), 0.0, 1.0)

    def direction(g):
        if norm == "linf":
            return np.sign(g)
        return g / (np.linalg.norm(flat(g), axis=1).reshape(n, 1, 1, 1) + 1e-12)

    ckpts = apgd.checkpoints(n_iter)
    loss, grad, found = f(x0)
    x_cur = x_prev = x0
    x_max, f_max, g_max, x_found = x0.copy(), loss.copy(), grad.copy(), x0.copy()
    eta = np.full(n, 2.0 * eps)
    n_inc, f_last, halved_last, last_w, halvings = np.zeros(n), loss.copy(), np.zeros(n, bool), 0, 0
    for k in range(n_iter):
        a = 1.0 if k == 0 else 0.75
        z = project(x_cur + eta.reshape(n, 1, 1, 1) * direction(grad))
        x_new = project(x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev))
        l_new, g_new, mis = f(x_new)
        x_found[mis], found = x_new[mis], found | mis
        n_inc += l_new > loss
        better = l_new > f_max
        x_max[better], g_max[better], f_max[better] = x_new[better], g_new[better], l_new[better]
        x_prev, x_cur, grad, loss = x_cur, x_new, g_new, l_new
        if k + 1 in ckpts[1:]:
            halve = (n_inc < rho * (k + 1 - last_w)) | (~halved_last & (f_max <= f_last))
            halvings += halve.sum()
            eta[halve] /= 2.0
            x_cur, grad, loss = x_cur.copy(), grad.copy(), loss.copy()
            x_cur[halve], grad[halve], loss[halve] = x_max[halve], g_max[halve], f_max[halve]
            n_inc[:], f_last, halved_last, last_w = 0, f_max.copy(), halve, k + 1
    return np.where(found.reshape(n, 1, 1, 1), x_found, x_max), found, halvings


@pytest.mark.parametrize("norm,eps", [("linf", 0.05), ("l2", 0.3)])
def test_single_run_matches_a_numpy_algorithm1(norm, eps):
    fn, w, b = linear_model(seed=1)
    x = images("[0,1]", seed=6, batch=12)
    y = np.argmax(fn(x).numpy(), -1).astype("int32")
    attack = apgd.APGD(eps=eps, norm=norm, n_iter=12, seed=9)
    seed = tf.constant([9, 0], tf.int32)  # the first run's seed pair
    x0 = attack._random_start(tf.constant(x), seed).numpy()
    expected, found, halvings = numpy_algorithm1(x.astype(np.float64), y, x0.astype(np.float64),
                                                 w, b, eps=eps, norm=norm, n_iter=12)
    assert halvings > 0  # the step-size schedule is exercised
    x_run, found_tf, _ = attack._run(fn, tf.constant(x), tf.constant(y), tf.constant(y), seed)
    np.testing.assert_array_equal(found_tf.numpy(), found)
    np.testing.assert_allclose(x_run.numpy(), expected, atol=1e-5)
    # The public call returns the same points (every example is attacked in a single run).
    np.testing.assert_allclose(attack(fn, x, y).numpy(), expected, atol=1e-5)


# ----------------------------------------------------------------------------------- constraints


@pytest.mark.parametrize("pixel_range", RANGES)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", ["apgd_ce", "apgd_dlr", "apgd_t"])
def test_stays_in_ball_and_range(tiny_model, name, norm, pixel_range):
    x = images(pixel_range, seed=1)
    y = predictions(tiny_model, x)  # all correctly classified: every point is attacked
    eps = EPS[(norm, pixel_range)]
    attack = attacks.get(name, eps=eps, norm=norm, n_iter=4, pixel_range=pixel_range, seed=3,
                         **SMALL[name])
    x_adv = attack(tiny_model, x, y).numpy()
    assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)
    assert np.abs(x_adv - x).max() > 1e-3


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_graph_mode_with_open_batch_and_nothing_left_to_attack(tiny_model, norm):
    x = images("[-1,1]", seed=2)
    y = predictions(tiny_model, x)
    eps = EPS[(norm, "[-1,1]")]
    attack = attacks.get("apgd_t", eps=eps, norm=norm, n_iter=3, n_target_classes=2,
                         pixel_range="[-1,1]", seed=5)
    assert attack.graph_safe
    fn = tf.function(lambda a, b: attack(tiny_model, a, b), input_signature=[
        tf.TensorSpec([None, 8, 8, 1], tf.float32), tf.TensorSpec([None], tf.int32)])
    graph = fn(tf.constant(x), tf.constant(y)).numpy()
    assert_in_ball_and_range(graph, x, norm, eps, "[-1,1]")
    # Seeded: eager and graph runs agree.
    np.testing.assert_allclose(attack(tiny_model, x, y).numpy(), graph, atol=1e-5)
    # Every point already misclassified: nothing is attacked, the clean images come back.
    wrong = (y + 1) % 10
    np.testing.assert_array_equal(fn(tf.constant(x), tf.constant(wrong)).numpy(), x)


def test_seed_makes_runs_reproducible(tiny_model):
    x = images("[0,1]", seed=4)
    y = predictions(tiny_model, x)
    a = attacks.get("apgd_ce", eps=0.05, n_iter=3, seed=7)
    first = a(tiny_model, x, y).numpy()
    np.testing.assert_array_equal(a(tiny_model, x, y).numpy(), first)
    assert a(tiny_model, x[:5], y[:5]).shape == (5, 8, 8, 1)
    (compiled,) = a.compiled_functions()  # the attack's one compile cache: one function
    assert compiled.experimental_get_tracing_count() == 1  # traced once, batch left open
    np.testing.assert_array_equal(
        attacks.get("apgd_ce", eps=0.05, n_iter=3, seed=7)(tiny_model, x, y).numpy(), first)
    assert not np.array_equal(
        attacks.get("apgd_ce", eps=0.05, n_iter=3, seed=8)(tiny_model, x, y).numpy(), first)


# ----------------------------------------------------------------------------------- strength


def test_apgd_ce_is_at_least_as_strong_as_pgd20(digits_model, digits_test):
    x, y = digits_test
    clean = np.mean(predictions(digits_model, x) == y)
    pgd = attacks.get("pgd", eps=0.1, num_steps=20, seed=0)
    acc_pgd = np.mean(predictions(digits_model, pgd(digits_model, x, y).numpy()) == y)
    x_adv = attacks.get("apgd_ce", eps=0.1, seed=0)(digits_model, x, y).numpy()
    assert_in_ball_and_range(x_adv, x, "linf", 0.1, "[0,1]")
    acc_apgd = np.mean(predictions(digits_model, x_adv) == y)
    assert clean > 0.85
    assert acc_apgd < clean - 0.2  # a real attack
    assert acc_apgd <= acc_pgd + 0.01, (acc_apgd, acc_pgd)


def test_apgd_t_finds_successes_and_keeps_them(digits_model, digits_test):
    x, y = digits_test
    x, y = x[:100], y[:100]
    pred_clean = predictions(digits_model, x)
    kw = dict(eps=0.08, n_iter=20, seed=1)
    one = attacks.get("apgd_t", n_target_classes=1, **kw)(digits_model, x, y).numpy()
    three = attacks.get("apgd_t", n_target_classes=3, **kw)(digits_model, x, y).numpy()
    assert_in_ball_and_range(three, x, "linf", 0.08, "[0,1]")
    fooled_one = predictions(digits_model, one) != y
    fooled_three = predictions(digits_model, three) != y
    assert np.mean(~fooled_three) <= np.mean(pred_clean == y)
    assert fooled_one[pred_clean == y].sum() > 0  # successes on correctly classified points
    # The first target's run is the same (same seed): more targets never lose a success.
    assert np.all(fooled_three[fooled_one])
    assert fooled_three.sum() >= fooled_one.sum()
    # Points misclassified to begin with come back unchanged.
    np.testing.assert_array_equal(three[pred_clean != y], x[pred_clean != y])



def test_apgd_t_target_offset_attacks_the_later_targets_only():
    # A hand-made 4-class linear model: class 0 is predicted (logit 1); classes 1 and 2 (0.9, 0.8)
    # are constant, so targeting them can never flip the prediction; class 3 (-1 + 0.5·Σ(x - 0.5))
    # is ranked fourth but gains 0.5·64·eps = 3.2 > 2 at the ball's corner. So APGD-T over the top
    # two targets fools nothing, over three fools every point, and target_offset=2 with one target
    # (that fourth-ranked class alone) fools every point as well.
    weights = np.zeros((64, 4), np.float32)
    weights[:, 3] = 0.5
    bias = np.array([1.0, 0.9, 0.8, -1.0 - 0.5 * 32], np.float32)
    fn = lambda x: tf.matmul(tf.reshape(x, [-1, 64]), weights) + bias  # noqa: E731
    x = (0.5 + np.random.default_rng(0).uniform(-0.01, 0.01, (6, 8, 8, 1))).astype("float32")
    y = np.zeros(6, np.int32)
    np.testing.assert_array_equal(np.argmax(fn(x), -1), y)
    kw = dict(eps=0.1, n_iter=10, seed=0)
    fooled = lambda adv: np.argmax(fn(adv), -1) != y  # noqa: E731
    assert not fooled(attacks.get("apgd_t", n_target_classes=2, **kw)(fn, x, y)).any()
    assert fooled(attacks.get("apgd_t", n_target_classes=3, **kw)(fn, x, y)).all()
    later = attacks.get("apgd_t", n_target_classes=1, target_offset=2, **kw)(fn, x, y)
    assert_in_ball_and_range(later.numpy(), x, "linf", 0.1, "[0,1]")
    assert (np.argmax(fn(later), -1) == 3).all()
    # Its runs are seeded as the same runs of the full APGD-T: the split equals the whole.
    full = attacks.get("apgd_t", n_target_classes=3, **kw)(fn, x, y)
    np.testing.assert_allclose(later.numpy(), full.numpy())
    assert attacks.get("apgd_t", target_offset=2, **kw).get_config()["target_offset"] == 2
    # Offset and targets together must leave classes to target (checked against the model).
    with pytest.raises(ValueError, match="Received"):
        attacks.get("apgd_t", n_target_classes=2, target_offset=2, **kw)(fn, x, y)

def test_restarts_never_lose_a_success(digits_model, digits_test):
    x, y = digits_test
    x, y = x[:100], y[:100]
    kw = dict(eps=0.06, n_iter=10, seed=4)
    single = attacks.get("apgd_dlr", n_restarts=1, **kw)(digits_model, x, y).numpy()
    multi = attacks.get("apgd_dlr", n_restarts=3, **kw)(digits_model, x, y).numpy()
    fooled_single = predictions(digits_model, single) != y
    fooled_multi = predictions(digits_model, multi) != y
    assert 0 < fooled_single.sum() < len(y)
    assert np.all(fooled_multi[fooled_single])


# ----------------------------------------------------------------------------------- API


def test_model_calls_and_config():
    assert attacks.get("apgd_ce", eps=0.1).model_calls_per_example() == 1 + 101
    assert attacks.get("apgd_dlr", eps=0.1, n_iter=10, n_restarts=2).model_calls_per_example() == 23
    t = attacks.get("apgd_t", eps=0.1, n_iter=10)
    assert t.model_calls_per_example() == 1 + 9 * 11
    cfg = t.get_config()
    assert cfg["name"] == "apgd_t" and cfg["targeted"] and cfg["n_target_classes"] == 9
    assert cfg["rho"] == 0.75 and cfg["n_iter"] == 10 and cfg["norm"] == "linf"
    assert cfg["target_offset"] == 0
    assert {"apgd_ce", "apgd_dlr", "apgd_t"} <= set(attacks.names())


def test_num_steps_is_an_alias_of_n_iter():
    # The NAME-K evaluation specs pass num_steps.
    assert attacks.get("apgd_ce", eps=0.1, num_steps=7).n_iter == 7
    assert attacks.get("apgd_t", eps=0.1, n_iter=7, num_steps=7).n_iter == 7
    assert attacks.get("apgd_dlr", eps=0.1).n_iter == 100
    with pytest.raises(ValueError, match="Received"):
        attacks.get("apgd_dlr", eps=0.1, n_iter=5, num_steps=7)


@pytest.mark.parametrize("name,params", [
    ("apgd_ce", {"eps": 0.0}),
    ("apgd_ce", {"eps": -0.1}),
    ("apgd_ce", {"eps": "big"}),
    ("apgd_ce", {"eps": 8.0}),  # pixel levels passed unconverted
    ("apgd_ce", {"eps": 0.1, "norm": "l1"}),
    ("apgd_dlr", {"eps": 0.1, "n_iter": 0}),
    ("apgd_dlr", {"eps": 0.1, "n_iter": 2.5}),
    ("apgd_dlr", {"eps": 0.1, "n_restarts": 0}),
    ("apgd_t", {"eps": 0.1, "n_target_classes": 0}),
    ("apgd_t", {"eps": 0.1, "target_offset": -1}),
    ("apgd_dlr", {"eps": 0.1, "target_offset": 1}),
    ("apgd_t", {"eps": 0.1, "rho": 0.0}),
    ("apgd_t", {"eps": 0.1, "rho": 1.5}),
    ("apgd_ce", {"eps": 0.1, "pixel_range": "[0,255]"}),
    ("apgd_ce", {"eps": 0.1, "n_target_classes": 3}),
])
def test_bad_parameters(name, params):
    with pytest.raises(ValueError, match="Received"):
        attacks.get(name, **params)


def test_bad_loss_and_call_errors(tiny_model):
    with pytest.raises(ValueError, match="Received"):
        apgd.APGD(eps=0.1, loss="cw")
    with pytest.raises(ValueError, match="Received"):
        apgd.APGD(eps=0.1, loss="ce", targeted=True)
    x = images("[0,1]")
    y = predictions(tiny_model, x)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("apgd_t", eps=0.1, n_target_classes=10)(tiny_model, x, y)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("apgd_ce", eps=0.1)(tiny_model, x, y, targets=y)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("apgd_ce", eps=0.1)(tiny_model, x * 2.0 - 1.0, y)  # outside [0,1]
    with pytest.raises(ValueError, match="Received"):
        attacks.get("apgd_ce", eps=0.1)(tiny_model, x, np.full_like(y, 10))
