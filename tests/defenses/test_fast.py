"""Tests for Fast AT (tfadv.defenses.fast, tfadv.recipes.fast, the guard of tfadv.callbacks):
FGSM-RS's start and step by hand, the guard's restore-and-stop, a fit on digits."""

import keras
import numpy as np
import pytest

from tfadv import attacks, callbacks, defenses, recipes
from tfadv.defenses import FastAdversarialTraining
from tfadv.defenses import fast as fast_lib
from tfadv.recipes import fast as fast_recipe
from tests import testing


digits = testing.digits_fixture(128, 32)


def test_fgsm_rs_is_one_step_of_alpha_from_a_uniform_start_by_hand():
    """x' = clip_range(x + clip(x0 - x + α·sign(∇CE(x0)), -ε, ε)), x0 = clip_range(x + δ0),
    δ0 the attack's own uniform draw (read from its 0-step twin with the same seeds)."""
    eps, alpha = 0.3, 0.375
    rng = np.random.default_rng(0)
    w = rng.normal(size=64).astype("float32")
    net = testing.linear_two_class_model(w, 0.1)
    x = rng.uniform(size=(16, 8, 8, 1)).astype("float32")
    x[:, :2] = 0.0  # pixels at the range's ends: the range clip is exercised
    x[:, -2:] = 1.0
    y = (np.arange(16) % 2).astype("int32")
    attack = fast_lib.fgsm_rs_attack(eps=eps, alpha=alpha, seed=7)
    assert attack.step_size == pytest.approx(1.25 * eps) and attack.num_steps == 1
    assert fast_lib.fgsm_rs_attack(eps=0.1).step_size == pytest.approx(0.125)  # α = 1.25·ε
    start = attacks.IterativeAttack(eps=eps, step_size=alpha, num_steps=0, seed=7)
    keras.utils.set_random_seed(0)
    x0 = start(net, x, y).numpy()
    keras.utils.set_random_seed(0)
    x_adv = attack(net, x, y).numpy()
    delta0 = x0 - x
    assert np.abs(delta0).max() <= eps + 1e-6 and np.abs(delta0).mean() > eps / 4  # uniform in ball
    # ∇ₓ CE for logits (0, <w, x> + b): (sigmoid(s) - [y = 1]) · w
    s = x0.reshape(16, -1) @ w + 0.1
    grad = ((1 / (1 + np.exp(-s)) - y)[:, None] * w[None, :]).reshape(x.shape)
    stepped = x0 - x + alpha * np.sign(grad)
    want = np.clip(x + np.clip(stepped, -eps, eps), 0.0, 1.0)
    np.testing.assert_allclose(x_adv, want, atol=1e-6)
    assert np.mean(np.abs(stepped) > eps) > 0.1  # the ball's clip mattered
    assert np.mean((want == 0.0) | (want == 1.0)) > 0.1  # and the range's


def test_registry_recipe_and_presets():
    assert {"fast", "fgsm_rs"} <= set(defenses.names())
    model = defenses.get("fast", testing.tiny_cnn(seed=0), **fast_recipe.defense_kwargs())
    assert isinstance(model, FastAdversarialTraining) and model.guard is None
    cfg = model.attack.get_config()
    assert cfg["eps"] == pytest.approx(8 / 255) and cfg["step_size"] == pytest.approx(10 / 255)
    assert (cfg["num_steps"], cfg["random_start"], cfg["loss"]) == (1, "uniform", "ce")
    assert model.weight_decay == pytest.approx(5e-4) and model.required_callbacks() == []
    cifar, mnist = recipes.get("fast_cifar10"), recipes.get("fast_mnist")
    assert (cifar.model, cifar.epochs, cifar.lr, cifar.lr_schedule, cifar.lr_peak_fraction) == (
        "preact_resnet18", 15, 0.2, "cyclic", 0.5)
    assert (mnist.model, mnist.optimizer, mnist.epochs, mnist.lr, mnist.lr_peak_fraction) == (
        "wong_mnist_cnn", "adam", 10, 5e-3, 0.4)
    assert mnist.step_size == pytest.approx(0.375 * 255) and mnist.eps == pytest.approx(76.5)
    assert (fast_recipe.release_start("fast_mnist"), fast_recipe.release_start("fast_cifar10"),
            fast_recipe.release_start("digits")) == ("uniform_unclipped", "uniform", "uniform")
    assert fast_recipe.script_preset("cifar10") == "fast_cifar10"
    assert fast_recipe.script_preset("digits") == "digits"


@pytest.mark.parametrize("kwargs", [
    dict(), dict(alpha=0.1), dict(attack=attacks.get("noop"), eps=0.1),
    dict(eps=0.1, guard_batch=(np.zeros((2, 8, 8, 1)), [0, 1]), guard_drop=0.0)])
