"""Tests for Free AT (tfadv.defenses.free, tfadv.recipes.free): the replay count, the perturbation
carried across replays and batches by hand on a linear model, its bounds, the recipes."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfadv import defenses, recipes
from tfadv.defenses import FreeAdversarialTraining
from tfadv.recipes import free as free_recipe
from tests import testing


digits = testing.digits_fixture(64, 32)


def free_model(net, **kwargs):
    kwargs = {"eps": 0.1, "replays": 3, "batch_size": 8, "weight_decay": 0.0,
              "track_clean": False, **kwargs}
    return defenses.get("free", net, **kwargs)


def test_each_batch_is_replayed_m_times(digits):
    """One epoch of 4 batches with m = 3: 12 optimizer steps (a Keras epoch is one pass)."""
    model = free_model(testing.tiny_cnn(seed=0))
    model.compile(keras.optimizers.SGD(0.01))
    model.fit(digits[0][:30], digits[1][:30], batch_size=8, epochs=1, verbose=0)  # 8, 8, 8, 6
    assert int(model.optimizer.iterations) == 3 * 4


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("delta_range", ["clip", "project"])
def test_the_perturbation_is_carried_across_replays_and_batches_by_hand(delta_range):
    """Linear 2-class model, SGD. "clip": per replay x' = clip(x + δ[:n], 0, 1); one backward gives
    ∇_K, ∇_c and ∇_x' of the mean CE; K, c take the SGD step and δ[:n] ← clip(δ[:n] + s·sign(∇_x'
    · [x + δ inside [0,1]]), ±ε). "project" (Wong et al.'s release): δ[:n] ← Π(δ[:n]) onto
    [−x, 1 − x] first, x' = x + δ[:n], the gradient uncut, and Π again after the ±ε clip. Two
    replays of a batch of 8 then of a short batch of 5, which carries and updates only the first
    5 rows."""
    eps, step, lr = 0.1, 0.06, 0.5
    rng = np.random.default_rng(1)
    w = rng.normal(size=64).astype("float32")
    net = testing.linear_two_class_model(w, 0.1)
    x = rng.uniform(size=(13, 8, 8, 1)).astype("float32")
    x[:, :1] = 0.0  # at the range's ends: the clip's zero derivative is exercised
    x[:, -1:] = 1.0
    y = (rng.uniform(size=13) > 0.5).astype("int32")
    model = free_model(net, eps=eps, step_size=step, replays=2, delta_range=delta_range)
    model.compile(keras.optimizers.SGD(lr))
    K, c = [v.astype("float64") for v in net.get_weights()]
    delta = np.zeros((8, 64))
    flat = x.reshape(13, 64).astype("float64")
    steps_clipped = 0
    project = delta_range == "project"
    for lo, hi in ((0, 8), (8, 13)):
        xb, yb, n = flat[lo:hi], y[lo:hi], hi - lo
        for _ in range(2):
            if project:
                delta[:n] = np.clip(delta[:n], -xb, 1.0 - xb)
            moved = xb + delta[:n]
            x_adv = np.clip(moved, 0.0, 1.0)
            dz = (_softmax(x_adv @ K + c) - np.eye(2)[yb]) / n
            g_x = dz @ K.T
            K, c = K - lr * x_adv.T @ dz, c - lr * dz.sum(0)
            if not project:
                g_x = np.where((moved >= 0) & (moved <= 1), g_x, 0.0)
            stepped = delta[:n] + step * np.sign(g_x)
            steps_clipped += int((np.abs(stepped) > eps).sum())
            delta[:n] = np.clip(stepped, -eps, eps)
            if project:
                delta[:n] = np.clip(delta[:n], -xb, 1.0 - xb)
    assert steps_clipped > 100  # the ±ε clip mattered (two steps of 0.6 ε in one direction)
    edges = flat[8:13, :8]  # pixels held at 0 in the last batch
    if project:  # every δ keeps x + δ inside the range, and zero pixels moved up
        assert np.all(delta[:5, :8] >= 0) and np.all(delta[:5, -8:] <= 0)
        assert np.all(edges == 0) and np.any(delta[:5, :8] > 0)
    else:
        assert np.mean(delta[:5] == 0) > 0.02  # pixels held at the range's ends stayed unmoved
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    got = model.perturbation.numpy().reshape(8, 64)
    np.testing.assert_allclose(got, delta, atol=1e-6)
    np.testing.assert_allclose(net.get_weights()[0], K, atol=1e-5)
    assert int(model.optimizer.iterations) == 4


@pytest.mark.parametrize("delta_range, expected", [("clip", -0.1), ("project", 0.1)])
def test_a_delta_out_of_the_range_is_frozen_by_the_clip_and_not_by_the_projection(
        delta_range, expected):
    """A zero pixel whose δ is −ε (x + δ below the range) and a gradient pushing it up: through the
    clip g_δ = 0 and δ stays −ε for good (the absorbing state on MNIST's background); projected,
    δ → Π(−ε) = 0, then 0 + ε·sign(g) = ε."""
    net = testing.linear_two_class_model(np.ones(64, "float32"), 0.0)
    model = free_model(net, eps=0.1, replays=1, batch_size=1, delta_range=delta_range)
    x = tf.zeros((1, 8, 8, 1))
    model.perturbation.assign(tf.fill((1, 8, 8, 1), -0.1))
    examples = model.make_adversarial(x, tf.constant([0]))
    np.testing.assert_array_equal(examples.x_adv.numpy(), 0.0)  # both: the image itself
    model.carry_input_gradient(x, None, examples, tf.ones((1, 8, 8, 1)))
    np.testing.assert_allclose(model.perturbation.numpy(), expected, atol=1e-7)


def test_examples_stay_in_the_ball_and_the_range_and_delta_persists_across_epochs(digits):
    x, y = digits[0][:32], digits[1][:32]
    model = free_model(testing.tiny_cnn(seed=0), eps=0.2, replays=2, batch_size=16)
    model.compile(keras.optimizers.SGD(0.05))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    after_one = model.perturbation.numpy()
    assert np.abs(after_one).max() == pytest.approx(0.2)  # steps of ε reach the ball's edge
    x_adv = model.make_adversarial(tf.constant(x[16:]), tf.constant(y[16:])).x_adv.numpy()
    testing.assert_in_ball_and_range(x_adv, x[16:], "linf", 0.2, "[0,1]")
    np.testing.assert_allclose(x_adv, np.clip(x[16:] + after_one, 0, 1), atol=1e-6)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    # The second epoch started from the first's δ (not zeros): with steps of ε, a pixel whose
    # gradient sign held is still at ±ε and one whose sign flipped went to 0 or across.
    assert np.abs(model.perturbation.numpy()).max() <= 0.2 + 1e-7
    assert not np.array_equal(model.perturbation.numpy(), after_one)


def test_registry_recipe_and_presets():
    assert {"free", "free_at"} <= set(defenses.names())
    model = defenses.get("free", testing.tiny_cnn(seed=0), **free_recipe.defense_kwargs())
    assert isinstance(model, FreeAdversarialTraining)
    assert (model.replays, model.batch_size) == (8, 128)
    assert model.eps == pytest.approx(8 / 255) and model.step_size == pytest.approx(8 / 255)
    assert model.perturbation.shape == (128, 8, 8, 1) and model.weight_decay == 2e-4
    assert not model.perturbation.trainable and not np.any(model.perturbation.numpy())
    cifar, mnist = recipes.get("free_cifar10"), recipes.get("free_mnist")
    assert (cifar.model, cifar.eps, cifar.step_size, cifar.batch_size, cifar.epochs) == (
        "madry_wrn34", 8.0, 8.0, 128, 205)
    assert (cifar.lr, cifar.lr_boundaries, cifar.weight_decay) == (0.1, (102, 154), 2e-4)
    assert (mnist.eps, mnist.step_size) == (76.5, 76.5)
    assert free_recipe.preset_replays("free_cifar10") == 8
    assert free_recipe.preset_replays("free_mnist") == 4
    assert free_recipe.script_preset("cifar10") == "free_cifar10"
    assert free_recipe.script_preset("digits") == "digits"


def test_recipe_training_records_the_step_and_builds_input_units():
    cfg = dataclasses.replace(recipes.get("digits"), eps=25.5, step_size=6.375)
    from tfadv.config import TrainConfig

    run = TrainConfig(dataset="digits", pixel_range="[0,1]", model="digits_cnn", eps=25.5,
                      step_size=6.375, num_steps=7, epochs=8, batch_size=64, optimizer="adam",
                      lr=1e-3)
    out, kwargs = free_recipe.training(run, replays=4, step_size_given=False)
    assert (out.step_size, out.num_steps, out.random_start) == (25.5, 1, "none")
    assert kwargs["eps"] == pytest.approx(0.1) and kwargs["step_size"] == pytest.approx(0.1)
    assert (kwargs["replays"], kwargs["batch_size"]) == (4, 64)
    _, given = free_recipe.training(run, replays=None, preset="free_mnist")
    assert given["replays"] == 4 and given["step_size"] == pytest.approx(6.375 / 255)
    assert cfg.eps == 25.5
    with pytest.raises(ValueError, match="Linf.*Received: norm='l2'"):
        free_recipe.training(dataclasses.replace(run, norm="l2"))
    with pytest.raises(ValueError, match="m.*Received: 0"):
        free_recipe.training(run, replays=0)
    assert given["delta_range"] == free_recipe.preset_delta_range("free_mnist") == "project"
    assert free_recipe.preset_delta_range("free_cifar10") == "clip"  # the Shafahi et al. releases
    _, projected = free_recipe.training(run, replays=2, delta_range="project")
    assert projected["delta_range"] == "project"
    assert free_recipe.training(run, replays=2)[1]["delta_range"] == "clip"  # no preset
    with pytest.raises(ValueError, match="delta_range.*Received: delta_range='wrap'"):
        free_recipe.training(run, replays=2, delta_range="wrap")


@pytest.mark.parametrize("kwargs", [{"replays": 0}, {"replays": 1.5}, {"batch_size": 0},
                                    {"eps": -0.1}, {"step_size": 0.0}, {"delta_range": "wrap"}])
def test_bad_arguments_say_what_was_received(kwargs):
    with pytest.raises(ValueError, match="Received: "):
        free_model(testing.tiny_cnn(seed=0), **kwargs)


def test_a_batch_larger_than_the_perturbation_is_refused(digits):
    model = free_model(testing.tiny_cnn(seed=0), batch_size=4)
    model.compile(keras.optimizers.SGD(0.01))
    with pytest.raises(ValueError, match="batch_size=4.*Received: a batch of 8"):
        model.fit(digits[0][:8], digits[1][:8], batch_size=8, epochs=1, verbose=0)
