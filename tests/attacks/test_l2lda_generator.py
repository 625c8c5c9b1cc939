"""tfadv/attacks/l2lda_generator.py: L2L-DA's recursion of eq. (5) (its projections, its gradient
input, the flow of the generator's gradient through δ), the objective and update shared by the
defense and the attack, and the generator's files."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfadv.attacks import l2lda_generator as l2lda_lib
from tests import testing

EPS = 0.1  # digits, [0,1]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


digits = testing.digits_fixture(128, 32)


class ConstantGenerator(keras.layers.Layer):
    """g ≡ tanh(w) everywhere: the recursion and its derivative can be computed by hand."""

    def __init__(self, w):
        super().__init__()
        self.w = self.add_weight(shape=(), initializer=keras.initializers.Constant(w))

    def call(self, inputs, training=None):
        return ops.tanh(self.w) * ops.ones_like(inputs[0])


# ------------------------------------------------------------------------------ the gradient input


def test_normalize_gradient_per_example_and_channel():
    g = np.zeros((2, 3, 3, 2), "float32")
    g[0, 0, 0, 0], g[0, 1, 0, 0] = 3.0, 4.0
    g[0, :, :, 1] = -2.0
    g[1, 2, 2, 0] = 1e-3
    out = l2lda_lib.normalize_gradient(g).numpy()
    assert out[0, 0, 0, 0] == pytest.approx(0.6, rel=1e-5)
    assert out[0, 1, 0, 0] == pytest.approx(0.8, rel=1e-5)
    np.testing.assert_allclose(out[0, :, :, 1], -1.0 / 3.0, rtol=1e-5)  # 9 pixels of -2: norm 6
    assert out[1, 2, 2, 0] == pytest.approx(1.0, rel=1e-5)
    assert np.all(out[1, :, :, 1] == 0.0)  # an all-zero channel stays zero (1e-15 stabilizer)
    with pytest.raises(ValueError, match="Received: shape"):
        l2lda_lib.normalize_gradient(np.zeros((2, 4), "float32"))


# ------------------------------------------------------------------------------ the recursion


@pytest.mark.parametrize("pixel_range", ["[0,1]", "[-1,1]"])
def test_every_step_stays_in_the_ball_and_the_range(pixel_range):
    x = testing.images_in_range(pixel_range, batch=8)
    y = np.arange(8, dtype="int32") % 10
    z = np.random.default_rng(0).normal(size=(8, 8)).astype("float32")
    eps = 0.3 if pixel_range == "[0,1]" else 0.6
    net = testing.tiny_cnn(seed=1, with_bn=False)
    gen = testing.tiny_generator()
    x_advs = l2lda_lib.unroll(gen, net, x, y, z, eps=eps, step_size=eps, num_steps=4,
                              pixel_range=pixel_range, training=True)
    assert len(x_advs) == 4
    for x_adv in x_advs:
        testing.assert_in_ball_and_range(x_adv.numpy(), x, "linf", eps, pixel_range)
    # Steps of eps saturate the ball: the projection is exercised.
    assert np.abs(x_advs[-1].numpy() - x).max() == pytest.approx(eps, abs=1e-6)


@pytest.mark.parametrize("recursive,factor", [(True, 3.0), (False, 1.0)])
def test_delta_accumulates_and_is_not_detached(recursive, factor):
    """x_adv⁽³⁾ = x + 3·a·tanh(w) recursively (δ kept across steps) and x + a·tanh(w) one-shot;
    its derivative w.r.t. w flows back through every step's δ: 3·a·sech²(w) per pixel."""
    x = np.random.default_rng(0).uniform(0.3, 0.7, size=(4, 8, 8, 1)).astype("float32")
    y = np.arange(4, dtype="int32")
    gen = ConstantGenerator(0.5)
    a = 0.02
    with tf.GradientTape() as tape:
        x_advs = l2lda_lib.unroll(gen, testing.tiny_cnn(seed=0), x, y, np.zeros((4, 8), "float32"),
                                  eps=EPS, step_size=a, num_steps=3, pixel_range="[0,1]",
                                  recursive=recursive)
        total = tf.reduce_sum(x_advs[-1])
    t = np.tanh(0.5)
    np.testing.assert_allclose(x_advs[-1].numpy(), x + factor * a * t, rtol=1e-5, atol=1e-6)
    if recursive:
        np.testing.assert_allclose(x_advs[0].numpy(), x + a * t, rtol=1e-5, atol=1e-6)
    grad = tape.gradient(total, gen.w)
    assert float(grad) == pytest.approx(x.size * factor * a * (1 - t ** 2), rel=1e-4)


