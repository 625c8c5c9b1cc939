"""Tests for MI-FGSM (momentum) and C&W∞ (PGD on the CW margin)."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from tfadv import attacks
from tfadv.attacks.mifgsm import MomentumIterativeAttack
from tests import testing
from tests.attacks.test_core import EPS, RANGES, assert_in_ball_and_range, batch_in_range


@pytest.fixture(scope="module")
def digits_test():
    _, _, x, y = testing.digits_split(num_test=100)
    return x, y


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False).numpy(), -1) == y))


# ------------------------------------------------------------------------------ constraints


@pytest.mark.parametrize("pixel_range", RANGES)
@pytest.mark.parametrize("name,norm,extra", [
    ("mifgsm", "linf", {}), ("mifgsm", "l2", {}), ("cw_linf", "linf", {}),
    ("mifgsm", "linf", {"random_start": "uniform", "restarts": 2, "early_stop": True}),
    ("mifgsm", "l2", {"random_start": "gaussian", "target": "mc", "loss": "cw"}),
])
def test_stays_in_ball_and_range(tiny_model, name, norm, extra, pixel_range):
    x, y = batch_in_range(pixel_range, seed=1)
    eps = EPS[(norm, pixel_range)]
    params = dict(eps=eps, norm=norm, pixel_range=pixel_range, seed=3, **extra)
    if name == "cw_linf":
        params["num_steps"] = 5
    else:  # α > eps/T so that the projection and the range clipping both bind
        params.update(num_steps=4, step_size=eps / 2)
    x_adv = attacks.get(name, **params)(tiny_model, x, y)
    assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)
    assert np.abs(x_adv.numpy() - x).max() > 1e-3


# ------------------------------------------------------------------------------ momentum


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference_mifgsm(x, y, w, b, eps, num_steps, decay):
    """Dong et al. Algorithm 1 in float64 NumPy for logits = flatten(x) @ w + b (CE loss)."""
    n = len(x)
    xf = x.reshape(n, -1).astype(np.float64)
    x0, g, alpha = xf.copy(), np.zeros_like(xf), eps / num_steps
    for _ in range(num_steps):
        p = _softmax(xf @ w + b)
        p[np.arange(n), y] -= 1.0
        grad = p @ w.T  # ∇ₓ CE = W (softmax(z) − e_y)
        g = decay * g + grad / np.abs(grad).sum(-1, keepdims=True)
        xf = np.clip(np.clip(xf + alpha * np.sign(g), x0 - eps, x0 + eps), 0.0, 1.0)
    return xf.reshape(x.shape)


@pytest.fixture(scope="module")
def linear_case():
    """A 3-class linear model on 2x2 images where momentum changes some signs at step 2."""
    rng = np.random.default_rng(5)
    w = rng.normal(size=(4, 3)) * 8
    b = np.zeros(3)
    x = rng.uniform(0.35, 0.65, size=(8, 2, 2, 1)).astype("float32")
    y = rng.integers(0, 3, size=8).astype("int32")
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    model.layers[-1].set_weights([w.astype("float32"), b.astype("float32")])
    return model, x, y, w, b


@pytest.mark.parametrize("decay", [1.0, 0.5, 0.0])
def test_two_steps_match_hand_computation(linear_case, decay):
    model, x, y, w, b = linear_case
    eps = 0.3
    expected = reference_mifgsm(x, y, w, b, eps, 2, decay)
    attack = attacks.get("mifgsm", eps=eps, num_steps=2, decay=decay)
    assert attack.step_size == pytest.approx(eps / 2)
    np.testing.assert_allclose(attack(model, x, y).numpy(), expected, atol=1e-6)


def test_momentum_changes_the_second_step(linear_case):
    model, x, y, w, b = linear_case
    with_momentum = reference_mifgsm(x, y, w, b, 0.3, 2, 1.0)
    without = reference_mifgsm(x, y, w, b, 0.3, 2, 0.0)
    assert np.sum(np.abs(with_momentum - without) > 1e-6) >= 1  # the case exercises momentum
    # decay=0 is I-FGSM: PGD without random start with step eps/T.
    ifgsm = attacks.get("pgd", eps=0.3, num_steps=2, step_size=0.15, random_start="none")
    np.testing.assert_allclose(attacks.get("mifgsm", eps=0.3, num_steps=2, decay=0.0)(
        model, x, y).numpy(), ifgsm(model, x, y).numpy(), atol=1e-6)


def test_graph_mode_matches_eager(tiny_model):
    x, y = batch_in_range("[0,1]", seed=2)
    attack = attacks.get("mifgsm", eps=0.1, num_steps=3)
    eager = attack(tiny_model, x, y).numpy()
    graph = tf.function(lambda a, b: attack(tiny_model, a, b))(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(graph.numpy(), eager, atol=1e-6)


def test_mifgsm_lowers_accuracy(digits_model, digits_test):
    x, y = digits_test
    x_adv = attacks.get("mifgsm", eps=0.15)(digits_model, x, y)
    assert_in_ball_and_range(x_adv, x, "linf", 0.15, "[0,1]")
    assert accuracy(digits_model, x_adv, y) < accuracy(digits_model, x, y) - 0.3


def test_defaults_follow_the_paper():
    attack = attacks.get("mifgsm", eps=0.1)
    assert isinstance(attack, MomentumIterativeAttack)
    assert (attack.num_steps, attack.decay, attack.random_start) == (10, 1.0, "none")
    assert attack.step_size == pytest.approx(0.01)
    assert attack.get_config()["decay"] == 1.0


@pytest.mark.parametrize("params", [dict(decay=-1.0), dict(decay="a"), dict(decay=float("inf")),
                                    dict(num_steps=-1), dict(norm="l1"), dict(eps=2.0)])
def test_mifgsm_errors(params):
    kwargs = dict(eps=0.1)
    kwargs.update(params)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("mifgsm", **kwargs)


# ------------------------------------------------------------------------------ C&W∞


def test_cw_linf_is_pgd_on_the_cw_margin(digits_model, digits_test):
    x, y = digits_test
    attack = attacks.get("cw_linf", eps=0.1, random_start="none")
    assert (attack.num_steps, attack.loss, attack.name) == (30, "cw", "cw_linf")
    assert attack.step_size == pytest.approx(0.025)
    expected = attacks.get("pgd", eps=0.1, num_steps=30, step_size=0.025, loss="cw",
                           random_start="none")(digits_model, x, y)
    x_adv = attack(digits_model, x, y)
    np.testing.assert_allclose(x_adv.numpy(), expected.numpy(), atol=1e-6)
    assert accuracy(digits_model, x_adv, y) < accuracy(digits_model, x, y) - 0.3


@pytest.mark.parametrize("params", [dict(loss="ce"), dict(eps="big"), dict(eps=-0.1)])
def test_cw_linf_errors(params):
    kwargs = dict(eps=0.1)
    kwargs.update(params)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("cw_linf", **kwargs)


# ------------------------------------------------------------------- MI-FGSM is the core loop


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_three_steps_match_dong_et_al_eq_6_7_eagerly_and_compiled(linear_case, decay):
    """g_{t+1} = μ·g_t + ∇/‖∇‖₁, x_{t+1} = clip(project(x_t + α·sign(g_{t+1}))) for T = 3: the
    momentum is state of the one loop; the op-by-op first call and the compiled second agree."""
    model, x, y, w, b = linear_case
    expected = reference_mifgsm(x, y, w, b, 0.3, 3, decay)
    attack = attacks.get("mifgsm", eps=0.3, num_steps=3, decay=decay)
    for _ in range(2):  # first call op by op, then the compiled attack
        np.testing.assert_allclose(attack(model, x, y).numpy(), expected, atol=1e-6)
    assert len(attack.compiled_functions()) == 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_of_the_core_stays_in_the_ball_and_is_seeded(tiny_model, norm):
    x, y = batch_in_range("[0,1]", seed=4)
    eps = EPS[(norm, "[0,1]")]

    def run(seed, random_start="uniform"):
        tf.random.set_seed(0)  # the core's start is op-seeded: a fixed global seed reproduces it
        attack = attacks.get("mifgsm", eps=eps, norm=norm, num_steps=2, seed=seed,
                             random_start=random_start)
        return attack(tiny_model, x, y).numpy()

    first = run(5)
    assert_in_ball_and_range(first, x, norm, eps, "[0,1]")
    np.testing.assert_allclose(run(5), first, rtol=0, atol=1e-6)  # the same seed: the same start
    assert np.abs(run(6) - first).max() > 1e-3  # another seed: another start
    assert np.abs(run(5, "none") - first).max() > 1e-3  # the start is used (not x)


def test_compaction_matches_the_masked_loop_and_the_plain_run(digits_model, digits_test):
    """Early stop drops fooled examples from the forward/backward (with their momentum); the
    result equals the masked full-batch loop, and on the points no step fooled it equals the run
    without early stop (their trajectories never froze)."""
    x, y = digits_test
    kwargs = dict(eps=0.1, num_steps=8, step_size=0.02, early_stop=True)
    attack = attacks.get("mifgsm", **kwargs)
    masked = attacks.get("mifgsm", **kwargs)
    masked.compact_frozen = False
    wrapped = testing.EagerBatchSizes(digits_model)
    x_compact = attack(wrapped, x, y).numpy()  # first call: op by op, batch sizes recorded
    grads = wrapped.sizes[1:]  # minus the clean forward of the validating first call
    assert grads == sorted(grads, reverse=True) and grads[-1] < len(x), wrapped.sizes
    np.testing.assert_allclose(x_compact, masked(digits_model, x, y).numpy(), atol=1e-6)
    np.testing.assert_allclose(attack(digits_model, x, y).numpy(), x_compact, atol=1e-6)
    plain = attacks.get("mifgsm", **dict(kwargs, early_stop=False))(digits_model, x, y).numpy()
    never_fooled = np.argmax(digits_model(x_compact, training=False).numpy(), -1) == y
    assert 0 < never_fooled.sum() < len(y)
    np.testing.assert_allclose(x_compact[never_fooled], plain[never_fooled], atol=1e-6)


def test_takes_no_per_call_num_steps(tiny_model):
    x, y = batch_in_range("[0,1]", seed=2)
    with pytest.raises(ValueError, match=r"fixed by num_steps=10.*Received: num_steps=1\."):
        attacks.get("mifgsm", eps=0.1)(tiny_model, x, y, num_steps=1)