def test_bad_arguments_say_what_was_received(kwargs):
    with pytest.raises(ValueError, match="Received"):
        defenses.get("fast", testing.tiny_cnn(seed=0), **kwargs)


class ScriptedGuard(callbacks.CatastrophicOverfittingGuard):
    """The guard with its PGD accuracy scripted per epoch (a forced collapse); records the
    network's weights each time it is measured (before any restore)."""

    def __init__(self, accuracies, batch, reference="previous"):
        super().__init__(batch, attacks.get("noop"), reference=reference)
        self.accuracies = list(accuracies)
        self.measured = []

    def pgd_accuracy(self):
        self.measured.append([np.array(w) for w in self.model.network.get_weights()])
        return self.accuracies[len(self.measured) - 1]


def fit_with(guard, digits, epochs):
    x, y = digits[0], digits[1]
    model = defenses.get("fast", testing.tiny_cnn(seed=0), eps=0.1, weight_decay=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    history = model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=[guard]).history
    return model, history


def test_the_guard_restores_the_last_good_weights_and_stops_on_a_collapse(digits, capsys):
    guard = ScriptedGuard([0.5, 0.6, 0.3, 0.6, 0.6], (digits[0][:8], digits[1][:8]))
    model, history = fit_with(guard, digits, epochs=5)
    assert len(history["loss"]) == 3 and guard.stopped_epoch == 2  # 0.6 -> 0.3: a fall of 0.3
    assert history["guard_pgd_acc"] == pytest.approx([0.5, 0.6, 0.3])
    assert guard.restored_acc == pytest.approx(0.6)
    final = model.network.get_weights()
    for kept, collapsed, now in zip(guard.measured[1], guard.measured[2], final):
        np.testing.assert_array_equal(now, kept)  # the weights checked after epoch 2 (1-based)
    assert any(np.abs(c - k).max() > 0 for c, k in zip(guard.measured[2], guard.measured[1]))
    assert "Catastrophic overfitting at epoch 3" in capsys.readouterr().out


def test_the_guard_does_nothing_without_a_collapse(digits):
    guard = ScriptedGuard([0.5, 0.35, 0.4], (digits[0][:8], digits[1][:8]))  # falls of <= 0.2
    model, history = fit_with(guard, digits, epochs=3)
    assert len(history["loss"]) == 3 and guard.stopped_epoch is None
    for last, now in zip(guard.measured[2], model.network.get_weights()):
        np.testing.assert_array_equal(now, last)


def test_a_slow_collapse_passes_the_release_guard_but_not_the_best_reference(digits, capsys):
    # Falls of at most 0.08 between checks, 0.23 below the best (epoch 2): the release's guard
    # (from the previous check) lets it through; from the best check it stops at epoch 5 and
    # restores the weights checked after epoch 2.
    accuracies = [0.30, 0.33, 0.26, 0.18, 0.10, 0.30]
    batch = (digits[0][:8], digits[1][:8])
    release = ScriptedGuard(accuracies[:5], batch)
    _, history = fit_with(release, digits, epochs=5)
    assert len(history["loss"]) == 5 and release.stopped_epoch is None
    best = ScriptedGuard(accuracies, batch, reference="best")
    model, history = fit_with(best, digits, epochs=6)
    assert len(history["loss"]) == 5 and best.stopped_epoch == 4
    assert best.restored_acc == pytest.approx(0.33)
    for kept, now in zip(best.measured[1], model.network.get_weights()):
        np.testing.assert_array_equal(now, kept)
    assert "fell from 0.3300 (best check) to 0.1000" in capsys.readouterr().out
    # A fall of exactly the threshold (0.33 -> 0.13 on 100 images) is not "more than 0.2", though
    # the float32 accuracies differ by 0.2000000179.
    exact = ScriptedGuard(np.float32([0.33, 0.13]).tolist(), batch)
    _, history = fit_with(exact, digits, epochs=2)
    assert len(history["loss"]) == 2 and exact.stopped_epoch is None
    with pytest.raises(ValueError, match="Received: reference='last'"):
        callbacks.CatastrophicOverfittingGuard(batch, attacks.get("noop"), reference="last")


def test_fit_with_the_guard_batch_logs_its_pgd_accuracy(digits):
    x, y, x_test, y_test = digits
    measure = attacks.get("pgd", eps=0.1, step_size=0.025, num_steps=5, random_start="none")
    model = defenses.get("fast", testing.tiny_cnn(seed=0), eps=0.1, weight_decay=0.0,
                         guard_batch=(x[:16], y[:16]), guard_attack=measure)
    assert [type(c) for c in model.required_callbacks()] == [callbacks.CatastrophicOverfittingGuard]
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    before = [np.array(v) for v in model.network.trainable_variables]
    history = model.fit(x, y, batch_size=64, epochs=1, verbose=0,
                        validation_data=(x_test, y_test)).history
    assert {"loss", "adv_acc", "clean_acc", "guard_pgd_acc", "val_adv_acc"} <= set(history)
    x_adv = measure(model.model_fn(False), x[:16], y[:16])
    want = np.mean(np.argmax(model.network(x_adv, training=False), -1) == y[:16])
    assert history["guard_pgd_acc"][0] == pytest.approx(want)
    assert max(np.abs(a - np.array(b)).max()
               for a, b in zip(before, model.network.trainable_variables)) > 0


