"""Tests for tfadv.attacks: the iterative attack loop, FGSM, noop, options and errors."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, losses, ranges
from tfadv.attacks import targets as targets_lib
from tests import testing
from tests.testing import assert_in_ball_and_range

BATCH = 8
NUM_CLASSES = 10
RANGES = ("[0,1]", "[-1,1]")
EPS = {  # (norm, range) -> eps in input units
    ("linf", "[0,1]"): 0.1, ("linf", "[-1,1]"): 0.2,
    ("l2", "[0,1]"): 0.5, ("l2", "[-1,1]"): 1.0,
}


@pytest.fixture(scope="module")
def digits_test():
    _, _, x, y = testing.digits_split(num_test=200)
    return x, y


def batch_in_range(pixel_range, seed=0, batch=BATCH):
    """Random images in the range with some pixels exactly on the bounds (to exercise clipping)."""
    rng_obj = ranges.get_range(pixel_range)
    rng = np.random.default_rng(seed)
    x = rng.uniform(rng_obj.low, rng_obj.high, size=(batch, 8, 8, 1)).astype("float32")
    mask = rng.uniform(size=x.shape)
    x[mask < 0.2] = rng_obj.low
    x[mask > 0.8] = rng_obj.high
    y = rng.integers(0, NUM_CLASSES, size=batch).astype("int32")
    return x, y


def predictions(model, x):
    return np.argmax(model(x, training=False).numpy(), axis=-1)


def mean_ce(model, x, y):
    return float(np.mean(losses.ce(logits=model(x, training=False), labels=y).numpy()))


def probs(model, x):
    return tf.nn.softmax(model(x, training=False)).numpy()


# ----------------------------------------------------------------------------------- constraints


COMBOS = [c for c in itertools.product(("linf", "l2"), ("uniform", "gaussian", "none"),
                                       ("ce", "cw", "kl"), (None, "given", "mc", "ll", "random"))
          if not (c[2] == "kl" and c[3] is not None)]


@pytest.mark.parametrize("pixel_range", RANGES)
@pytest.mark.parametrize("norm,random_start,loss,target", COMBOS,
                         ids=["-".join(map(str, c)) for c in COMBOS])
def test_stays_in_ball_and_range(tiny_model, pixel_range, norm, random_start, loss, target):
    x, y = batch_in_range(pixel_range)
    eps = EPS[(norm, pixel_range)]
    attack = attacks.get("pgd", eps=eps, num_steps=3, norm=norm, random_start=random_start,
                         loss=loss, target=target, pixel_range=pixel_range, seed=1)
    kwargs = {"targets": (y + 1) % NUM_CLASSES} if target == "given" else {}
    x_adv = attack(tiny_model, x, y, **kwargs)
    assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)
    if not (loss == "kl" and random_start == "none"):  # KL has zero gradient at x' = x
        assert np.abs(x_adv.numpy() - x).max() > 1e-3


@pytest.mark.parametrize("target", ["given", "mc", "ll", "random"])
@pytest.mark.parametrize("random_start", ["uniform", "none"])
def test_kl_has_no_targeted_form(target, random_start):
    with pytest.raises(ValueError, match="Received"):
        attacks.get("pgd", eps=0.1, loss="kl", target=target, random_start=random_start)


@pytest.mark.parametrize("norm,random_start,loss,target,pixel_range", [
    ("linf", "uniform", "ce", None, "[0,1]"),
    ("l2", "gaussian", "cw", "mc", "[-1,1]"),
    ("linf", "gaussian", "kl", None, "[-1,1]"),
    ("l2", "uniform", "ce", "random", "[0,1]"),
])
def test_graph_mode_constraints(tiny_model, norm, random_start, loss, target, pixel_range):
    x, y = batch_in_range(pixel_range, seed=3)
    eps = EPS[(norm, pixel_range)]
    attack = attacks.get("pgd", eps=eps, num_steps=3, norm=norm, random_start=random_start,
                         loss=loss, target=target, pixel_range=pixel_range)
    fn = tf.function(lambda a, b: attack(tiny_model, a, b))
    x_adv = fn(tf.constant(x), tf.constant(y))
    assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)
    assert np.abs(x_adv.numpy() - x).max() > 1e-3


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_graph_mode_matches_eager_for_deterministic_attack(tiny_model, norm):
    x, y = batch_in_range("[0,1]", seed=4)
    eps = EPS[(norm, "[0,1]")]
    attack = attacks.get("pgd", eps=eps, num_steps=3, norm=norm, random_start="none")
    eager = attack(tiny_model, x, y).numpy()
    graph = tf.function(lambda a, b: attack(tiny_model, a, b))(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(graph.numpy(), eager, atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_stay_in_ball_and_range(tiny_model, norm):
    x, y = batch_in_range("[-1,1]", seed=5)
    eps = EPS[(norm, "[-1,1]")]
    attack = attacks.get("pgd", eps=eps, num_steps=2, norm=norm, restarts=3,
                         pixel_range="[-1,1]", seed=2)
    assert_in_ball_and_range(attack(tiny_model, x, y), x, norm, eps, "[-1,1]")


def test_restarts_never_lose_a_success_of_the_first_run(digits_model, digits_test):
    x, y = digits_test
    kwargs = dict(eps=0.08, step_size=0.03, num_steps=3, random_start="uniform", seed=11)
    tf.random.set_seed(0)
    single = attacks.get("pgd", restarts=1, **kwargs)(digits_model, x, y).numpy()
    tf.random.set_seed(0)  # the first of the 5 runs now draws the same start as `single`
    multi = attacks.get("pgd", restarts=5, **kwargs)(digits_model, x, y).numpy()
    assert_in_ball_and_range(multi, x, "linf", 0.08, "[0,1]")
    fooled_single = predictions(digits_model, single) != y
    fooled_multi = predictions(digits_model, multi) != y
    assert fooled_single.sum() > 0 and fooled_single.sum() < len(y)
    assert fooled_multi.sum() >= fooled_single.sum()
    # Per example: whatever the first run fooled stays fooled (a success is never replaced).
    assert np.all(fooled_multi[fooled_single])
    # Examples not fooled by any run carry the restart with the highest CE: at least the first's.
    ce_single = losses.ce(logits=digits_model(single), labels=y).numpy()
    ce_multi = losses.ce(logits=digits_model(multi), labels=y).numpy()
    neither = ~fooled_single & ~fooled_multi
    assert np.all(ce_multi[neither] >= ce_single[neither] - 1e-5)


# ----------------------------------------------------------------------------------- FGSM / steps


@pytest.mark.parametrize("pixel_range", RANGES)
def test_fgsm_is_one_signed_step(tiny_model, pixel_range):
    x, y = batch_in_range(pixel_range, seed=6)
    eps = EPS[("linf", pixel_range)]
    rng_obj = ranges.get_range(pixel_range)
    grad = testing.ce_input_gradient(tiny_model, x, y)
    assert np.mean(grad != 0) > 0.5
    expected = np.clip(x + eps * np.sign(grad), rng_obj.low, rng_obj.high)
    x_adv = attacks.get("fgsm", eps=eps, pixel_range=pixel_range)(tiny_model, x, y).numpy()
    np.testing.assert_allclose(x_adv, expected, rtol=0, atol=1e-6)
    # Deterministic: no random start.
    np.testing.assert_array_equal(
        attacks.get("fgsm", eps=eps, pixel_range=pixel_range)(tiny_model, x, y).numpy(), x_adv)


def test_one_step_l2_is_normalised_gradient_step(tiny_model):
    x, y = batch_in_range("[0,1]", seed=7)
    x = np.clip(x, 0.3, 0.7)  # |δ_i| <= eps = 0.3: the range clipping cannot interfere
    eps = 0.3
    grad = testing.ce_input_gradient(tiny_model, x, y)
    norms = np.sqrt((grad.reshape(BATCH, -1) ** 2).sum(-1)).reshape(BATCH, 1, 1, 1)
    expected = x + eps * grad / norms
    assert 0.0 <= expected.min() and expected.max() <= 1.0
    x_adv = attacks.get("pgd", eps=eps, step_size=eps, num_steps=1, norm="l2",
                        random_start="none")(tiny_model, x, y).numpy()
    np.testing.assert_allclose(x_adv, expected, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(((x_adv - x).reshape(BATCH, -1) ** 2).sum(-1)), eps,
                               rtol=1e-4)


def test_pgd_stronger_than_fgsm_and_clean(digits_model, digits_test):
    x, y = digits_test
    eps = 0.1
    x_fgsm = attacks.get("fgsm", eps=eps)(digits_model, x, y)
    x_pgd = attacks.get("pgd", eps=eps, step_size=eps / 8, num_steps=20,
                        random_start="none")(digits_model, x, y)
    assert_in_ball_and_range(x_pgd, x, "linf", eps, "[0,1]")
    clean, fgsm, pgd = (mean_ce(digits_model, v, y) for v in (x, x_fgsm, x_pgd))
    assert fgsm > clean
    assert pgd >= fgsm, (clean, fgsm, pgd)
    assert pgd > clean + 0.5, (clean, fgsm, pgd)
    # PGD lowers accuracy at least as much as FGSM.
    acc = lambda v: np.mean(predictions(digits_model, v) == y)  # noqa: E731
    assert acc(x_pgd) <= acc(x_fgsm) < acc(x)


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_pgd_uniform_start_increases_loss(digits_model, digits_test, loss):
    x, y = digits_test
    x_adv = attacks.get("pgd", eps=0.1, num_steps=10, loss=loss)(digits_model, x, y)
    assert mean_ce(digits_model, x_adv, y) > mean_ce(digits_model, x, y) + 0.5
    margin = lambda v: np.mean(losses.cw_margin(logits=digits_model(v), labels=y).numpy())  # noqa
    assert margin(x_adv) > margin(x)


# ----------------------------------------------------------------------------------- targets


@pytest.mark.parametrize("loss", ["ce", "cw"])
@pytest.mark.parametrize("target", ["given", "mc", "ll", "random"])
def test_targeted_attack_raises_target_probability(digits_model, digits_test, target, loss):
    x, y = digits_test
    logits_clean = digits_model(x, training=False)
    tf.random.set_seed(0)
    if target == "given":
        targets = (y + 3) % NUM_CLASSES
    else:  # the attack draws its targets first, with its seed, after the same global-seed reset
        targets = targets_lib.select(target, logits=logits_clean, labels=y, seed=5).numpy()
    assert np.all(targets != y)
    attack = attacks.get("pgd", eps=0.1, num_steps=10, random_start="none", target=target,
                         loss=loss, seed=5)
    tf.random.set_seed(0)
    x_adv = attack(digits_model, x, y, **({"targets": targets} if target == "given" else {}))
    assert_in_ball_and_range(x_adv, x, "linf", 0.1, "[0,1]")
    idx = np.arange(len(y))
    p_clean, p_adv = probs(digits_model, x)[idx, targets], probs(digits_model, x_adv)[idx, targets]
    assert p_adv.mean() > p_clean.mean(), (p_clean.mean(), p_adv.mean())
    # The target's log-probability rises by more than a factor e on average (LL targets start
    # near 1e-5, so absolute probabilities stay small for them).
    log_p = lambda v: np.log(probs(digits_model, v)[idx, targets] + 1e-30)  # noqa: E731
    assert log_p(x_adv).mean() > log_p(x).mean() + 1.0
    assert np.mean(log_p(x_adv) > log_p(x)) > 0.9
    # Targeted success rate beats the (near zero) clean rate.
    hit = lambda v: np.mean(predictions(digits_model, v) == targets)  # noqa: E731
    assert hit(x) <= 0.02  # only clean mistakes (MC target = the wrong prediction)
    if target != "ll":
        assert hit(x_adv) > hit(x) + 0.05


def test_targeted_attack_lowers_target_ce(digits_model, digits_test):
    # A targeted attack descends the target's CE; an untargeted one would not care about it.
    x, y = digits_test
    targets = (y + 5) % NUM_CLASSES
    x_adv = attacks.get("pgd", eps=0.1, num_steps=10, random_start="none",
                        target="given")(digits_model, x, y, targets=targets)
    assert mean_ce(digits_model, x_adv, targets) < mean_ce(digits_model, x, targets) - 0.5


def test_given_target_needs_targets(tiny_model):
    x, y = batch_in_range("[0,1]")
    with pytest.raises(ValueError, match="Received"):
        attacks.get("pgd", eps=0.1, target="given")(tiny_model, x, y)


# ----------------------------------------------------------------------------------- randomness


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_no_random_start_is_deterministic(tiny_model, norm):
    x, y = batch_in_range("[0,1]", seed=8)
    attack = attacks.get("pgd", eps=EPS[(norm, "[0,1]")], num_steps=3, norm=norm,
                         random_start="none")
    np.testing.assert_array_equal(attack(tiny_model, x, y).numpy(), attack(tiny_model, x, y).numpy())


@pytest.mark.parametrize("random_start", ["uniform", "gaussian"])
def test_random_start_without_seed_differs_between_calls(tiny_model, random_start):
    x, y = batch_in_range("[0,1]", seed=9)
    attack = attacks.get("pgd", eps=0.1, num_steps=1, random_start=random_start, seed=None)
    a, b = attack(tiny_model, x, y).numpy(), attack(tiny_model, x, y).numpy()
    assert not np.array_equal(a, b)


def test_num_steps_zero_returns_uniform_start_inside_ball(tiny_model):
    x, y = batch_in_range("[0,1]", seed=10)
    x_adv = attacks.get("pgd", eps=0.1, num_steps=0)(tiny_model, x, y).numpy()
    assert_in_ball_and_range(x_adv, x, "linf", 0.1, "[0,1]")
    assert np.abs(x_adv - x).max() > 0.05
    x_none = attacks.get("pgd", eps=0.1, num_steps=0, random_start="none")(tiny_model, x, y)
    np.testing.assert_array_equal(x_none.numpy(), x)


# ----------------------------------------------------------------------------------- stopping


def relabel_half(model, x, y):
    """Labels that make the model wrong on the first half of the batch and right on the second."""
    pred = predictions(model, x)
    y_new = pred.copy().astype("int32")
    half = len(y) // 2
    y_new[:half] = (pred[:half] + 1) % NUM_CLASSES
    return y_new, np.arange(len(y)) < half


def test_early_stop_leaves_misclassified_examples_unchanged(digits_model, digits_test):
    x, y = digits_test
    y, wrong = relabel_half(digits_model, x, y)
    kwargs = dict(eps=0.1, num_steps=5, random_start="none")
    x_stop = attacks.get("pgd", early_stop=True, **kwargs)(digits_model, x, y).numpy()
    np.testing.assert_array_equal(x_stop[wrong], x[wrong])
    # The correctly classified half is attacked, and without early stop everything moves.
    assert np.all(np.abs(x_stop[~wrong] - x[~wrong]).reshape(np.sum(~wrong), -1).max(-1) > 0)
    x_full = attacks.get("pgd", early_stop=False, **kwargs)(digits_model, x, y).numpy()
    assert np.all(np.abs(x_full - x).reshape(len(x), -1).max(-1) > 0)
    # Stopping at the first success does not cost robust-accuracy estimates much.
    fooled_stop = predictions(digits_model, x_stop) != y
    assert np.all(fooled_stop[wrong])
    assert fooled_stop.mean() >= (predictions(digits_model, x_full) != y).mean() - 0.02


@pytest.mark.parametrize("norm,target,restarts", [("linf", None, 1), ("l2", None, 1),
                                                  ("linf", "mc", 1), ("linf", None, 2)])
def test_early_stop_compacts_the_batch_without_changing_results(digits_model, digits_test, norm,
                                                                target, restarts):
    """Frozen examples are dropped from the forward/backward (issue 8); the iterates are exactly
    those of the masked full-batch loop."""
    x, y = digits_test
    eps = 0.1 if norm == "linf" else 1.0
    kwargs = dict(eps=eps, num_steps=8, norm=norm, target=target, restarts=restarts,
                  random_start="none", early_stop=True)
    # One pass per step, so that each step's batch size is one recorded call.
    attack = attacks.get("pgd", **kwargs)
    masked = attacks.get("pgd", **kwargs)
    masked.compact_frozen = False
    wrapped = testing.EagerBatchSizes(digits_model)
    x_compact = attack(wrapped, x, y).numpy()  # first call: op by op, sizes visible
    x_masked = masked(digits_model, x, y).numpy()
    np.testing.assert_allclose(x_compact, x_masked, atol=1e-6)
    grads = wrapped.sizes[1:]  # minus the clean forward of a first (validating) call
    if restarts > 1:  # minus the scoring forwards after each run; the second run starts with
        assert grads[8] == grads[-1] == len(x)  # the first one's failures only
        assert grads[9] <= grads[7]
        grads = grads[:8] + grads[9:-1]
    assert grads[:8] == sorted(grads[:8], reverse=True)
    assert grads[-1] < len(x), wrapped.sizes  # later steps ran on fewer examples
    # Compiled (second call) gives the same result.
    np.testing.assert_allclose(attack(wrapped, x, y).numpy(), x_compact, atol=1e-6)


def test_no_compaction_in_training_mode_or_without_early_stop(digits_model):
    attack = attacks.get("pgd", eps=0.1, early_stop=True)
    assert attack._compacts(attacks.ModelFn(digits_model, False))
    assert not attack._compacts(attacks.ModelFn(digits_model, True))
    assert not attacks.get("pgd", eps=0.1)._compacts(digits_model)


def test_early_stop_keeps_first_success_of_targeted_attack(digits_model, digits_test):
    x, y = digits_test
    pred = predictions(digits_model, x)
    targets = pred.astype("int32")  # already "hit": the targeted attack must not move them
    y_other = (pred + 1) % NUM_CLASSES
    x_adv = attacks.get("pgd", eps=0.1, num_steps=3, random_start="none", target="given",
                        early_stop=True)(digits_model, x, y_other, targets=targets)
    np.testing.assert_array_equal(x_adv.numpy(), x)


def test_stop_fn_freezes_selected_examples(tiny_model):
    x, y = batch_in_range("[0,1]", seed=12)
    seen = []

    def stop_even(state):
        seen.append(state)
        return tf.equal(tf.range(tf.shape(state.labels)[0]) % 2, 0)

    attack = attacks.get("pgd", eps=0.1, num_steps=3, random_start="none", stop_fn=stop_even)
    x_adv = attack(tiny_model, x, y).numpy()
    np.testing.assert_array_equal(x_adv[0::2], x[0::2])
    assert np.all(np.abs(x_adv[1::2] - x[1::2]).reshape(BATCH // 2, -1).max(-1) > 0.05)
    # The criterion sees every step (eagerly: once per iteration) with the documented fields.
    assert [int(s.step) for s in seen] == [0, 1, 2]
    for s in seen:
        assert s.grad.shape == x.shape and s.x_adv.shape == x.shape
        assert s.logits.shape == (BATCH, NUM_CLASSES)
        np.testing.assert_array_equal(s.x_nat.numpy(), x)
        np.testing.assert_array_equal(s.labels.numpy(), y)
        assert s.eps == pytest.approx(0.1)


def test_stop_fn_stops_for_the_rest_of_the_run(tiny_model):
    x, y = batch_in_range("[0,1]", seed=13)

    def stop_after_first(state):  # true only at step 1: examples move once, then freeze
        return tf.fill(tf.shape(state.labels), tf.equal(state.step, 1))

    x_adv = attacks.get("pgd", eps=0.1, step_size=0.01, num_steps=5, random_start="none",
                        stop_fn=stop_after_first)(tiny_model, x, y).numpy()
    # Exactly one Linf step of 0.01 was taken.
    assert np.abs(x_adv - x).max() == pytest.approx(0.01, abs=1e-6)


def test_stop_fn_in_graph_mode(tiny_model):
    x, y = batch_in_range("[0,1]", seed=14)
    attack = attacks.get("pgd", eps=0.1, num_steps=3, random_start="none",
                         stop_fn=lambda s: tf.equal(tf.range(tf.shape(s.labels)[0]) % 2, 0))
    x_adv = tf.function(lambda a, b: attack(tiny_model, a, b))(tf.constant(x), tf.constant(y))
    np.testing.assert_array_equal(x_adv.numpy()[0::2], x[0::2])
    assert np.abs(x_adv.numpy()[1::2] - x[1::2]).max() > 0.05


# ----------------------------------------------------------------------------------- BatchNorm


def trainable_values(model):
    return [np.array(v) for v in model.trainable_variables]


def test_inference_mode_attack_keeps_bn_statistics():
    model = testing.tiny_cnn(seed=1)
    x, y = batch_in_range("[0,1]", seed=15)
    stats, weights = testing.bn_moving_stats(model), trainable_values(model)
    assert len(stats) == 2
    for loss in ("ce", "kl"):
        attacks.get("pgd", eps=0.1, num_steps=3, loss=loss, restarts=2)(model, x, y)
    attacks.get("pgd", eps=0.1, num_steps=3, target="mc")(model, x, y)
    for before, after in zip(stats, testing.bn_moving_stats(model)):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(weights, trainable_values(model)):
        np.testing.assert_array_equal(before, after)


def test_training_mode_attack_updates_bn_statistics_only():
    model = testing.tiny_cnn(seed=1)
    x, y = batch_in_range("[0,1]", seed=15)
    stats, weights = testing.bn_moving_stats(model), trainable_values(model)
    attacks.get("pgd", eps=0.1, num_steps=3, training=True)(model, x, y)
    changed = [not np.array_equal(b, a) for b, a in zip(stats, testing.bn_moving_stats(model))]
    assert all(changed)
    for before, after in zip(weights, trainable_values(model)):
        np.testing.assert_array_equal(before, after)


def test_training_mode_needs_a_keras_model():
    x, y = batch_in_range("[0,1]")
    model = testing.tiny_cnn(seed=1)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("pgd", eps=0.1, training=True)(lambda v: model(v), x, y)


def test_plain_callable_model_fn(tiny_model):
    x, y = batch_in_range("[0,1]", seed=16)
    attack = attacks.get("pgd", eps=0.1, num_steps=2, random_start="none")
    np.testing.assert_array_equal(
        attack(lambda v: tiny_model(v, training=False), x, y).numpy(),
        attack(tiny_model, x, y).numpy())


# ----------------------------------------------------------------------------------- registry


def test_names():
    assert {"noop", "clean", "fgsm", "pgd"} <= set(attacks.names())


@pytest.mark.parametrize("name", ["noop", "clean", "NoOp"])
def test_noop_returns_images_unchanged(tiny_model, name):
    x, y = batch_in_range("[-1,1]")
    out = attacks.get(name)(tiny_model, x, y)
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), x)


def test_noop_takes_no_parameters():
    with pytest.raises(ValueError, match="Received"):
        attacks.get("noop", eps=1)


@pytest.mark.parametrize("key,value", [("num_steps", 3), ("step_size", 0.01),
                                       ("random_start", "uniform"), ("restarts", 2)])
def test_fgsm_refuses_iterative_options(key, value):
    with pytest.raises(ValueError, match="Received"):
        attacks.get("fgsm", eps=0.1, **{key: value})


def test_get_config_and_defaults():
    attack = attacks.get("pgd", eps=0.1, num_steps=4)
    cfg = attack.get_config()
    assert cfg["name"] == "pgd" and cfg["eps"] == 0.1 and cfg["num_steps"] == 4
    assert cfg["step_size"] == pytest.approx(2.5 * 0.1 / 4)
    assert cfg["random_start"] == "uniform" and cfg["loss"] == "ce" and cfg["norm"] == "linf"
    assert cfg["pixel_range"] == "[0,1]" and cfg["training"] is False
    fgsm = attacks.get("fgsm", eps=0.1).get_config()
    assert fgsm["name"] == "fgsm" and fgsm["num_steps"] == 1 and fgsm["step_size"] == 0.1
    assert fgsm["random_start"] == "none"


@pytest.mark.parametrize("name,params,calls", [
    ("noop", {}, 0),
    ("fgsm", {"eps": 0.1}, 1),
    ("pgd", {"eps": 0.1, "num_steps": 7}, 7),
    ("pgd", {"eps": 0.1, "num_steps": 0}, 0),
    ("pgd", {"eps": 0.1, "num_steps": 5, "restarts": 3}, 5 * 3 + 3),
    ("pgd", {"eps": 0.1, "num_steps": 5, "target": "mc"}, 6),
    ("pgd", {"eps": 0.1, "num_steps": 5, "target": "given"}, 5),
    ("pgd", {"eps": 0.1, "num_steps": 4, "loss": "kl", "restarts": 2}, 4 * 2 + 2 + 1),
])
def test_model_calls_per_example(name, params, calls):
    assert attacks.get(name, **params).model_calls_per_example() == calls


def test_model_calls_per_example_counts_graph_mode_forwards():
    """The count matches the number of model evaluations traced inside tf.function."""
    model = testing.tiny_cnn(seed=0)
    x, y = batch_in_range("[0,1]")
    for params in ({"num_steps": 3}, {"num_steps": 2, "restarts": 2, "loss": "kl"},
                   {"num_steps": 2, "target": "ll"}):
        attack = attacks.get("pgd", eps=0.1, **params)
        calls = []

        def model_fn(v):
            calls.append(1)
            return model(v, training=False)

        # tf.while_loop traces its body once: count the traced calls per while-loop body.
        graph = tf.function(lambda a, b: attack(model_fn, a, b)).get_concrete_function(
            tf.TensorSpec(x.shape, tf.float32), tf.TensorSpec(y.shape, tf.int32))
        del graph
        restarts = attack.restarts
        traced = len(calls)
        # Traced: one body per restart + one scoring per restart (restarts > 1) + clean forward.
        per_body = traced - (restarts if restarts > 1 else 0) - int(
            attack.target in ("mc", "ll", "random") or attack.loss == "kl")
        assert per_body == restarts
        assert attack.model_calls_per_example() == (
            traced - restarts + attack.num_steps * restarts)


# ----------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("params", [
    dict(eps=8),                                    # pixel levels passed unconverted
    dict(eps=8, pixel_range="[-1,1]"),
    dict(eps=0.1, step_size=2),
    dict(eps=-0.1),
    dict(eps=float("nan")),
    dict(eps="big"),
    dict(eps=0.1, norm="l1"),
    dict(eps=0.1, loss="mse"),
    dict(eps=0.1, target="best"),
    dict(eps=0.1, random_start="normal"),
    dict(eps=0.1, num_steps=-1),
    dict(eps=0.1, num_steps=2.5),
    dict(eps=0.1, restarts=0),
    dict(eps=0.1, restarts=1.5),
    dict(eps=0.1, pixel_range="[0,255]"),
    dict(eps=0.1, unknown_option=1),
], ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_bad_parameters(params):
    with pytest.raises(ValueError, match="Received"):
        attacks.get("pgd", **params)


def test_pixel_eps_message_suggests_conversion():
    with pytest.raises(ValueError, match="from_pixels") as e:
        attacks.get("pgd", eps=8)
    assert f"{8 / 255:.6g}" in str(e.value)


def test_l2_eps_may_exceed_range_width():
    assert attacks.get("pgd", eps=3.0, norm="l2").eps == 3.0


@pytest.mark.parametrize("name", ["cw_attack", "bim_nonexistent", "pgd20"])
def test_unknown_attack(name):
    with pytest.raises(ValueError, match="Received"):
        attacks.get(name, eps=0.1)


def call_errors():
    x, y = batch_in_range("[0,1]")
    return [
        ("above_range", x + 1.0, y),
        ("pixel_levels", x * 255.0, y),
        ("below_range", x - 1.0, y),
        ("nan", np.where(x > 0.5, np.nan, x).astype("float32"), y),
        ("label_10", x, np.where(np.arange(BATCH) == 0, 10, y)),
        ("label_neg", x, np.where(np.arange(BATCH) == 0, -1, y)),
        ("labels_2d", x, y[:, None]),
        ("labels_short", x, y[:-1]),
        ("one_hot", x, np.eye(NUM_CLASSES, dtype="int32")[y]),
    ]


@pytest.mark.parametrize("case", range(len(call_errors())),
                         ids=[c[0] for c in call_errors()])
def test_bad_call_inputs(tiny_model, case):
    _, x, y = call_errors()[case]
    with pytest.raises(ValueError, match="Received"):
        attacks.get("pgd", eps=0.1, num_steps=1)(tiny_model, x, y)


def test_images_in_other_range_rejected(tiny_model):
    x, y = batch_in_range("[-1,1]")
    with pytest.raises(ValueError, match="Received"):
        attacks.get("pgd", eps=0.1, num_steps=1, pixel_range="[0,1]")(tiny_model, x, y)


# ------------------------------------------------------------------- regressions (fixed bugs)


@pytest.mark.parametrize("how", ["early_stop", "stop_fn"])
def test_gaussian_start_frozen_examples_stay_in_range(digits_model, digits_test, how):
    x, y = digits_test
    y, _ = relabel_half(digits_model, x, y)
    assert x.min() == 0.0  # digits have many exact-zero pixels
    opts = ({"early_stop": True} if how == "early_stop"
            else {"stop_fn": lambda s: tf.ones(tf.shape(s.labels), tf.bool)})
    x_adv = attacks.get("pgd", eps=0.1, num_steps=3, random_start="gaussian", **opts)(
        digits_model, x, y)
    assert_in_ball_and_range(x_adv, x, "linf", 0.1, "[0,1]")


@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_zero_eps_with_default_step_size_is_clean(tiny_model, name):
    x, y = batch_in_range("[0,1]")
    x_adv = attacks.get(name, eps=0.0)(tiny_model, x, y)
    np.testing.assert_array_equal(x_adv.numpy(), x)


def test_non_numeric_num_steps_message():
    with pytest.raises(ValueError, match="num_steps.*Received"):
        attacks.get("pgd", eps=0.1, num_steps="abc")


def test_training_mode_model_fn_still_uses_inference_mode_for_targets_and_bn():
    """A defense hands the attack a training-mode callable (Madry's release); the MC target is still
    computed from inference-mode clean logits, which a plain lambda could not guarantee."""
    from tfadv.attacks.core import ModelFn

    model = testing.tiny_cnn(with_bn=True, seed=3)
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype("float32")
    y = np.zeros(16, "int32")
    model(x, training=True)  # make moving statistics differ from batch statistics
    for v in model.non_trainable_variables:
        v.assign(v * 0.5 + 0.2)
    attack = attacks.get("pgd", eps=0.05, num_steps=1, target="mc", random_start="none")
    inference_logits = model(x, training=False).numpy()
    expected = np.argmax(np.where(np.eye(10)[y] > 0, -np.inf, inference_logits), axis=-1)
    seen = {}
    original = attacks.core.targets_lib.select

    def spy(kind, *, logits, labels, seed=None):
        seen["targets"] = original(kind, logits=logits, labels=labels, seed=seed).numpy()
        return original(kind, logits=logits, labels=labels, seed=seed)

    attacks.core.targets_lib.select = spy
    try:
        attack(ModelFn(model, training=True), x, y)
    finally:
        attacks.core.targets_lib.select = original
    np.testing.assert_array_equal(seen["targets"], expected)
