"""Tests for TRADES (tfadv.defenses.trades): eq. (5)'s loss, Algorithm 1's KL attack, the update."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses, losses, recipes
from tfadv.defenses import AdversarialExamples, AdversarialModel, TradesAdversarialTraining
from tests import testing
from tfadv.defenses import trades as trades_lib
from tfadv.recipes import trades as trades_recipe

EPS = 0.1  # digits, [0,1]: 25.5 pixel levels


digits = testing.digits_fixture(256, 128)


def np_trades_loss(logits_clean, logits_adv, labels, beta):
    """Eq. (5) in NumPy, float64: mean CE(f(x), y) + beta * mean KL(p_clean || p_adv)."""
    def log_softmax(z):
        z = np.asarray(z, np.float64)
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    log_p, log_q = log_softmax(logits_clean), log_softmax(logits_adv)
    ce = -log_p[np.arange(len(labels)), labels].mean()
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1).mean()
    return ce + beta * kl, ce, kl


def kl_to_clean(net, x, x_adv):
    """Per-example KL(f(x) || f(x')) in inference mode."""
    return losses.trades_kl(logits_clean=net(x, training=False),
                            logits_adv=net(x_adv, training=False)).numpy()


# ------------------------------------------------------------------------------ construction


def test_registry_and_cifar_recipe():
    assert "trades" in defenses.names()
    model = defenses.get("trades", testing.tiny_cnn(seed=0), **trades_recipe.defense_kwargs())
    assert isinstance(model, TradesAdversarialTraining) and isinstance(model, AdversarialModel)
    cfg = model.attack.get_config()
    # sec. 5.3: eps 0.031 ~ 8/255, step 0.007 (= 1.785/255 exactly), K = 10; Gaussian start, KL.
    assert cfg["eps"] == pytest.approx(8 / 255) and cfg["step_size"] == pytest.approx(0.007)
    assert cfg["num_steps"] == 10 and cfg["random_start"] == "gaussian" and cfg["loss"] == "kl"
    assert cfg["norm"] == "linf" and cfg["training"] is False
    assert model.attack.gaussian_std == pytest.approx(1e-3)
    assert model.beta == 6.0 and model.weight_decay == pytest.approx(2e-4)
    assert model.attack_training is False
    ev = model.eval_attack.get_config()
    assert ev["loss"] == "ce" and ev["random_start"] == "uniform" and ev["num_steps"] == 10
    assert ev["eps"] == pytest.approx(8 / 255)
    pm = defenses.get("trades", testing.tiny_cnn(seed=0), beta=1.0,
                      **trades_recipe.defense_kwargs("[-1,1]"))
    assert pm.attack.eps == pytest.approx(16 / 255) and pm.attack.step_size == pytest.approx(0.014)
    assert pm.beta == 1.0


def test_l2_variant_defaults_to_release_step():
    model = defenses.get("trades", testing.tiny_cnn(seed=0), norm="l2", eps=0.5, num_steps=5)
    cfg = model.attack.get_config()
    assert cfg["norm"] == "l2" and cfg["step_size"] == pytest.approx(2 * 0.5 / 5)
    assert cfg["loss"] == "kl" and cfg["random_start"] == "gaussian"
    with pytest.raises(ValueError, match="Received: eps=None, norm='l2'"):
        defenses.get("trades", testing.tiny_cnn(seed=0), norm="l2")


@pytest.mark.parametrize("beta", [-1.0, -1e-3, float("nan"), float("inf"), "six"])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="Received:"):
        defenses.get("trades", testing.tiny_cnn(seed=0), beta=beta)
    with pytest.raises(ValueError, match="Received:"):
        TradesAdversarialTraining(testing.tiny_cnn(seed=0), attack=attacks.get("noop"), beta=beta)


def test_attack_and_eps_conflict_and_bad_pixel_sizes():
    net = testing.tiny_cnn(seed=0)
    with pytest.raises(ValueError, match="Received"):
        defenses.get("trades", net, attack=attacks.get("pgd", eps=0.1), eps=0.1)
    with pytest.raises(ValueError, match="Received"):
        defenses.get("trades", net, eps=8, step_size=0.007)  # pixel levels passed as input units


def test_presets_registered_from_the_trades_recipe():
    cifar = recipes.get("trades_cifar10")
    assert (cifar.model, cifar.pixel_range, cifar.eps, cifar.num_steps) == (
        "trades_wrn34_10", "[0,1]", 8.0, 10)
    assert cifar.step_size == pytest.approx(1.785) and cifar.eval_step_size == pytest.approx(0.765)
    assert (cifar.optimizer, cifar.lr, cifar.batch_size, cifar.epochs) == ("sgd", 0.1, 128, 100)
    assert cifar.weight_decay == pytest.approx(2e-4) and cifar.lr_boundaries == (74, 89, 99)
    mnist = recipes.get("trades_mnist")
    assert (mnist.model, mnist.num_steps, mnist.lr, mnist.weight_decay) == (
        "trades_smallcnn", 40, 0.01, 0.0)
    assert mnist.eps == pytest.approx(76.5) and mnist.step_size == pytest.approx(2.55)
    assert trades_recipe.preset_beta("trades_cifar10") == 6.0
    assert trades_recipe.preset_beta("trades_cifar10_beta1") == 1.0
    assert trades_recipe.preset_beta("trades_mnist_beta1") == 1.0
    assert trades_recipe.preset_beta("digits") == 6.0
    assert trades_recipe.preset_name("CIFAR10") == "trades_cifar10"
    assert trades_recipe.preset_name("digits") == "digits"


# ------------------------------------------------------------------------------ the loss


def test_trades_loss_matches_numpy_formula():
    rng = np.random.default_rng(0)
    logits_clean = rng.normal(size=(7, 10)).astype("float32") * 3
    logits_adv = logits_clean + rng.normal(size=(7, 10)).astype("float32")
    labels = rng.integers(0, 10, 7).astype("int32")
    for beta in (0.0, 1.0, 6.0):
        loss, ce, kl = trades_lib.trades_loss(logits_clean=logits_clean, logits_adv=logits_adv,
                                              labels=labels, beta=beta)
        want = np_trades_loss(logits_clean, logits_adv, labels, beta)
        np.testing.assert_allclose([float(loss), float(ce), float(kl)], want, rtol=1e-5)
    # KL(clean || adv), not KL(adv || clean): the two differ on these logits.
    reverse = np_trades_loss(logits_adv, logits_clean, labels, 1.0)[2]
    assert abs(float(kl) - reverse) > 1e-3
    # The KL term is the release's KLDivLoss(sum) / batch size: a batch mean of per-example sums.
    per_example = losses.trades_kl(logits_clean=logits_clean, logits_adv=logits_adv).numpy()
    assert per_example.shape == (7,) and float(kl) == pytest.approx(per_example.sum() / 7, rel=1e-6)


def test_defense_loss_is_clean_ce_plus_beta_kl_in_training_mode():
    net = testing.tiny_cnn(seed=1, with_bn=True)
    net(testing.images_in_range("[0,1]", batch=32), training=True)  # non-trivial BN moving stats
    x = testing.images_in_range("[0,1]", batch=8, seed=1)
    x_adv = np.clip(x + 0.05, 0, 1).astype("float32")
    y = np.arange(8, dtype="int32") % 10
    model = defenses.get("trades", net, beta=3.0, eps=8 / 255, step_size=0.007)
    want = np_trades_loss(net(x, training=True), net(x_adv, training=True), y, 3.0)[0]
    assert not np.allclose(  # training mode matters on this network
        want, np_trades_loss(net(x, training=False), net(x_adv, training=False), y, 3.0)[0])
    loss, logits_adv = model.defense_loss(tf.constant(x), tf.constant(y),
                                          AdversarialExamples(tf.constant(x_adv)))
    assert float(loss) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(logits_adv, net(x_adv, training=True), rtol=1e-5, atol=1e-6)


def test_update_gradient_flows_through_clean_logits():
    """One SGD step equals the hand gradient of eq. (5) with the clean prediction NOT detached;
    detaching it (stop_gradient on f(x) inside the KL) gives a different gradient."""
    net = testing.tiny_cnn(seed=3, with_bn=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 16).astype("int32")
    x_adv = np.full_like(x, 0.25)
    lr, beta = 0.5, 6.0
    variables = net.trainable_variables

    def grads(detach):
        with tf.GradientTape() as tape:
            clean = net(x, training=True)
            adv = net(x_adv, training=True)
            ce = tf.reduce_mean(losses.ce(logits=clean, labels=y))
            ref = tf.stop_gradient(clean) if detach else clean
            kl = tf.reduce_mean(losses.trades_kl(logits_clean=ref, logits_adv=adv))
            total = ce + beta * kl
        return total, tape.gradient(total, variables)

    total, attached = grads(detach=False)
    _, detached = grads(detach=True)
    assert max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(attached, detached)) > 1e-4
    expected = [np.array(v) - lr * np.array(g) for v, g in zip(variables, attached)]

    model = defenses.get("trades", net, attack=testing.constant_attack(0.25), beta=beta,
                                   weight_decay=0.0)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(float(total), rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["natural_loss"] + beta * logs["kl_loss"], rel=1e-5)
    for v, e in zip(net.trainable_variables, expected):
        np.testing.assert_allclose(np.array(v), e, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------ the attack


def test_attack_increases_kl_over_its_start():
    net = testing.trained_digits_model()
    x, y, _, _ = testing.digits_split(num_train=64)
    attack = trades_lib.trades_attack(eps=EPS, step_size=0.025, num_steps=5, seed=7)
    start = trades_lib.trades_attack(eps=EPS, step_size=0.025, num_steps=0, seed=7)
    keras.utils.set_random_seed(0)
    x0 = start(net, x, y).numpy()  # the Gaussian start (clipped), same seeds as the run below
    keras.utils.set_random_seed(0)
    x_adv = attack(net, x, y).numpy()
    assert 0 < np.abs(x0 - x).max() < 0.01  # x + 0.001 * N(0, I)
    kl0, kl = kl_to_clean(net, x, x0), kl_to_clean(net, x, x_adv)
    assert kl.sum() > 100 * kl0.sum(), (kl0.sum(), kl.sum())
    assert np.mean(kl > kl0) > 0.9


def test_attack_uses_inference_mode_and_leaves_bn_statistics():
    net = testing.tiny_cnn(seed=4, with_bn=True)
    net(testing.images_in_range("[0,1]", batch=32), training=True)
    x, y, _, _ = testing.digits_split(num_train=32)
    model = defenses.get("trades", net, eps=EPS, step_size=0.03, num_steps=3)
    stats = testing.bn_moving_stats(net)
    weights = [np.array(v) for v in net.trainable_variables]
    x_adv = model.make_adversarial(tf.constant(x), tf.constant(y)).x_adv.numpy()
    assert np.abs(x_adv - x).max() > 0.02
    for before, after in zip(stats, testing.bn_moving_stats(net)):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(weights, net.trainable_variables):
        np.testing.assert_array_equal(before, np.array(after))


@pytest.mark.parametrize("norm,eps", [("linf", EPS), ("l2", 0.5)])
@pytest.mark.parametrize("pixel_range", ["[0,1]", "[-1,1]"])
def test_attack_output_in_ball_and_range(norm, eps, pixel_range):
    net = testing.tiny_cnn(seed=5, with_bn=False)
    x = testing.images_in_range(pixel_range, batch=12)
    y = np.arange(12, dtype="int32") % 10
    model = defenses.get("trades", net, eps=eps, norm=norm, num_steps=4, pixel_range=pixel_range,
                                   step_size=eps / 2)  # large steps: the projection is exercised
    x_adv = model.make_adversarial(tf.constant(x), tf.constant(y)).x_adv.numpy()
    testing.assert_in_ball_and_range(x_adv, x, norm, eps, pixel_range)
    assert np.abs(x_adv - x).max() > 0


# ------------------------------------------------------------------------------ training


def test_fit_and_evaluate_log_trades_terms(digits):
    x, y, x_test, y_test = digits
    model = defenses.get("trades", testing.tiny_cnn(seed=0), eps=EPS, step_size=0.03, num_steps=3,
                                   beta=6.0, weight_decay=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    history = model.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0,
                        validation_data=(x_test[:64], y_test[:64]))
    keys = {"loss", "natural_loss", "kl_loss", "adv_loss", "adv_acc", "clean_loss", "clean_acc"}
    assert keys <= set(history.history)
    for key in keys:
        assert np.isfinite(history.history[key][0]), key
    assert history.history["kl_loss"][0] > 0
    assert {"val_loss", "val_adv_acc", "val_clean_acc"} <= set(history.history)
    res = model.evaluate(x_test, y_test, batch_size=64, verbose=0, return_dict=True)
    assert 0.0 <= res["adv_acc"] <= res["clean_acc"] + 1e-6


def test_trades_network_exports_as_savedmodel(digits, tmp_path):
    from tfadv import export

    x, y, x_test, _ = digits
    net = testing.tiny_cnn(seed=0)
    model = defenses.get("trades", net, eps=EPS, step_size=0.05, num_steps=2, weight_decay=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    model.fit(x[:64], y[:64], batch_size=64, epochs=1, verbose=0)
    path = str(tmp_path / "sm")
    export.export_savedmodel(net, path, pixel_range="[0,1]", metadata={"defense": "trades"})
    loaded = export.load_savedmodel(path)
    np.testing.assert_allclose(loaded(tf.constant(x_test[:5])), net(x_test[:5], training=False),
                               rtol=1e-5, atol=1e-6)


def test_eps_warmup_and_training_mode_attack_compose(digits):
    x, y, _, _ = digits
    model = defenses.get("trades", testing.tiny_cnn(seed=0), eps=EPS, step_size=0.03, num_steps=2,
                                   attack_training=True, eps_warmup_steps=4, weight_decay=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    logs = model.train_on_batch(x[:32], y[:32], return_dict=True)
    assert float(logs["eps_scale"]) == pytest.approx(0.25)
    assert np.isfinite(float(logs["kl_loss"])) and np.isfinite(float(logs["natural_loss"]))
