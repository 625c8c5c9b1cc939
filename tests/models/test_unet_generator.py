"""Tests for the L2L-DA generator (models/unet_generator.py) and its layers (models/layers.py)."""

import keras
import numpy as np
import pytest

from tfadv.models import layers
from tfadv.models.unet_generator import build_generator, generator_config
from tests import testing

DIGITS = (8, 8, 1)


def inputs(batch=6, shape=DIGITS, latent_dim=8, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch,) + shape).astype("float32")
    g = rng.normal(size=(batch,) + shape).astype("float32")
    d = rng.uniform(-0.1, 0.1, size=(batch,) + shape).astype("float32")
    z = rng.normal(size=(batch, latent_dim)).astype("float32")
    y = (np.arange(batch) % 10).astype("int32") if labels is None else labels
    return [x, g, d, z, y]


def mnist_param_count(base=64, latent=8, classes=10, channels=1, delta=True):
    """Trainable parameters of the release's NoiseGenerator (g_deeper_layer=False), by hand."""
    f, c_in = base, channels * (3 if delta else 2)
    z_mlp = 2 * (latent * latent + latent)
    down0 = 3 * 3 * (c_in + latent) * f
    down1 = 4 * 4 * (f + latent) * f
    down2 = 4 * 4 * (f + latent) * 2 * f
    up2 = 4 * 4 * 2 * f * f
    up1 = 4 * 4 * 2 * f * f
    final = 3 * 3 * 2 * f * channels
    cbn = 3 * 2 * (classes + 1) * f  # down1, up2, up1: gamma/beta tables (classes + shared row)
    return z_mlp + down0 + down1 + down2 + up2 + up1 + final + cbn


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def test_shape_range_and_release_parameter_count():
    gen = build_generator(10, (28, 28, 1))
    assert gen.name == "l2lda_generator"
    trainable = sum(int(np.prod(v.shape)) for v in gen.trainable_variables)
    assert trainable == mnist_param_count() == 495184
    out = gen(inputs(batch=4, shape=(28, 28, 1)), training=True).numpy()
    assert out.shape == (4, 28, 28, 1)
    assert np.all(np.abs(out) < 1.0) and out.std() > 0
    gen3 = build_generator(10, (32, 32, 3), base_filters=8)
    assert gen3(inputs(batch=2, shape=(32, 32, 3)), training=False).shape == (2, 32, 32, 3)
    assert not any(v.name == "bias" for v in gen.trainable_variables
                   if "conv" in v.path)  # no conv biases


def test_every_input_matters_and_switches_drop_them():
    feed = inputs()
    full = build_generator(10, DIGITS, base_filters=4)
    ref = full(feed, training=False).numpy()
    for index in range(5):  # x, grad, delta, z, y each change the output
        changed = list(feed)
        if index == 4:
            changed[4] = (feed[4] + 3) % 10
        else:
            changed[index] = feed[index] + 0.5
        assert np.abs(full(changed, training=False).numpy() - ref).max() > 1e-6, index

    ablated = build_generator(10, DIGITS, base_filters=4, use_delta=False,
                              class_conditional=False)
    ref = ablated(feed, training=False).numpy()
    for index, value in ((2, feed[2] + 0.5), (4, (feed[4] + 3) % 10)):
        changed = list(feed)
        changed[index] = value
        np.testing.assert_array_equal(ablated(changed, training=False).numpy(), ref)
    assert not any(isinstance(l, layers.ConditionalBatchNormalization) for l in ablated.layers)


def test_latent_dim_zero_is_deterministic():
    gen = build_generator(10, DIGITS, base_filters=4, latent_dim=0)
    feed = inputs(latent_dim=0)
    assert feed[3].shape == (6, 0)
    a = gen(feed, training=False).numpy()
    np.testing.assert_array_equal(a, gen(feed, training=False).numpy())
    assert generator_config(gen)["latent_dim"] == 0


