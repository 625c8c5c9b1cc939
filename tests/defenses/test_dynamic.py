"""Dynamic adversarial training (FOSC paper sec. 4.1, Algorithm 1): the FOSC-controlled PGD, the c_t
schedule, its logging, and the release options."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses, losses
from tfadv.attacks import fosc as fosc_lib
from tfadv.defenses import DynamicAdversarialTraining
from tfadv.defenses.dynamic import DynamicSchedule, fosc_threshold
from tfadv.recipes import fosc as fosc_recipe
from tests import testing


digits = testing.digits_fixture(256, 64)


def linear_problem(n=16, seed=0):
    """Two-class linear model (logits (0, <w,x>+b)) and interior images: CE's input gradient is
    (p₁ − [y=1])·w, so Algorithm 1 can be replayed exactly in NumPy."""
    rng = np.random.default_rng(seed)
    w = rng.choice([-1.0, 1.0], size=64) * rng.uniform(0.02, 0.1, size=64)
    b = 0.3
    model = testing.linear_two_class_model(w.astype("float32"), b)
    x = rng.uniform(0.3, 0.7, size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 2, size=n).astype("int32")
    return model, w, b, x, y


def reference_algorithm1(w, b, x, y, *, eps, step, num_steps, c_t):
    """NumPy Algorithm 1 (no random start): the first step is always taken; after each step an
    example whose FOSC (paper's x⁰ = natural image) is <= c_t stops for the rest of the batch."""
    x64 = x.reshape(len(x), -1).astype(np.float64)
    cur = x64.copy()
    active = np.ones(len(x), bool)
    freeze_step = np.full(len(x), -1)

    def grad(v):
        z = v @ w + b
        p1 = 1.0 / (1.0 + np.exp(-z))
        return (p1 - (y == 1))[:, None] * w[None, :]

    for k in range(num_steps):
        g = grad(cur)
        if k > 0:
            f = eps * np.abs(g).sum(1) - ((cur - x64) * g).sum(1)
            newly = active & (f <= c_t)
            freeze_step[newly] = k
            active &= ~newly
        moved = np.clip(np.clip(cur + step * np.sign(g), x64 - eps, x64 + eps), 0.0, 1.0)
        cur = np.where(active[:, None], moved, cur)
    return cur.reshape(x.shape), freeze_step


def fosc_after_one_step(w, b, x, y, eps, step):
    x64 = x.reshape(len(x), -1).astype(np.float64)
    z = x64 @ w + b
    g = ((1 / (1 + np.exp(-z))) - (y == 1))[:, None] * w
    x1 = x64 + step * np.sign(g)
    z1 = x1 @ w + b
    g1 = ((1 / (1 + np.exp(-z1))) - (y == 1))[:, None] * w
    return eps * np.abs(g1).sum(1) - ((x1 - x64) * g1).sum(1)


# ----------------------------------------------------------------------------------- schedule


def test_c_t_schedule_hits_zero_at_t_prime_and_stays_zero():
    values = [fosc_threshold(t, 0.5, 40) for t in range(60)]
    assert values[0] == 0.5 and values[20] == pytest.approx(0.25)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[39] > 0 and all(v == 0.0 for v in values[40:])
    graph = [float(fosc_threshold(tf.constant(t, tf.int64), 0.5, 40)) for t in (0, 20, 39, 40, 41, 99)]
    assert graph[0] == 0.5 and graph[1] == pytest.approx(0.25) and graph[2] > 0
    assert graph[3:] == [0.0, 0.0, 0.0]  # exactly zero in float32 at T' and after
    # Non-integer T' (the release parses it as a float).
    assert fosc_threshold(7, 0.5, 7.5) > 0 and fosc_threshold(8, 0.5, 7.5) == 0.0


def test_model_follows_the_epoch_counter_and_fit_logs_c_t(digits):
    x, y, xt, yt = digits
    model = defenses.get("dynamic", testing.tiny_cnn(seed=0), eps=0.1, step_size=0.025,
                                    num_steps=2, c_max=0.4, t_prime=2, weight_decay=0.0)
    assert float(model.c_t()) == pytest.approx(0.4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # No callbacks passed: fit() adds the schedule itself.
    history = model.fit(x[:128], y[:128], batch_size=64, epochs=3, verbose=0,
                        validation_data=(xt, yt))
    np.testing.assert_allclose(history.history["c_t"], [0.4, 0.2, 0.0], atol=1e-7)
    assert all(np.isfinite(history.history["fosc"])) and min(history.history["fosc"]) >= 0
    assert {"val_adv_acc", "val_clean_acc"} <= set(history.history)
    # A resumed run (initial_epoch) continues the schedule; the counter is a variable, not a
    # Python number frozen into the compiled train_step.
    history = model.fit(x[:128], y[:128], batch_size=64, epochs=2, initial_epoch=1, verbose=0,
                        callbacks=[DynamicSchedule()])
    np.testing.assert_allclose(history.history["c_t"], [0.2], atol=1e-7)
    assert int(model.epoch_counter.numpy()) == 1


def test_training_callbacks_log_fosc_histograms_and_png(digits, tmp_path):
    x, y, _, _ = digits
    model = defenses.get("dynamic", testing.tiny_cnn(seed=0), eps=0.1, step_size=0.025,
                                    num_steps=2, t_prime=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    cbs = model.training_callbacks(str(tmp_path))
    assert [type(c).__name__ for c in cbs] == ["DynamicSchedule", "FoscLogger"]
    model.fit(x[:96], y[:96], batch_size=32, epochs=2, verbose=0, callbacks=cbs)
    assert sorted(os.listdir(tmp_path / "fosc")) == ["epoch_0000.npy", "epoch_0001.npy"]
    values = np.load(tmp_path / "fosc" / "epoch_0001.npy")
    assert values.shape == (96,) and np.all(values >= -1e-6)
    assert os.path.getsize(tmp_path / "fosc.png") > 1000
    tags = set()
    for path in glob.glob(str(tmp_path / "tensorboard" / "train" / "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags |= {(v.tag, event.step) for v in event.summary.value}
    assert {("fosc_distribution", 0), ("fosc_distribution", 1)} <= tags
    assert not defenses.get("dynamic", testing.tiny_cnn(seed=0), eps=8 / 255, record_fosc=False) \
        .training_callbacks(str(tmp_path))[1:]


# ----------------------------------------------------------------------------------- the attack


@pytest.mark.parametrize("compiled", [False, True])
def test_dynamic_pgd_freezes_exactly_the_examples_with_fosc_at_most_c_t(compiled):
    model, w, b, x, y = linear_problem()
    eps, step, k = 0.1, 0.025, 4
    f1 = fosc_after_one_step(w, b, x, y, eps, step)
    c_t = float(np.median(f1))
    expected, freeze_step = reference_algorithm1(w, b, x, y, eps=eps, step=step, num_steps=k,
                                                 c_t=c_t)
    # the construction freezes some examples after the first step and moves others further
    assert 0 < np.sum(freeze_step == 1) < len(x)
    pgd = attacks.get("pgd", eps=eps, step_size=step, num_steps=k, random_start="none")
    dyn = DynamicAdversarialTraining(model, attack=pgd, c_max=c_t, t_prime=10, record_fosc=False)
    make = tf.function(dyn.make_adversarial) if compiled else dyn.make_adversarial
    x_adv = make(tf.constant(x), tf.constant(y)).x_adv.numpy()
    np.testing.assert_allclose(x_adv, expected, atol=1e-6)
    moved = np.abs(x_adv - x).reshape(len(x), -1).max(1)
    frozen_first = f1 <= c_t
    np.testing.assert_array_equal(freeze_step == 1, frozen_first)
    # frozen after step 1: exactly one step, never moved again; the others moved further
    np.testing.assert_allclose(moved[frozen_first], step, atol=1e-6)
    assert np.all(moved[~frozen_first] > step + 1e-4)
    # the plain attack (evaluation) is untouched and moves every example k steps
    assert dyn.eval_attack is pgd and pgd.stop_fn is None
    full = pgd(model, x, y).numpy()
    np.testing.assert_allclose(np.abs(full - x).reshape(len(x), -1).max(1), k * step, atol=1e-6)


def test_c_t_zero_is_plain_pgd_and_large_c_t_is_one_step():
    model, _, _, x, y = linear_problem(seed=1)
    pgd = attacks.get("pgd", eps=0.1, step_size=0.025, num_steps=4, random_start="none")
    dyn = DynamicAdversarialTraining(model, attack=pgd, c_max=0.5, t_prime=3, record_fosc=False)
    dyn.epoch_counter.assign(3)  # c_t = 0
    np.testing.assert_allclose(dyn.make_adversarial(x, y).x_adv.numpy(), pgd(model, x, y).numpy(),
                               atol=1e-7)
    dyn.epoch_counter.assign(0)
    dyn.c_max = 1e6  # every example freezes after the first (always taken) step
    one = attacks.get("pgd", eps=0.1, step_size=0.025, num_steps=1, random_start="none")
    np.testing.assert_allclose(dyn.make_adversarial(x, y).x_adv.numpy(), one(model, x, y).numpy(),
                               atol=1e-7)


def test_loop_ends_once_every_example_is_frozen():
    model, _, _, x, y = linear_problem(seed=2)
    seen = []

    def stop_all(state):
        seen.append(int(state.step))
        return tf.ones(tf.shape(state.labels), tf.bool)

    attacks.get("pgd", eps=0.1, num_steps=6, random_start="none", stop_fn=stop_all)(model, x, y)
    assert seen == [0]


def test_release_reference_uses_the_start_point(digits):
    """With ``fosc_reference='start'`` the stop criterion sees the random-start point (x_start)."""
    x, y, _, _ = digits
    seen = {}
    pgd = attacks.get("pgd", eps=0.1, step_size=0.025, num_steps=3, seed=3)
    dyn = DynamicAdversarialTraining(testing.tiny_cnn(seed=0), attack=pgd, fosc_reference="start",
                                     record_fosc=False)
    original = fosc_lib.fosc_of_state

    def spy(state, **kwargs):
        seen.setdefault("ref", kwargs.get("reference"))
        seen.setdefault("start", None if state.x_start is None else state.x_start.numpy())
        return original(state, **kwargs)

    fosc_lib.fosc_of_state = spy
    try:
        x_adv = dyn.make_adversarial(tf.constant(x[:32]), tf.constant(y[:32])).x_adv.numpy()
    finally:
        fosc_lib.fosc_of_state = original
    assert seen["ref"] == "start" and seen["start"] is not None
    start = seen["start"]
    assert np.abs(start - x[:32]).max() <= 0.1 + 1e-6 and np.abs(start - x[:32]).max() > 0.05
    testing.assert_in_ball_and_range(x_adv, x[:32], "linf", 0.1, "[0,1]")


@pytest.mark.parametrize("pixel_range", ["[0,1]", "[-1,1]"])
def test_outputs_in_ball_and_range(pixel_range):
    x = testing.images_in_range(pixel_range, batch=24, seed=4)
    y = np.arange(24, dtype="int32") % 10
    for c_max in (0.0, 0.05, 10.0):
        dyn = defenses.get("dynamic", testing.tiny_cnn(seed=1), eps=0.2, step_size=0.08,
                                      num_steps=4, c_max=c_max, pixel_range=pixel_range)
        x_adv = dyn.make_adversarial(tf.constant(x), tf.constant(y)).x_adv
        testing.assert_in_ball_and_range(x_adv.numpy(), x, "linf", 0.2, pixel_range)


# ----------------------------------------------------------------------------------- the loss


def test_release_loss_weighting_from_the_second_epoch():
    net = testing.tiny_cnn(seed=3, with_bn=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 16).astype("int32")
    # zero steps, no random start: x_adv = x, so the expected losses are simple
    pgd = attacks.get("pgd", eps=0.1, step_size=0.01, num_steps=0, random_start="none")
    ce = losses.ce(logits=net(x, training=False), labels=y).numpy()
    for weighting, epoch, expected in ((False, 1, ce.mean()), (True, 0, ce.mean()),
                                       (True, 1, (ce * ce).mean())):
        model = DynamicAdversarialTraining(net, attack=pgd, release_loss_weighting=weighting,
                                           weight_decay=0.0)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        model.epoch_counter.assign(epoch)
        logs = model.train_on_batch(x, y, return_dict=True)
        assert logs["loss"] == pytest.approx(float(expected), rel=1e-5), (weighting, epoch)
        assert logs["adv_loss"] == pytest.approx(float(ce.mean()), rel=1e-5)
        assert logs["fosc"] == pytest.approx(float(np.mean(model.fosc_recorder.read())), rel=1e-5)


# ----------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs", [
    {"c_max": -0.1}, {"c_max": float("nan")}, {"t_prime": 0}, {"t_prime": -3},
    {"t_prime": "soon"}, {"fosc_reference": "clean"}, {"attack": attacks.get("noop")},
    {"attack": attacks.get("pgd", eps=0.1), "eps": 0.1}, {"fosc_capacity": 0},
])
def test_bad_parameters_raise_value_error(kwargs):
    if "attack" not in kwargs:  # the sizes, so that the parameter under test is what is refused
        kwargs = {"eps": 8 / 255, **kwargs}
    with pytest.raises(ValueError, match="Received"):
        defenses.get("dynamic", testing.tiny_cnn(seed=0), **kwargs)


def test_registry_and_paper_recipe():
    model = defenses.get("dynamic", testing.tiny_cnn(seed=0), **fosc_recipe.defense_kwargs())
    assert defenses.DEFENSES.lookup("fosc") is defenses.DEFENSES.lookup("dynamic")
    cfg = model.plain_attack.get_config()
    assert cfg["eps"] == pytest.approx(8 / 255) and cfg["step_size"] == pytest.approx(2 / 255)
    assert cfg["num_steps"] == 10 and cfg["random_start"] == "uniform"
    assert model.c_max == 0.5 and model.t_prime == 100 and model.weight_decay == pytest.approx(1e-4)
    assert model.fosc_reference == "natural" and not model.release_loss_weighting


def test_estimate_c_max_is_the_mean_fosc_of_fgsm_examples(digits):
    from tfadv.defenses.dynamic import estimate_c_max

    x, y, _, _ = digits
    net = testing.tiny_cnn(seed=0)
    value = estimate_c_max(net, x[:64], y[:64], eps=0.1)
    x_adv = attacks.get("fgsm", eps=0.1)(net, x[:64], y[:64])
    ref, _, _ = fosc_lib.fosc_and_loss(lambda v: net(v, training=False), x_adv, x[:64], y[:64], 0.1)
    assert value == pytest.approx(float(np.mean(ref)), rel=1e-5) and value > 0


def test_only_schedule_defenses_add_training_callbacks(tmp_path):
    madry = defenses.get("madry", testing.tiny_cnn(seed=0), eps=8 / 255, step_size=2 / 255)
    assert madry.training_callbacks(str(tmp_path)) == []
