"""Tests for tfadv.defenses: AdversarialModel's train/test steps and Madry PGD training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses, losses
from tfadv.defenses import AdversarialModel, MadryAdversarialTraining
from tfadv.recipes import madry as madry_recipe
from tests import testing

KEYS = {"loss", "adv_loss", "adv_acc", "clean_loss", "clean_acc"}


digits = testing.digits_fixture(1000, 400)


def small_madry(net=None, **kwargs):
    net = net if net is not None else testing.tiny_cnn(seed=0)
    kwargs.setdefault("eps", 0.1)
    kwargs.setdefault("step_size", 0.04)
    kwargs.setdefault("num_steps", 2)
    return defenses.get("madry", net, **kwargs)


# ----------------------------------------------------------------------------------- registry


def test_registry():
    assert {"madry", "pgd_at"} <= set(defenses.names())
    assert defenses.DEFENSES.lookup("madry") is defenses.DEFENSES.lookup("PGD_AT")
    with pytest.raises(ValueError, match="Received"):
        defenses.get("trades_v9", testing.tiny_cnn(seed=0))


def test_madry_recipe_is_released_cifar_config():
    model = defenses.get("madry", testing.tiny_cnn(seed=0), **madry_recipe.defense_kwargs())
    assert isinstance(model, MadryAdversarialTraining) and isinstance(model, AdversarialModel)
    cfg = model.attack.get_config()
    assert cfg["eps"] == pytest.approx(8 / 255) and cfg["step_size"] == pytest.approx(2 / 255)
    assert cfg["num_steps"] == 7 and cfg["random_start"] == "uniform" and cfg["norm"] == "linf"
    assert model.weight_decay == pytest.approx(2e-4)
    assert model.eval_attack is model.attack
    assert model.attack_training is False and model.num_classes == 10
    pm = defenses.get("madry", testing.tiny_cnn(seed=0), **madry_recipe.defense_kwargs("[-1,1]"))
    assert pm.attack.get_config()["eps"] == pytest.approx(16 / 255)
    assert pm.attack.get_config()["step_size"] == pytest.approx(4 / 255)
    assert pm.attack.get_config()["pixel_range"] == "[-1,1]"


def test_madry_attack_and_eps_conflict():
    net = testing.tiny_cnn(seed=0)
    with pytest.raises(ValueError, match="Received"):
        defenses.get("madry", net, attack=attacks.get("pgd", eps=0.1), eps=0.1)
    with pytest.raises(ValueError, match="Received"):
        defenses.get("madry", net, attack=attacks.get("pgd", eps=0.1), step_size=0.01)


def test_madry_bad_eps_in_pixels():
    with pytest.raises(ValueError, match="Received"):
        defenses.get("madry", testing.tiny_cnn(seed=0), eps=8, step_size=2 / 255)


def test_adversarial_model_argument_errors():
    with pytest.raises(TypeError, match="Received"):
        AdversarialModel(keras.layers.Dense(10), attack=attacks.get("noop"))
    with pytest.raises(ValueError, match="Received"):
        AdversarialModel(testing.tiny_cnn(seed=0), attack=attacks.get("noop"), weight_decay=-1.0)


def test_plain_callable_network_gives_type_error():
    with pytest.raises(TypeError, match="Received"):
        AdversarialModel(lambda x: x, attack=attacks.get("noop"))


# ----------------------------------------------------------------------------------- fit/evaluate


def test_fit_and_evaluate_report_clean_and_adversarial_metrics(digits):
    x, y, x_test, y_test = digits
    model = small_madry()
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    history = model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0,
                        validation_data=(x_test[:64], y_test[:64]))
    assert KEYS <= set(history.history)
    assert {"val_" + k for k in KEYS} <= set(history.history)
    for key in KEYS:
        assert len(history.history[key]) == 1 and np.isfinite(history.history[key][0])
    results = model.evaluate(x_test[:128], y_test[:128], batch_size=64, verbose=0,
                             return_dict=True)
    assert KEYS <= set(results)
    assert 0.0 <= results["adv_acc"] <= results["clean_acc"] + 1e-6 <= 1.0 + 1e-6
    assert results["adv_loss"] >= results["clean_loss"]
    assert results["loss"] == pytest.approx(results["adv_loss"], rel=1e-5)


def test_evaluate_with_noop_eval_attack_is_clean(digits):
    x, y, x_test, y_test = digits
    net = testing.tiny_cnn(seed=0)
    model = small_madry(net, eval_attack=attacks.get("noop"))
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    model.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)
    res = model.evaluate(x_test[:100], y_test[:100], batch_size=50, verbose=0, return_dict=True)
    assert res["clean_acc"] == res["adv_acc"]
    assert res["clean_loss"] == pytest.approx(res["adv_loss"], rel=1e-6)
    # ... and equal to the network's own accuracy/CE in inference mode.
    logits = net(x_test[:100], training=False)
    assert res["clean_acc"] == pytest.approx(np.mean(np.argmax(logits, -1) == y_test[:100]))
    assert res["clean_loss"] == pytest.approx(
        float(np.mean(losses.ce(logits=logits, labels=y_test[:100]))), rel=1e-4)


def test_track_clean_false_omits_clean_metrics(digits):
    x, y, _, _ = digits
    model = small_madry(track_clean=False)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    history = model.fit(x[:64], y[:64], batch_size=64, epochs=1, verbose=0)
    assert {"loss", "adv_loss", "adv_acc"} <= set(history.history)
    assert not {"clean_loss", "clean_acc"} & set(history.history)


@pytest.mark.parametrize("bad", [10, -1])
def test_labels_out_of_range_during_fit(digits, bad):
    x, y, _, _ = digits
    y = y[:64].copy()
    y[3] = bad
    model = small_madry()
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?i)label"):
        model.fit(x[:64], y, batch_size=64, epochs=1, verbose=0)


# ----------------------------------------------------------------------------------- weight decay


def test_weight_decay_is_half_squared_norm_of_kernels_only():
    net = testing.tiny_cnn(seed=2, with_bn=True)
    # Make BN and biases non-trivial so that including them would change the value.
    for v in net.trainable_variables:
        if v.name != "kernel":
            v.assign(np.full(v.shape, 0.7, np.float32))
    model = small_madry(net, weight_decay=3e-3)
    names = sorted(v.path for v in model.decay_variables())
    assert names == ["conv1/kernel", "conv2/kernel", "logits/kernel"]
    kernels = [np.array(v, np.float64) for v in net.trainable_variables if v.name == "kernel"]
    expected = 3e-3 * sum(0.5 * np.sum(k ** 2) for k in kernels)
    assert float(model.weight_decay_loss()) == pytest.approx(expected, rel=1e-5)
    everything = 3e-3 * sum(0.5 * np.sum(np.array(v, np.float64) ** 2)
                            for v in net.trainable_variables)
    assert abs(everything - expected) > 1e-3 * expected
    assert float(small_madry(net, weight_decay=0.0).weight_decay_loss()) == 0.0


def test_train_step_uses_adversarial_examples_and_weight_decay():
    """One SGD step equals the hand gradient of CE(f(x_adv)) + c·Σ½‖W‖² on x_adv only."""
    net = testing.tiny_cnn(seed=3, with_bn=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 16).astype("int32")
    x_adv = np.full_like(x, 0.25)
    lr, wd = 0.5, 1e-2
    variables = net.trainable_variables
    with tf.GradientTape() as tape:
        ce = tf.reduce_mean(losses.ce(logits=net(x_adv, training=True), labels=y))
        total = ce + wd * tf.add_n([tf.nn.l2_loss(v) for v in variables if v.name == "kernel"])
    grads = tape.gradient(total, variables)
    expected = [np.array(v) - lr * np.array(g) for v, g in zip(variables, grads)]
    with tf.GradientTape() as tape:
        clean_total = tf.reduce_mean(losses.ce(logits=net(x, training=True), labels=y))
    clean_grads = tape.gradient(clean_total, variables)

    model = defenses.get("madry", net, attack=testing.constant_attack(0.25), weight_decay=wd)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(float(total), rel=1e-5)
    assert logs["adv_loss"] == pytest.approx(float(ce), rel=1e-5)
    for v, e in zip(net.trainable_variables, expected):
        np.testing.assert_allclose(np.array(v), e, rtol=1e-4, atol=1e-6)
    # The clean gradient is different, so the check above does see which inputs were used.
    assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(grads, clean_grads)) > 1e-3


# ----------------------------------------------------------------------------------- BatchNorm


@pytest.mark.parametrize("attack_training", [False, True])
def test_attack_training_controls_bn_statistics(digits, attack_training):
    x, y, _, _ = digits
    net = testing.tiny_cnn(seed=4)
    model = small_madry(net, attack_training=attack_training)
    stats = testing.bn_moving_stats(net)
    weights = [np.array(v) for v in net.trainable_variables]
    x_adv = model.make_adversarial(tf.constant(x[:32]), tf.constant(y[:32])).x_adv
    assert np.abs(x_adv.numpy() - x[:32]).max() <= 0.1 + 1e-6
    changed = [not np.array_equal(b, a) for b, a in zip(stats, testing.bn_moving_stats(net))]
    assert all(changed) if attack_training else not any(changed)
    for before, after in zip(weights, net.trainable_variables):
        np.testing.assert_array_equal(before, np.array(after))


def test_attack_training_inside_compiled_train_step(digits):
    """Inside fit()'s compiled step, inference-mode generation leaves the BN statistics to the one
    training forward pass on x_adv; train-mode generation (Madry's release) moves them further."""
    x, y, _, _ = digits
    xb, yb = x[:32], y[:32]
    attack = attacks.get("pgd", eps=0.1, step_size=0.04, num_steps=3, random_start="none")
    reference = testing.tiny_cnn(seed=5)
    x_adv = attack(reference, xb, yb)  # deterministic, inference mode: what train_step builds
    reference(x_adv, training=True)    # the single training-mode forward of defense_loss
    expected = testing.bn_moving_stats(reference)
    initial = testing.bn_moving_stats(testing.tiny_cnn(seed=5))
    for attack_training in (False, True):
        net = testing.tiny_cnn(seed=5)
        model = defenses.get("madry", net, attack=attack, attack_training=attack_training,
                                      weight_decay=0.0)
        model.compile(optimizer=keras.optimizers.SGD(0.0))  # weights stay put
        model.train_on_batch(xb, yb)
        got = testing.bn_moving_stats(net)
        assert not any(np.allclose(a, b) for a, b in zip(got, initial))
        same = all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(got, expected))
        assert same == (not attack_training)