def test_config_round_trip():
    gen = build_generator(7, DIGITS, latent_dim=3, use_delta=False, base_filters=5, name="g")
    cfg = generator_config(gen)
    assert cfg == {"num_classes": 7, "input_shape": [8, 8, 1], "latent_dim": 3,
                   "use_delta": False, "class_conditional": True, "base_filters": 5,
                   "name": "g"}
    rebuilt = build_generator(**{**cfg, "input_shape": tuple(cfg["input_shape"])})
    rebuilt.set_weights(gen.get_weights())
    feed = inputs(latent_dim=3, labels=np.arange(6, dtype="int32") % 7)
    np.testing.assert_array_equal(rebuilt(feed, training=False), gen(feed, training=False))
    with pytest.raises(ValueError, match="Received"):
        generator_config(testing.tiny_cnn())


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_classes=1), "num_classes=1"),
    (dict(input_shape=(30, 30, 1)), r"input_shape=\(30, 30, 1\)"),
    (dict(input_shape=(8, 8)), "input_shape"),
    (dict(latent_dim=-1), "latent_dim=-1"),
    (dict(base_filters=0), "base_filters=0"),
    (dict(use_delta="yes"), "use_delta='yes'"),
    (dict(class_conditional=1), "class_conditional=1"),
])
def test_bad_arguments(kwargs, match):
    args = {"num_classes": 10, "input_shape": DIGITS, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_generator(args.pop("num_classes"), args.pop("input_shape"), **args)


def _layer(channels=3, classes=4):
    layer = layers.ConditionalBatchNormalization(classes)
    layer.build([(None, 2, 2, channels), (None,)])
    rng = np.random.default_rng(0)
    layer.gamma_class.assign(rng.normal(size=(classes, channels)).astype("float32"))
    layer.beta_class.assign(rng.normal(size=(classes, channels)).astype("float32"))
    layer.gamma_shared.assign(np.array([1.0, 2.0, 0.5], "float32"))
    layer.beta_shared.assign(np.array([0.1, -0.2, 0.3], "float32"))
    layer.moving_mean.assign(np.array([0.5, -1.0, 2.0], "float32"))
    layer.moving_variance.assign(np.array([4.0, 1.0, 0.25], "float32"))
    return layer


def test_inference_uses_the_row_of_the_true_class():
    layer = _layer()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 2, 2, 3)).astype("float32")
    y = np.array([3, 0, 2, 2, 1], "int32")
    out = layer([x, y], training=False).numpy()
    gc, bc = layer.gamma_class.numpy(), layer.beta_class.numpy()
    gs, bs = layer.gamma_shared.numpy(), layer.beta_shared.numpy()
    mean, var = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    for i, c in enumerate(y):
        want = (x[i] - mean) / np.sqrt(var + 1e-10) * (gc[c] + gs) + (bc[c] + bs)
        np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-5)
        wrong = (x[i] - mean) / np.sqrt(var + 1e-10) * (gc[(c + 1) % 4] + gs)
        assert np.abs(out[i] - wrong - (bc[c] + bs)).max() > 1e-3


def test_training_uses_batch_moments_and_updates_moving_averages():
    layer = _layer()
    x = np.random.default_rng(2).normal(3.0, 2.0, size=(6, 2, 2, 3)).astype("float32")
    y = np.zeros(6, "int32")
    old_mean = layer.moving_mean.numpy()
    old_var = layer.moving_variance.numpy()
    out = layer([x, y], training=True).numpy()
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    gamma = layer.gamma_class.numpy()[0] + layer.gamma_shared.numpy()
    beta = layer.beta_class.numpy()[0] + layer.beta_shared.numpy()
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-10) * gamma + beta,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.9 * old_mean + 0.1 * mean,
                               rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 * old_var + 0.1 * var,
                               rtol=1e-5)


def test_release_initialisation_and_serialization():
    layer = layers.ConditionalBatchNormalization(50, momentum=0.8, epsilon=1e-3)
    layer.build([(None, 4, 4, 200), (None,)])
    assert abs(layer.gamma_class.numpy().mean()) < 0.01
    assert abs(layer.gamma_class.numpy().std() - 0.02) < 0.005
    assert abs(layer.gamma_shared.numpy().mean() - 1.0) < 0.01
    assert not layer.beta_class.numpy().any() and not layer.beta_shared.numpy().any()
    assert len(layer.trainable_weights) == 4 and len(layer.non_trainable_weights) == 2
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert (clone.num_classes, clone.momentum, clone.epsilon) == (50, 0.8, 1e-3)
    tile = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layers.SpatialTile()))
    z = np.arange(6, dtype="float32").reshape(2, 3)
    out = tile([z, np.zeros((2, 4, 5, 7), "float32")]).numpy()
    assert out.shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(out[1, 3, 4], z[1])


@pytest.mark.parametrize("kwargs", [dict(num_classes=0), dict(num_classes=True),
                                    dict(num_classes=3, momentum=1.0),
                                    dict(num_classes=3, epsilon=0.0)])
def test_cbn_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        layers.ConditionalBatchNormalization(**kwargs)
