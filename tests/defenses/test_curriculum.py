"""Curriculum adversarial training (Cai et al. 2018; the FOSC paper's baseline): the variable step
count k, batch mixing, the patience logic and its logging."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses
from tfadv.defenses import CurriculumAdversarialTraining
from tfadv.defenses.curriculum import CurriculumSchedule, StepsOverride, mixing_steps
from tfadv.recipes import fosc as fosc_recipe
from tests import testing


digits = testing.digits_fixture(256, 64)


def interior_batch(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.3, 0.7, size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, size=n).astype("int32")
    return x, y


def linf(a, b):
    return np.abs(np.asarray(a) - b).reshape(len(b), -1).max(1)


# ----------------------------------------------------------------------------------- attack core


def test_variable_num_steps_is_the_loop_bound_without_retracing():
    model = testing.tiny_cnn(seed=0, with_bn=False)
    x, y = interior_batch()
    pgd = attacks.get("pgd", eps=0.2, step_size=0.01, num_steps=5, random_start="none")
    k = tf.Variable(2, dtype=tf.int32)
    run = tf.function(lambda a, b: pgd(model, a, b, num_steps=k))
    for value in (2, 0, 4, 5):
        k.assign(value)
        got = run(tf.constant(x), tf.constant(y)).numpy()
        ref = attacks.get("pgd", eps=0.2, step_size=0.01, num_steps=value,
                          random_start="none")(model, x, y).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-7)
        np.testing.assert_allclose(linf(got, x), 0.01 * value, atol=1e-6)
    assert run.experimental_get_tracing_count() == 1
    k.assign(9)  # above the attack's num_steps: capped at its static bound
    np.testing.assert_allclose(linf(run(tf.constant(x), tf.constant(y)), x), 0.05, atol=1e-6)
    with pytest.raises(ValueError, match="Received"):
        pgd(model, x, y, num_steps=6)
    with pytest.raises(ValueError, match="Received"):
        attacks.get("mifgsm", eps=0.1)(model, x, y, num_steps=1)


def test_mixing_steps_splits_the_batch_like_the_release():
    assert mixing_steps(10, 2).numpy().tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert mixing_steps(5, 0).numpy().tolist() == [0] * 5
    assert mixing_steps(3, 5).numpy().tolist() == [0, 1, 2]
    steps = mixing_steps(128, 10).numpy()
    assert steps.max() == 10 and np.bincount(steps).tolist() == [11] * 10 + [18]


def test_batch_mixing_gives_each_part_its_number_of_steps():
    model = testing.tiny_cnn(seed=1, with_bn=False)
    x, y = interior_batch(n=12)
    pgd = attacks.get("pgd", eps=0.3, step_size=0.02, num_steps=4)  # uniform random start
    cur = CurriculumAdversarialTraining(model, attack=pgd, initial_k=3, record_fosc=False)
    x_adv = tf.function(cur.make_adversarial)(tf.constant(x), tf.constant(y)).x_adv.numpy()
    parts = mixing_steps(12, 3).numpy()  # [0,0,0,1,1,1,2,2,2,3,3,3]
    np.testing.assert_array_equal(x_adv[parts == 0], x[parts == 0])  # strength 0: clean
    assert np.all(linf(x_adv[parts > 0], x[parts > 0]) > 0)
    testing.assert_in_ball_and_range(x_adv, x, "linf", 0.3, "[0,1]")
    # Without random start the distances show the step counts: part j moved exactly j steps.
    no_mix = CurriculumAdversarialTraining(model, attack=attacks.get(
        "pgd", eps=0.3, step_size=0.02, num_steps=4, random_start="none"), initial_k=3,
        batch_mixing=False, record_fosc=False)
    np.testing.assert_allclose(linf(no_mix.make_adversarial(x, y).x_adv, x), 0.06, atol=1e-6)
    mixed = CurriculumAdversarialTraining(model, attack=attacks.get(
        "pgd", eps=0.3, step_size=0.02, num_steps=4, random_start="none"), initial_k=3,
        record_fosc=False)
    np.testing.assert_allclose(linf(mixed.make_adversarial(x, y).x_adv, x), 0.02 * parts, atol=1e-6)


@pytest.mark.parametrize("pixel_range", ["[0,1]", "[-1,1]"])
def test_outputs_in_ball_and_range(pixel_range):
    x = testing.images_in_range(pixel_range, batch=24, seed=5)
    y = np.arange(24, dtype="int32") % 10
    for k in (0, 1, 4):
        cur = defenses.get("curriculum", testing.tiny_cnn(seed=2), eps=0.2, step_size=0.08,
                                         num_steps=4, initial_k=k, pixel_range=pixel_range)
        for attack in (lambda a, b: cur.make_adversarial(a, b).x_adv,
                       lambda a, b: cur.eval_attack(cur.network, a, b)):
            x_adv = attack(tf.constant(x), tf.constant(y))
            testing.assert_in_ball_and_range(x_adv.numpy(), x, "linf", 0.2, pixel_range)


def test_validation_attack_is_pgd_k_and_clean_at_k_zero():
    model = testing.tiny_cnn(seed=3, with_bn=False)
    x, y = interior_batch()
    cur = defenses.get("curriculum", model, eps=0.2, step_size=0.01, num_steps=5)
    assert isinstance(cur.eval_attack, StepsOverride)
    np.testing.assert_array_equal(cur.eval_attack(model, x, y).numpy(), x)  # no random start at 0
    cur.k.assign(3)
    x_adv = cur.eval_attack(model, x, y).numpy()
    assert np.all(linf(x_adv, x) > 0) and linf(x_adv, x).max() <= 0.2 + 1e-6


# ----------------------------------------------------------------------------------- patience


def drive(model, accuracies, **kwargs):
    """Feeds validation accuracies to a CurriculumSchedule; returns k after each epoch."""
    cb = CurriculumSchedule(**kwargs)
    cb.set_model(model)
    cb.on_train_begin()
    ks = []
    for epoch, acc in enumerate(accuracies):
        cb.on_epoch_end(epoch, {"val_adv_acc": acc})
        ks.append(int(model.k.numpy()))
    return ks, cb


def test_k_increases_after_patience_epochs_without_improvement_and_never_exceeds_k_max():
    model = defenses.get("curriculum", testing.tiny_cnn(seed=0), eps=8 / 255, num_steps=3,
                         patience=2, restore_best=False)
    # best at epoch 1; epochs 2, 3 do not improve -> k=1 after epoch 3; the new lesson's best is
    # epoch 5 (PGD-1 accuracy 0.45), epochs 6, 7 do not improve -> k=2 after epoch 7
    ks, cb = drive(model, [0.5, 0.6, 0.6, 0.55, 0.4, 0.45, 0.45, 0.45])
    assert ks == [0, 0, 0, 1, 1, 1, 1, 2], ks
    assert cb.increases == [3, 7]
    model.k.assign(0)
    # never improves: the first epoch of each lesson sets its reference, then `patience` epochs
    ks, _ = drive(model, [0.5] * 30)
    assert max(ks) == 3 and ks == sorted(ks)
    assert ks[:9] == [0, 0, 1, 1, 1, 2, 2, 2, 3], ks
    model.k.assign(0)
    ks, _ = drive(model, [0.1 * e for e in range(10)])  # always improving: k stays
    assert ks == [0] * 10


def test_restore_best_puts_back_the_lessons_best_weights():
    net = testing.tiny_cnn(seed=0)
    model = defenses.get("curriculum", net, eps=8 / 255, num_steps=3, patience=1)
    cb = CurriculumSchedule()
    cb.set_model(model)
    cb.on_train_begin()
    best = [np.array(v) for v in net.get_weights()]
    cb.on_epoch_end(0, {"val_adv_acc": 0.7})
    net.set_weights([v + 1.0 for v in best])  # a worse epoch moves the weights
    cb.on_epoch_end(1, {"val_adv_acc": 0.6})
    assert int(model.k.numpy()) == 1
    for a, b in zip(net.get_weights(), best):
        np.testing.assert_array_equal(a, b)


def test_missing_validation_metric_is_a_clear_error(digits):
    x, y, _, _ = digits
    model = defenses.get("curriculum", testing.tiny_cnn(seed=0), eps=0.1, num_steps=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="validation_data.*Received"):
        model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)


def test_fit_logs_k_and_advances_it(digits):
    x, y, xt, yt = digits
    pgd = attacks.get("pgd", eps=0.1, step_size=0.025, num_steps=2, random_start="none")
    model = defenses.get("curriculum", testing.tiny_cnn(seed=0, with_bn=False), attack=pgd,
                                       patience=1, record_fosc=True)
    # frozen weights (no BN statistics either) and a deterministic PGD-k: accuracy never improves
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit(x[:64], y[:64], batch_size=32, epochs=5, verbose=0,
                        validation_data=(xt[:32], yt[:32]))
    ks = [int(k) for k in history.history["k"]]
    assert ks == [0, 0, 1, 1, 2], ks  # k used in each epoch; K = 2 is never exceeded
    assert int(model.k.numpy()) == 2
    assert np.all(np.isfinite(history.history["fosc"]))


def test_k_grows_when_real_training_plateaus(digits):
    # Real training (weights move), no frozen optimizer: the validation PGD-k accuracy on 16
    # images stops improving for `patience` epochs at some point and the lesson advances.
    x, y, xt, yt = digits
    keras.utils.set_random_seed(0)
    net = testing.tiny_cnn(seed=0)
    model = defenses.get("curriculum", net, eps=0.1, step_size=0.04, num_steps=3, patience=1,
                         random_start="none")
    assert int(model.k.numpy()) == 0
    before = [np.array(w) for w in net.get_weights()]
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x[:128], y[:128], batch_size=32, epochs=6, verbose=0,
                        validation_data=(xt[:16], yt[:16]))
    ks = [int(k) for k in history.history["k"]]
    assert int(model.k.numpy()) > 0 and ks == sorted(ks), ks
    assert max(np.abs(a - b).max() for a, b in zip(net.get_weights(), before)) > 0


# ----------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs", [
    {"patience": 0}, {"patience": 1.5}, {"initial_k": -1}, {"initial_k": 11},
    {"attack": attacks.get("noop")}, {"attack": attacks.get("pgd", eps=0.1, num_steps=0)},
    {"attack": attacks.get("pgd", eps=0.1), "step_size": 0.01},
])
def test_bad_parameters_raise_value_error(kwargs):
    if "attack" not in kwargs:  # the sizes, so that the parameter under test is what is refused
        kwargs = {"eps": 8 / 255, **kwargs}
    with pytest.raises(ValueError, match="Received"):
        defenses.get("curriculum", testing.tiny_cnn(seed=0), **kwargs)


def test_registry_and_paper_recipe():
    model = defenses.get("curriculum", testing.tiny_cnn(seed=0), **fosc_recipe.defense_kwargs())
    assert defenses.DEFENSES.lookup("cat") is defenses.DEFENSES.lookup("curriculum")
    assert model.max_k == 10 and model.patience == 10 and int(model.k.numpy()) == 0
    assert model.batch_mixing and model.restore_best and model.monitor == "val_adv_acc"
    cfg = model.plain_attack.get_config()
    assert cfg["eps"] == pytest.approx(8 / 255) and cfg["step_size"] == pytest.approx(2 / 255)