def test_one_shot_equals_the_l2l_formulation(digits):
    """T = 1 with ε_step = ε is eq. (4): x_adv = Proj_X(x + ε·g(x, ∇̂L(x), 0, z, y)); the one-shot
    mode restarts every step from δ = 0 with the gradient at the previous iterate."""
    x, y = digits[0][:8], digits[1][:8]
    net = testing.trained_digits_model()
    gen = testing.tiny_generator()
    z = np.random.default_rng(1).normal(size=(8, 8)).astype("float32")
    zeros = np.zeros_like(x)
    g_hat = l2lda_lib.normalize_gradient(testing.ce_input_gradient(net, x, y)).numpy()
    want = np.clip(x + EPS * gen([x, g_hat, zeros, z, y], training=False).numpy(), 0, 1)
    for recursive in (True, False):
        (x_adv,) = l2lda_lib.unroll(gen, net, x, y, z, eps=EPS, step_size=EPS, num_steps=1,
                                    pixel_range="[0,1]", recursive=recursive)
        np.testing.assert_allclose(x_adv.numpy(), want, rtol=1e-5, atol=1e-6)
    x_advs = l2lda_lib.unroll(gen, net, x, y, z, eps=EPS, step_size=EPS, num_steps=3,
                              pixel_range="[0,1]", recursive=False)
    g_hat = l2lda_lib.normalize_gradient(testing.ce_input_gradient(net, x_advs[1].numpy(), y)).numpy()
    want = np.clip(x + EPS * gen([x, g_hat, zeros, z, y], training=False).numpy(), 0, 1)
    np.testing.assert_allclose(x_advs[2].numpy(), want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ the files


def test_save_and_load_round_trip(tmp_path):
    gen = testing.tiny_generator(latent_dim=3, use_delta=False, class_conditional=False)
    gen([np.random.rand(8, 8, 8, 1).astype("float32")] * 3 + [np.random.randn(8, 3).astype(
        "float32"), np.arange(8, dtype="int32")], training=True)  # non-trivial BN statistics
    path = str(tmp_path / "g")
    l2lda_lib.save_generator(gen, path)
    l2lda_lib.save_generator(gen, path, epoch=2)  # overwrites in place
    assert sorted(os.listdir(tmp_path)) == ["g"]
    assert sorted(os.listdir(path)) == ["config.json", "generator.weights.h5"]
    loaded = l2lda_lib.load_generator(path)
    assert loaded.l2lda_config == gen.l2lda_config
    feed = [np.random.rand(5, 8, 8, 1).astype("float32")] * 3 + [
        np.random.randn(5, 3).astype("float32"), np.arange(5, dtype="int32")]
    np.testing.assert_allclose(loaded(feed, training=False), gen(feed, training=False),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="Received: path="):
        l2lda_lib.load_generator(str(tmp_path))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="Corrupt"):
        l2lda_lib.load_generator(str(tmp_path / "bad"))


# ------------------------------------------------------------------------------ the one update


def test_update_clips_then_decays_then_steps_and_returns_the_norm_before_clipping():
    """Algorithm 1, line 9 as released: clip_grad_norm_(1.0), then PyTorch's weight decay c·w
    added to the clipped gradient, then the optimizer step."""
    w1, w2 = tf.Variable([1.0, -2.0]), tf.Variable([0.5])
    grads = [tf.constant([3.0, 0.0]), tf.constant([4.0])]  # global norm 5
    norm = l2lda_lib.apply_generator_update(keras.optimizers.SGD(1.0), grads, [w1, w2],
                                            clip_norm=1.0, weight_decay=0.1)
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(w1.numpy(), [1.0 - (0.6 + 0.1), -2.0 - (0.0 - 0.2)], rtol=1e-6)
    np.testing.assert_allclose(w2.numpy(), [0.5 - (0.8 + 0.05)], rtol=1e-6)
    w = tf.Variable([1.0])  # clip_norm=0 and weight_decay=0: the raw gradient
    l2lda_lib.apply_generator_update(keras.optimizers.SGD(1.0), [tf.constant([4.0])], [w],
                                     clip_norm=0.0, weight_decay=0.0)
    np.testing.assert_allclose(w.numpy(), [-3.0])


def test_objective_step_reduction_sum_is_t_times_the_mean(digits):
    x, y = tf.constant(digits[0][:8]), tf.constant(digits[1][:8])
    net, gen = testing.trained_digits_model(), testing.tiny_generator()
    z = tf.random.normal((16, 8), seed=2)
    common = dict(eps=EPS, step_size=EPS / 4, num_steps=3, pixel_range="[0,1]", lam=0.5)
    mean = l2lda_lib.generator_objective(gen, net, x, y, z, **common)
    summed = l2lda_lib.generator_objective(gen, net, x, y, z, step_reduction="sum", **common)
    for m, s in zip(mean[:3], summed[:3]):  # objective, L_cls, L_div
        assert float(s) == pytest.approx(3 * float(m), rel=1e-4)
    assert float(mean[0]) == pytest.approx(float(mean[1]) + 0.5 * float(mean[2]), rel=1e-5)
    assert mean[3].shape == (16, 8, 8, 1)
    with pytest.raises(ValueError, match="Received: step_reduction='max'"):
        l2lda_lib.generator_objective(gen, net, x, y, z, step_reduction="max", **common)


def test_attack_fine_tuning_ascends_the_shared_objective_with_the_paper_mean(digits, tmp_path):
    """The evaluation attack's prepare step is the defense's eq. (8) (one function): its first
    loss is −objective of :func:`generator_objective` (mean over T) for the same generator and z."""
    from tfadv import attacks

    l2lda_lib.save_generator(testing.tiny_generator(), str(tmp_path / l2lda_lib.GENERATOR_DIR))
    net = testing.trained_digits_model()
    x, y = digits[0][:8], digits[1][:8]
    attack = attacks.get("l2lda", generator_path=str(tmp_path), eps=EPS, num_steps=3, seed=7,
                         finetune_steps=1)
    attack.prepare(net, [(x, y)])
    z = keras.random.normal((16, 8), seed=keras.random.SeedGenerator(7))
    objective, _, _, _ = l2lda_lib.generator_objective(
        l2lda_lib.load_generator(str(tmp_path)), net, tf.constant(x), tf.constant(y), z, eps=EPS,
        step_size=EPS / 4, num_steps=3, pixel_range="[0,1]", lam=attack.lam)
    assert attack.history[0] == pytest.approx(-float(objective), rel=1e-5)
