"""Tests for MART (tfadv.defenses.mart, tfadv.losses.mart, tfadv.recipes.mart): the loss on a
hand-computed 3-class example, β = 0, the CE attack from the release's start, a fit on digits."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses, losses, recipes
from tfadv.defenses import AdversarialExamples, MartAdversarialTraining
from tfadv.defenses import mart as mart_lib
from tfadv.recipes import mart as mart_recipe
from tests import testing

# Clean logits (ln 2, 0, 0) -> p(x) = (1/2, 1/4, 1/4); adversarial logits (0, ln 2, 0) ->
# p(x') = (1/4, 1/2, 1/4). Two examples with these logits, labels 0 and 1.
LOGITS_CLEAN = np.array([[math.log(2.0), 0.0, 0.0]] * 2, np.float32)
LOGITS_ADV = np.array([[0.0, math.log(2.0), 0.0]] * 2, np.float32)
LABELS = np.array([0, 1], np.int32)
# KL(p(x) || p(x')) = 1/2 ln(1/2 / 1/4) + 1/4 ln(1/4 / 1/2) + 1/4 ln 1 = 1/4 ln 2 (both examples).
KL = 0.25 * math.log(2.0)
# Label 0: CE = -ln p'_0 = ln 4; max_{k≠0} p'_k = 1/2, boost = -ln(1.0001 - 1/2 + 1e-12);
#          weight 1.0000001 - p_0(x) = 1.0000001 - 1/2.
# Label 1: CE = -ln p'_1 = ln 2; max_{k≠1} p'_k = 1/4, boost = -ln(1.0001 - 1/4 + 1e-12);
#          weight 1.0000001 - p_1(x) = 1.0000001 - 1/4.
BCE = [math.log(4.0) - math.log(0.5001 + 1e-12), math.log(2.0) - math.log(0.7501 + 1e-12)]
WEIGHTED_KL = [KL * 0.5000001, KL * 0.7500001]


def test_the_loss_on_a_hand_computed_three_class_example():
    assert BCE == pytest.approx([2.0792416, 0.9806959], abs=1e-6)  # the numbers written out
    assert WEIGHTED_KL == pytest.approx([0.0866434, 0.1299651], abs=1e-6)
    bce, weighted_kl = losses.mart(logits_clean=LOGITS_CLEAN, logits_adv=LOGITS_ADV, labels=LABELS)
    np.testing.assert_allclose(bce, BCE, rtol=1e-5)
    np.testing.assert_allclose(weighted_kl, WEIGHTED_KL, rtol=1e-5)
    for beta in (6.0, 1.0):
        loss, mean_bce, mean_kl = mart_lib.mart_loss(
            logits_clean=LOGITS_CLEAN, logits_adv=LOGITS_ADV, labels=LABELS, beta=beta)
        assert float(mean_bce) == pytest.approx(np.mean(BCE), rel=1e-5)
        assert float(mean_kl) == pytest.approx(np.mean(WEIGHTED_KL), rel=1e-5)
        assert float(loss) == pytest.approx(np.mean(BCE) + beta * np.mean(WEIGHTED_KL), rel=1e-5)


def test_beta_zero_is_the_boosted_ce_alone():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(6, 3)).astype("float32") * 2
    adv = rng.normal(size=(6, 3)).astype("float32") * 2
    y = rng.integers(0, 3, 6).astype("int32")
    probs = tf.nn.softmax(adv).numpy().astype(np.float64)
    other = np.where(np.eye(3)[y] > 0, -1.0, probs).max(-1)
    want = -np.log(probs[np.arange(6), y]) - np.log(1.0001 - other + 1e-12)
    loss, bce, kl = mart_lib.mart_loss(logits_clean=clean, logits_adv=adv, labels=y, beta=0.0)
    assert float(loss) == pytest.approx(want.mean(), rel=1e-5) and float(bce) == float(loss)
    assert float(kl) > 0  # the KL term is there, weighted by 0
    # the KL is clean || adversarial and the weight is 1 - p_y of the CLEAN prediction
    _, swapped = losses.mart(logits_clean=LOGITS_ADV, logits_adv=LOGITS_CLEAN, labels=LABELS)
    assert not np.allclose(swapped, WEIGHTED_KL, rtol=1e-3)


def test_registry_recipe_and_release_attack():
    assert "mart" in defenses.names() and losses.get("mart") is losses.mart
    model = defenses.get("mart", testing.tiny_cnn(seed=0), **mart_recipe.defense_kwargs())
    assert isinstance(model, MartAdversarialTraining) and model.beta == 6.0
    cfg = model.attack.get_config()
    # the release: eps 0.031 (8/255 here), step 0.007, K = 10, CE from x + 0.001 N(0, I)
    assert cfg["eps"] == pytest.approx(8 / 255) and cfg["step_size"] == pytest.approx(0.007)
    assert (cfg["num_steps"], cfg["loss"], cfg["random_start"]) == (10, "ce", "gaussian")
    assert cfg["training"] is False and model.weight_decay == pytest.approx(7e-4)
    ev = model.eval_attack.get_config()
    assert (ev["loss"], ev["random_start"], ev["num_steps"]) == ("ce", "uniform", 10)
    preset = recipes.get("mart_cifar10")
    assert (preset.model, preset.epochs, preset.lr, preset.lr_boundaries) == (
        "trades_wrn34_10", 90, 0.1, (74, 89))
    assert preset.weight_decay == pytest.approx(7e-4) and preset.step_size == pytest.approx(1.785)
    assert mart_recipe.script_preset("cifar10") == "mart_cifar10"
    assert mart_recipe.script_preset("digits") == "digits"


@pytest.mark.parametrize("kwargs", [
    dict(eps=0.1, step_size=0.01, beta=-1.0), dict(eps=0.1, step_size=0.01, beta=float("nan")),
    dict(eps=0.1), dict(attack=attacks.get("noop"), eps=0.1, step_size=0.01)])
def test_bad_arguments_say_what_was_received(kwargs):
    with pytest.raises(ValueError, match="Received"):
        defenses.get("mart", testing.tiny_cnn(seed=0), **kwargs)


def test_defense_loss_is_l_mart_in_training_mode():
    net = testing.tiny_cnn(seed=1, with_bn=True)
    net(testing.images_in_range("[0,1]", batch=32), training=True)  # non-trivial BN statistics
    x = testing.images_in_range("[0,1]", batch=8, seed=1)
    x_adv = np.clip(x + 0.05, 0, 1).astype("float32")
    y = np.arange(8, dtype="int32") % 10
    model = defenses.get("mart", net, beta=3.0, eps=8 / 255, step_size=0.007)
    want = mart_lib.mart_loss(logits_clean=net(x, training=True),
                              logits_adv=net(x_adv, training=True), labels=y, beta=3.0)[0]
    loss, _ = model.defense_loss(tf.constant(x), tf.constant(y),
                                 AdversarialExamples(tf.constant(x_adv)))
    assert float(loss) == pytest.approx(float(want), rel=1e-5)


def test_fit_on_digits_logs_the_parts_that_sum_to_the_loss():
    x, y, x_test, y_test = testing.digits_split(num_train=128, num_test=64)
    net = testing.tiny_cnn(seed=0)
    model = defenses.get("mart", net, eps=0.1, step_size=0.03, num_steps=2, beta=6.0,
                         weight_decay=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    before = [np.array(v) for v in net.trainable_variables]
    history = model.fit(x, y, batch_size=64, epochs=1, verbose=0,
                        validation_data=(x_test, y_test)).history
    logs = {k: v[0] for k, v in history.items()}
    assert {"bce_loss", "kl_loss", "adv_acc", "clean_acc", "val_adv_acc"} <= set(logs)
    assert logs["kl_loss"] > 0 and logs["bce_loss"] > 0
    assert logs["loss"] == pytest.approx(logs["bce_loss"] + 6.0 * logs["kl_loss"], rel=1e-5)
    assert max(np.abs(a - np.array(b)).max() for a, b in zip(before, net.trainable_variables)) > 0