@pytest.mark.parametrize("random_start", ["uniform", "uniform_unclipped"])
def test_the_mnist_release_takes_the_gradient_at_the_unclipped_start(random_start):
    """The MNIST release: δ0 uniform in the ε-ball, the gradient at x + δ0 even outside [0,1], then
    x' = clip_range(x + clip(δ0 + α·sign(∇CE(x + δ0)), -ε, ε)); the CIFAR-10 release clips x + δ0
    to the range first."""
    eps, alpha = 0.3, 0.375
    rng = np.random.default_rng(1)
    w = rng.normal(size=64).astype("float32")
    net = testing.linear_two_class_model(w, 0.1)
    x = rng.uniform(size=(8, 8, 8, 1)).astype("float32")
    x[:, :3] = 0.0  # MNIST's background
    y = (np.arange(8) % 2).astype("int32")
    seen = []

    def recording(images):
        seen.append(images.numpy())
        return net(images, training=False)

    x_adv = fast_lib.fgsm_rs_attack(eps=eps, alpha=alpha, seed=3,
                                    random_start=random_start)(recording, x, y).numpy()
    x0 = seen[-1]  # the input of the gradient pass
    delta0 = x0 - x
    assert np.abs(delta0).max() <= eps + 1e-6
    if random_start == "uniform":
        assert x0.min() >= 0.0
    else:
        assert np.mean(x0[:, :3] < 0) > 0.3  # about half the background starts below 0
    s = x0.reshape(8, -1) @ w + 0.1
    grad = ((1 / (1 + np.exp(-s)) - y)[:, None] * w[None, :]).reshape(x.shape)
    want = np.clip(x + np.clip(delta0 + alpha * np.sign(grad), -eps, eps), 0.0, 1.0)
    np.testing.assert_allclose(x_adv, want, atol=1e-6)
    with pytest.raises(ValueError, match="Received: 'gaussian'"):
        fast_lib.fgsm_rs_attack(eps=eps, random_start="gaussian")


def test_recipe_training_builds_fgsm_rs_and_reads_the_guard_batch():
    cfg = dataclasses_replace_digits(eps=25.5, step_size=6.375, num_steps=7, batch_size=16)
    run, kwargs = fast_recipe.training(cfg, alpha_given=False, guard=True)
    attack = kwargs["attack"]
    assert attack.eps == pytest.approx(0.1) and attack.step_size == pytest.approx(0.125)
    assert (run.step_size, run.num_steps, run.random_start) == (pytest.approx(31.875), 1, "uniform")
    images, labels = kwargs["guard_batch"]
    assert images.shape == (16, 8, 8, 1) and labels.shape == (16,)
    with pytest.raises(ValueError, match="Received"):
        fast_recipe.training(cfg, guard_drop=1.5)
    run_unclipped, unclipped = fast_recipe.training(cfg, random_start="uniform_unclipped",
                                                    guard_reference="best")
    assert unclipped["guard_reference"] == "best"
    assert run_unclipped.random_start == unclipped["attack"].random_start == "uniform_unclipped"
    model = defenses.get("fast", testing.tiny_cnn(seed=0), **kwargs)
    assert model.guard is not None and model.guard.drop == pytest.approx(0.2)
    assert model.guard.reference == "previous"


def dataclasses_replace_digits(**fields):
    import dataclasses

    from tfadv.config import TrainConfig

    return dataclasses.replace(TrainConfig(dataset="digits"), **fields)


def test_mixed_precision_fp16_trains_with_the_guard(digits):
    """The release's mixed precision is the run's --precision: fp16 (loss scaling) trains Fast AT
    and the guard measures the mixed network."""
    from tfadv import distribute

    x, y = digits[0], digits[1]
    with distribute.precision_policy("fp16"):
        net = distribute.float32_logits(testing.tiny_cnn(seed=0, with_bn=True))
        model = defenses.get("fast", net, eps=0.1, weight_decay=5e-4, guard_batch=(x[:16], y[:16]))
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    before = [w.copy() for w in net.get_weights()]
    history = model.fit(x, y, batch_size=64, epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in history.values()), history
    assert 0.0 <= history["guard_pgd_acc"][0] <= 1.0
    assert max(np.abs(a - b).max() for a, b in zip(before, net.get_weights())) > 1e-4