# ----------------------------------------------------------------------------------- robustness


def test_madry_training_is_more_robust_than_natural(digits):
    x, y, x_test, y_test = digits
    evaluator = attacks.get("pgd", eps=0.1, step_size=0.025, num_steps=10, random_start="none")

    def train(attack):
        net = testing.tiny_cnn(seed=0)
        model = defenses.get("madry", net, attack=attack, weight_decay=0.0,
                                      eval_attack=evaluator)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        model.fit(x, y, batch_size=64, epochs=6, verbose=0, shuffle=True)
        x_adv = evaluator(net, x_test, y_test)
        acc = lambda v: float(np.mean(np.argmax(net(v, training=False), -1) == y_test))  # noqa
        res = model.evaluate(x_test, y_test, batch_size=200, verbose=0, return_dict=True)
        # evaluate() with the PGD eval_attack agrees with the direct computation
        assert res["adv_acc"] == pytest.approx(acc(x_adv), abs=1e-6)
        return acc(x_test), acc(x_adv)

    keras.utils.set_random_seed(0)
    nat_clean, nat_robust = train(attacks.get("noop"))
    keras.utils.set_random_seed(0)
    adv_clean, adv_robust = train(attacks.get("pgd", eps=0.1, step_size=0.04, num_steps=5))
    assert nat_clean > 0.8 and adv_clean > 0.8, (nat_clean, adv_clean)
    assert adv_robust > nat_robust + 0.1, (nat_robust, adv_robust)
