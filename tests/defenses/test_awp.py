"""Tests for AWP (tfadv.defenses.awp, tfadv.recipes.awp) on Madry and TRADES: the perturbation's
size per kernel, what it leaves untouched, the update at w + v by hand, the warm-up."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import attacks, defenses, losses
from tfadv.defenses import awp as awp_lib
from tfadv.recipes import awp as awp_recipe
from tests import testing


digits = testing.digits_fixture(64, 32)


def madry_awp(net, gamma=0.01, **kwargs):
    return defenses.get("madry", net, attack=attacks.get("noop"), eval_attack=attacks.get("noop"),
                        awp_gamma=gamma, track_clean=False, **kwargs)


def test_each_kernel_moves_by_gamma_of_its_norm_along_the_loss_gradient(digits):
    """v = γ·‖w‖·d/‖d‖ per kernel (ndim > 1) with d the gradient of the defense's loss at w in
    training mode; biases, BatchNorm parameters and moving statistics are not perturbed, and the
    proxy pass leaves the moving statistics as they were."""
    x, y = tf.constant(digits[0][:16]), tf.constant(digits[1][:16])
    net = testing.tiny_cnn(seed=0, with_bn=True)
    model = madry_awp(net, gamma=0.02, weight_decay=0.0)
    stats = testing.bn_moving_stats(net)
    examples = model.make_adversarial(x, y)
    pairs = model.weight_perturbation(x, y, examples)
    names = sorted(v.path for v, _ in pairs)
    assert names == sorted(v.path for v in net.trainable_variables if len(v.shape) > 1)
    assert len(names) == 3 and not any("bias" in n or "bn1" in n for n in names)
    for got, want in zip(testing.bn_moving_stats(net), stats):
        np.testing.assert_array_equal(got, want)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.ce(logits=net(x, training=True), labels=y))
    grads = dict(zip([v.path for v in net.trainable_variables],
                     tape.gradient(loss, net.trainable_variables)))
    for var, v in pairs:
        w, v, d = var.numpy(), v.numpy(), grads[var.path].numpy()
        assert np.linalg.norm(v) / np.linalg.norm(w) == pytest.approx(0.02, rel=1e-5)
        np.testing.assert_allclose(v, 0.02 * np.linalg.norm(w) * d / np.linalg.norm(d),
                                   rtol=1e-4, atol=1e-9)


def test_the_update_is_an_sgd_step_at_w_plus_v_then_minus_v_by_hand():
    """Linear 2-class model, SGD momentum 0.9, weight decay c: v = γ‖K‖∇_K/‖∇_K‖ at (K, b);
    the step's gradient is taken at K + v (weight decay included); afterwards K_new =
    K + v − lr·g − v and the momentum slot holds −lr·g (the proxy step never touched it); the bias
    is not perturbed."""
    gamma, lr, decay = 0.05, 0.5, 1e-2
    rng = np.random.default_rng(3)
    w = rng.normal(size=64).astype("float32")
    net = testing.linear_two_class_model(w, 0.2)
    x = rng.uniform(size=(8, 8, 8, 1)).astype("float32")
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1], "int32")
    model = madry_awp(net, gamma=gamma, weight_decay=decay)
    optimizer = keras.optimizers.SGD(lr, momentum=0.9)
    model.compile(optimizer)
    K, b = [v.astype("float64") for v in net.get_weights()]
    flat = x.reshape(8, 64).astype("float64")

    def grads(K, b):
        p = np.exp(flat @ K + b)
        dz = (p / p.sum(-1, keepdims=True) - np.eye(2)[y]) / 8
        return flat.T @ dz, dz.sum(0)

    dK, _ = grads(K, b)
    v = gamma * np.linalg.norm(K) * dK / np.linalg.norm(dK)
    gK, gb = grads(K + v, b)
    gK = gK + decay * (K + v)  # c·½‖W‖² at w + v
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    K_new, b_new = net.get_weights()
    np.testing.assert_allclose(K_new, K + v - lr * gK - v, atol=1e-6)
    np.testing.assert_allclose(b_new, b - lr * gb, atol=1e-6)
    slots = {s.path: s.numpy() for s in optimizer.variables if "momentum" in s.path}
    kernel_slot = next(s for p, s in slots.items() if s.shape == K.shape)
    np.testing.assert_allclose(kernel_slot, -lr * gK, atol=1e-6)
    # Without AWP the same step differs: v mattered.
    assert np.abs(K_new - (K - lr * (grads(K, b)[0] + decay * K))).max() > 1e-4


def test_warmup_epochs_train_as_without_awp_then_perturb(digits):
    x, y = digits[0][:32], digits[1][:32]

    def run(**awp):
        net = testing.tiny_cnn(seed=0, with_bn=False)
        model = defenses.get("madry", net, attack=attacks.get("noop"), track_clean=False,
                             weight_decay=0.0, **awp)
        model.compile(keras.optimizers.SGD(0.1))
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        first = net.get_weights()
        model.fit(x, y, batch_size=16, epochs=2, initial_epoch=1, verbose=0, shuffle=False)
        return first, net.get_weights(), model

    plain_first, plain_second, _ = run()
    first, second, model = run(awp_gamma=0.01, awp_warmup_epochs=1)
    assert [type(c) for c in model.required_callbacks()] == [awp_lib.AwpSchedule]
    assert int(model.awp_epoch) == 1
    for a, b in zip(first, plain_first):
        np.testing.assert_allclose(a, b, atol=1e-7)  # epoch 0: no perturbation
    assert max(np.abs(a - b).max() for a, b in zip(second, plain_second)) > 1e-5


def test_trades_awp_perturbs_along_the_trades_objective_and_logs_once(digits):
    x, y = tf.constant(digits[0][:16]), tf.constant(digits[1][:16])
    net = testing.tiny_cnn(seed=0, with_bn=False)
    model = defenses.get("trades", net, attack=attacks.get("pgd", eps=0.1, step_size=0.05,
                                                           num_steps=1, random_start="none"),
                         beta=6.0, awp_gamma=0.005)
    assert model.awp_warmup_epochs == 0 and model.required_callbacks() == []
    examples = model.make_adversarial(x, y)
    pairs = model.weight_perturbation(x, y, examples)
    assert all(m.count.numpy() == 0 for m in model.defense_metrics)  # the proxy logs nothing
    with tf.GradientTape() as tape:
        logits_clean, logits_adv = net(x, training=True), net(examples.x_adv, training=True)
        loss = defenses.trades.trades_loss(logits_clean=logits_clean, logits_adv=logits_adv,
                                           labels=y, beta=6.0)[0]
    grads = tape.gradient(loss, [v for v, _ in pairs])
    for (var, v), d in zip(pairs, grads):
        cosine = np.sum(v.numpy() * d.numpy()) / np.linalg.norm(v) / np.linalg.norm(d)
        assert cosine == pytest.approx(1.0, abs=1e-5)
        assert np.linalg.norm(v) / np.linalg.norm(var.numpy()) == pytest.approx(0.005, rel=1e-5)


def test_the_recipe_gives_the_released_gamma_and_warmup():
    assert awp_recipe.defense_kwargs("madry", gamma=0.01) == {"awp_gamma": 0.01,
                                                              "awp_warmup_epochs": 0}
    assert awp_recipe.defense_kwargs("trades", gamma=0.005) == {"awp_gamma": 0.005,
                                                                "awp_warmup_epochs": 10}
    assert awp_recipe.defense_kwargs("trades", gamma=0.005, warmup_epochs=2)[
        "awp_warmup_epochs"] == 2
    assert awp_recipe.defense_kwargs("madry") == {} == awp_recipe.defense_kwargs("madry", gamma=0)
    with pytest.raises(ValueError, match="Received: 'mart'"):
        awp_recipe.defense_kwargs("mart", gamma=0.01)
    with pytest.raises(ValueError, match="needs --awp_gamma.*Received: awp_warmup_epochs=3"):
        awp_recipe.defense_kwargs("madry", warmup_epochs=3)
    with pytest.raises(ValueError, match="Received: -0.1"):
        awp_recipe.defense_kwargs("madry", gamma=-0.1)


@pytest.mark.parametrize("kwargs", [{"awp_gamma": -1.0}, {"awp_gamma": float("nan")},
                                    {"awp_gamma": 0.01, "awp_warmup_epochs": -1}])
def test_bad_arguments_say_what_was_received(kwargs):
    with pytest.raises(ValueError, match="Received: "):
        defenses.get("madry", testing.tiny_cnn(seed=0), attack=attacks.get("noop"), **kwargs)


def test_a_defense_without_awp_loss_is_refused_at_construction():
    from tfadv.defenses.base import AdversarialModel

    class NoObjective(awp_lib.AdversarialWeightPerturbation, AdversarialModel):
        def defense_loss(self, x, y, examples, training):  # pragma: no cover - never built
            raise AssertionError

    with pytest.raises(TypeError, match="defines no awp_loss.*Received: "):
        NoObjective(testing.tiny_cnn(), attack=attacks.get("fgsm", eps=0.1), awp_gamma=0.01)
