"""Tests for the `models` package: registry/build, parameter counts, shapes, release specifics."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tfadv import models
from tfadv.models.layers import PerImageStandardization
from tests.testing import TestCase

CIFAR = (32, 32, 3)
MNIST = (28, 28, 1)
DIGITS = (8, 8, 1)


# ------------------------------------------------------------------------------------------------
# Hand formulas. Convention: `trainable` = kernels + biases + BN gamma/beta (the published numbers,
# PyTorch's `parameters()`); Keras' `count_params()` also counts each BN's moving mean and variance,
# i.e. `trainable + 2 * (total BN channels)`.
# ------------------------------------------------------------------------------------------------

def conv(k, cin, cout, bias=False):
    return k * k * cin * cout + (cout if bias else 0)


def dense(fin, fout):
    return fin * fout + fout


def counts(trainable, bn_channels):
    """(trainable, count_params) given the trainable count and the summed BN channels."""
    return trainable, trainable + 2 * bn_channels


def madry_wrn_counts(depth, k, num_classes, in_ch=3):
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    params = conv(3, in_ch, 16)  # init_conv, no bias
    bn_ch = 0
    for stage in range(3):
        cin, cout = widths[stage], widths[stage + 1]
        for unit in range(n):
            c = cin if unit == 0 else cout
            params += conv(3, c, cout) + conv(3, cout, cout)  # conv1, conv2; shortcut has none
            bn_ch += c + cout  # bn1 (unit input), bn2
    bn_ch += widths[3]  # final_bn
    params += 2 * bn_ch + dense(widths[3], num_classes)
    return counts(params, bn_ch)


def trades_wrn_counts(depth, k, num_classes, in_ch=3):
    n = (depth - 4) // 6
    widths = [16, 16 * k, 32 * k, 64 * k]
    params = conv(3, in_ch, 16)
    bn_ch = 0
    for stage in range(3):
        cin, cout = widths[stage], widths[stage + 1]
        for unit in range(n):
            c = cin if unit == 0 else cout
            params += conv(3, c, cout) + conv(3, cout, cout)
            if c != cout:
                params += conv(1, c, cout)  # 1x1 shortcut conv, no bias
            bn_ch += c + cout
    bn_ch += widths[3]
    params += 2 * bn_ch + dense(widths[3], num_classes)
    return counts(params, bn_ch)


def cifar_resnet_counts(stem, widths, blocks, num_classes, projection, in_ch=3):
    params = conv(3, in_ch, stem)
    bn_ch = stem
    cin = stem
    for stage, (w, b) in enumerate(zip(widths, blocks)):
        for block in range(b):
            stride = 2 if (stage > 0 and block == 0) else 1
            params += conv(3, cin, w) + conv(3, w, w)
            bn_ch += 2 * w
            if projection and (stride != 1 or cin != w):
                params += conv(1, cin, w)  # 1x1 projection + its BN
                bn_ch += w
            cin = w
    params += 2 * bn_ch + dense(widths[-1], num_classes)
    return counts(params, bn_ch)


# (name, input_shape, kwargs, (trainable, count_params), published trainable or None)
PARAM_CASES = [
    # Madry WRN-34-10: 5 units/stage, widths 160/320/640; no shortcut params.
    ("madry_wrn34", CIFAR, {}, madry_wrn_counts(34, 10, 10), None),
    ("madry_wrn28", CIFAR, {}, madry_wrn_counts(28, 10, 10), None),
    ("trades_wrn34_10", CIFAR, {}, trades_wrn_counts(34, 10, 10), 46_160_474),
    ("resnet18_cifar", CIFAR, {},
     cifar_resnet_counts(64, (64, 128, 256, 512), (2, 2, 2, 2), 10, projection=True), 11_173_962),
    ("resnet20_cifar", CIFAR, {},
     cifar_resnet_counts(16, (16, 32, 64), (3, 3, 3), 10, projection=False), 269_722),
    # LeNet-5 on 28x28 ('same' c1): 28 -> 28 -> pool 14 -> 10 -> pool 5; 5*5*16 = 400 features.
    ("lenet5", MNIST, {}, counts(
        conv(5, 1, 6, True) + conv(5, 6, 16, True)
        + dense(5 * 5 * 16, 120) + dense(120, 84) + dense(84, 10), 0), None),
    # Madry MNIST: 28 -> pool 14 -> pool 7; 7*7*64 features.
    ("madry_mnist_cnn", MNIST, {}, counts(
        conv(5, 1, 32, True) + conv(5, 32, 64, True)
        + dense(7 * 7 * 64, 1024) + dense(1024, 10), 0), 3_274_634),
    # TRADES SmallCNN: 28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> pool 4; 4*4*64 features.
    ("trades_smallcnn", MNIST, {}, counts(
        conv(3, 1, 32, True) + conv(3, 32, 32, True) + conv(3, 32, 64, True)
        + conv(3, 64, 64, True) + dense(4 * 4 * 64, 200) + dense(200, 200) + dense(200, 10), 0),
     None),
    # FOSC MNIST: 'same' convs, 28 -> pool 14 -> pool 7; BN(32), BN(64).
    ("fosc_mnist_cnn", MNIST, {}, counts(
        conv(3, 1, 32, True) + 2 * 32 + conv(3, 32, 64, True) + 2 * 64
        + dense(7 * 7 * 64, 128) + dense(128, 10), 32 + 64), None),
    # FOSC CIFAR: 32 -> 16 -> 8 -> 4; 4*4*196 features; BN after all 6 convs and dense 256.
    ("fosc_cifar_cnn", CIFAR, {}, counts(
        conv(3, 3, 64, True) + conv(3, 64, 64, True) + conv(3, 64, 128, True)
        + conv(3, 128, 128, True) + conv(3, 128, 196, True) + conv(3, 196, 196, True)
        + 2 * (64 + 64 + 128 + 128 + 196 + 196) + dense(4 * 4 * 196, 256) + 2 * 256
        + dense(256, 10), 64 + 64 + 128 + 128 + 196 + 196 + 256), None),
    # Wong et al.'s MNIST net (Fast AT): 28 -> 14 -> 7 (k4 s2 p1); 7*7*32 features.
    ("wong_mnist_cnn", MNIST, {}, counts(
        conv(4, 1, 16, True) + conv(4, 16, 32, True) + dense(7 * 7 * 32, 100) + dense(100, 10), 0),
     166_406),
    # Digits CNN: 8 -> pool 4; 4*4*64 features.
    ("digits_cnn", DIGITS, {}, counts(
        conv(3, 1, 32, True) + conv(3, 32, 64, True) + dense(4 * 4 * 64, 128) + dense(128, 10), 0),
     None),
]

# Small variants for forward passes: (name, input_shape, kwargs, num_classes)
FORWARD_CASES = [
    ("madry_wrn", CIFAR, dict(depth=10, widen_factor=1), 10),
    ("madry_wrn", CIFAR, dict(depth=10, widen_factor=2, per_image_standardization=True), 7),
    ("trades_wrn", CIFAR, dict(depth=10, widen_factor=1), 10),
    ("resnet18_cifar", CIFAR, {}, 10),
    ("resnet20_cifar", CIFAR, {}, 10),
    ("resnet20_cifar", (28, 28, 1), {}, 4),
    ("lenet5", MNIST, {}, 10),
    ("lenet5", (32, 32, 1), dict(first_conv_padding="valid"), 10),
    ("madry_mnist_cnn", MNIST, {}, 10),
    ("madry_mnist_cnn", CIFAR, {}, 10),
    ("trades_smallcnn", MNIST, {}, 10),
    ("fosc_mnist_cnn", MNIST, {}, 10),
    ("fosc_cifar_cnn", CIFAR, {}, 10),
    ("wong_mnist_cnn", MNIST, {}, 10),
    ("wong_mnist_cnn", (5, 7, 3), {}, 4),
    ("digits_cnn", DIGITS, {}, 10),
    ("digits_cnn", (5, 7, 1), {}, 3),
]

# Small variants, expected (momentum, epsilon) of every BatchNormalization, or None if no BN.
BN_CASES = [
    ("madry_wrn", CIFAR, dict(depth=10, widen_factor=1), (0.9, 1e-3)),
    ("trades_wrn", CIFAR, dict(depth=10, widen_factor=1), (0.9, 1e-5)),
    ("resnet18_cifar", CIFAR, {}, (0.9, 1e-5)),
    ("resnet20_cifar", CIFAR, {}, (0.9, 1e-5)),
    ("fosc_mnist_cnn", MNIST, {}, (0.99, 1e-3)),
    ("fosc_cifar_cnn", CIFAR, {}, (0.99, 1e-3)),
    ("lenet5", MNIST, {}, None),
    ("madry_mnist_cnn", MNIST, {}, None),
    ("trades_smallcnn", MNIST, {}, None),
    ("wong_mnist_cnn", MNIST, {}, None),
    ("digits_cnn", DIGITS, {}, None),
]

ALL_NAMES = [
    "madry_wrn", "madry_wrn34", "madry_wrn28", "trades_wrn", "trades_wrn34_10", "resnet18_cifar",
    "resnet20_cifar", "lenet5", "madry_mnist_cnn", "trades_smallcnn", "fosc_mnist_cnn",
    "fosc_cifar_cnn", "wong_mnist_cnn", "digits_cnn", "resnet_imagenet", "resnet18_imagenet",
    "resnet50_imagenet", "resnet101_imagenet", "resnet152_imagenet", "rb_wrn_28_10", "rb_wrn_34_10", "dm_wrn",
    "dm_wrn_28_10", "dm_wrn_70_16", "preact_resnet18", "tv_resnet", "tv_resnet50",
]


def _trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _layers_of(model, cls):
    return [layer for layer in model.layers if isinstance(layer, cls)]


def _inbound(model, layer_name):
    """Names of the layers feeding `layer_name` (first call site)."""
    node = model.get_layer(layer_name)._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def _is_1x1_conv(layer):
    return isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1)


class ModelsTest(TestCase, parameterized.TestCase):

    # --- registry / build -------------------------------------------------------------------

    def test_names(self):
        self.assertEqual(sorted(models.names()), sorted(ALL_NAMES))

    def test_model_named_after_registry_entry_and_outputs_logits(self):
        model = models.build("Digits_CNN", num_classes=10, input_shape=DIGITS)
        self.assertEqual(model.name, "digits_cnn")
        self.assertIsInstance(model, keras.Model)
        last = model.layers[-1]
        self.assertIsInstance(last, keras.layers.Dense)
        self.assertEqual(last.activation.__name__, "linear")
        self.assertEqual(
            models.build("madry_wrn34", num_classes=10, input_shape=CIFAR, widen_factor=1).name,
            "madry_wrn34")
        custom = models.wide_resnet.madry_wrn(10, CIFAR, depth=10, widen_factor=1, name="custom")
        self.assertEqual(custom.name, "custom")

    def test_unknown_name(self):
        with self.assertRaisesRegex(ValueError, "Received"):
            models.build("resnet1000", num_classes=10, input_shape=CIFAR)

    @parameterized.parameters(1, 0, -3, 2.0, True, "10", None)
    def test_bad_num_classes(self, num_classes):
        with self.assertRaisesRegex(ValueError, "Received"):
            models.build("digits_cnn", num_classes=num_classes, input_shape=DIGITS)

    @parameterized.parameters(
        # one-element tuples: absl would otherwise unpack the shapes into arguments
        ((32, 32),), ((32, 32, 0),), ((32, -32, 3),), ((32.0, 32, 3),), ("32x32x3",), (None,),
        ((32, 32, 3, 1),), ((True, 8, 1),))
    def test_bad_input_shape(self, input_shape):
        with self.assertRaisesRegex(ValueError, "Received"):
            models.build("digits_cnn", num_classes=10, input_shape=input_shape)

    def test_input_too_small_or_bad_architecture_args(self):
        with self.assertRaisesRegex(ValueError, "Received"):
            models.build("trades_smallcnn", num_classes=10, input_shape=DIGITS)
        with self.assertRaisesRegex(ValueError, "Received"):
            models.build("madry_wrn", num_classes=10, input_shape=CIFAR, depth=33)
        with self.assertRaisesRegex(ValueError, "Received"):
            models.build("trades_wrn", num_classes=10, input_shape=CIFAR, widen_factor=0)
        with self.assertRaisesRegex(ValueError, "Received"):
            models.build("lenet5", num_classes=10, input_shape=MNIST, first_conv_padding="full")

    # --- parameter counts -------------------------------------------------------------------

    @parameterized.parameters(*PARAM_CASES)
    def test_parameter_counts(self, name, input_shape, kwargs, expected, published):
        model = models.build(name, num_classes=10, input_shape=input_shape, **kwargs)
        trainable, total = expected
        self.assertEqual(_trainable_count(model), trainable)
        self.assertEqual(model.count_params(), total)
        if published is not None:
            self.assertEqual(trainable, published)

    def test_madry_wrn34_10_count_literal(self):
        # Spelled out: stem 3*3*3*16; stage s first unit conv 3*3*c_in*c_out; other convs
        # 3*3*c*c; BN gamma+beta per channel; dense 640*10+10.
        stem = 3 * 3 * 3 * 16
        stage1 = (9 * 16 * 160 + 9 * 160 * 160) + 4 * (2 * 9 * 160 * 160)
        stage2 = (9 * 160 * 320 + 9 * 320 * 320) + 4 * (2 * 9 * 320 * 320)
        stage3 = (9 * 320 * 640 + 9 * 640 * 640) + 4 * (2 * 9 * 640 * 640)
        bn_channels = (16 + 160 + 4 * 2 * 160) + (160 + 320 + 4 * 2 * 320) \
            + (320 + 640 + 4 * 2 * 640) + 640
        fc = 640 * 10 + 10
        expected = stem + stage1 + stage2 + stage3 + 2 * bn_channels + fc
        self.assertEqual(expected, 45_901_914)
        self.assertEqual(madry_wrn_counts(34, 10, 10)[0], expected)
        # Madry = TRADES minus the three 1x1 shortcut convs (same BN layout).
        self.assertEqual(46_160_474 - (16 * 160 + 160 * 320 + 320 * 640), expected)

    # --- forward passes ---------------------------------------------------------------------

    @parameterized.parameters(*FORWARD_CASES)
    def test_forward_shape(self, name, input_shape, kwargs, num_classes):
        model = models.build(name, num_classes=num_classes, input_shape=input_shape, **kwargs)
        x = self.random_images((2,) + input_shape)
        for training in (False, True):
            y = model(x, training=training)
            self.assertEqual(tuple(y.shape), (2, num_classes))
            self.assertTrue(np.all(np.isfinite(keras.ops.convert_to_numpy(y))))

    # --- BatchNorm settings, no regularizers --------------------------------------------------

    @parameterized.parameters(*BN_CASES)
    def test_batchnorm_settings_and_no_regularizers(self, name, input_shape, kwargs, expected):
        model = models.build(name, num_classes=10, input_shape=input_shape, **kwargs)
        bns = _layers_of(model, keras.layers.BatchNormalization)
        if expected is None:
            self.assertEmpty(bns)
        else:
            self.assertNotEmpty(bns)
            for bn in bns:
                self.assertAllClose((bn.momentum, bn.epsilon), expected, rtol=0, atol=1e-12)
        for layer in model.layers:
            for attr in ("kernel_regularizer", "bias_regularizer"):
                self.assertIsNone(getattr(layer, attr, None), f"{layer.name}.{attr}")
        self.assertEmpty(model.losses)

    # --- Madry WRN specifics ------------------------------------------------------------------

    def test_madry_wrn_structure(self):
        model = models.build("madry_wrn", num_classes=10, input_shape=CIFAR, depth=16,
                             widen_factor=2)  # n = 2 units per stage
        self.assertEmpty([l.name for l in model.layers if _is_1x1_conv(l)])
        self.assertEmpty(_layers_of(model, keras.layers.ReLU))
        self.assertEmpty(_layers_of(model, PerImageStandardization))
        acts = _layers_of(model, keras.layers.LeakyReLU)
        self.assertLen(acts, 3 * 2 * 2 + 1)
        for act in acts:
            self.assertAllClose(act.negative_slope, 0.1)
        for conv_layer in _layers_of(model, keras.layers.Conv2D):
            self.assertFalse(conv_layer.use_bias)
            self.assertEqual(tuple(conv_layer.kernel_size), (3, 3))
        # Stage 1, unit 1: shortcut from the activated tensor (16 -> 32 channels, zero-padded).
        self.assertEqual(_inbound(model, "stage1_unit1_shortcut_pad"), ["stage1_unit1_act1"])
        self.assertEqual(model.get_layer("stage1_unit1_shortcut_pad").before, 8)
        self.assertEqual(model.get_layer("stage1_unit1_shortcut_pad").after, 8)
        # Other units: shortcut from the raw unit input; residual branch from the activated one.
        self.assertIn("stage1_unit1_add", _inbound(model, "stage1_unit2_add"))
        self.assertEqual(_inbound(model, "stage2_unit1_shortcut_pool"), ["stage1_unit2_add"])
        self.assertEqual(_inbound(model, "stage2_unit1_conv1"), ["stage2_unit1_act1"])
        self.assertEqual(_inbound(model, "stage2_unit1_bn1"), ["stage1_unit2_add"])
        pool = model.get_layer("stage3_unit1_shortcut_pool")
        self.assertEqual(tuple(pool.pool_size), (2, 2))
        self.assertEqual(tuple(pool.strides), (2, 2))

    def test_madry_wrn_aliases(self):
        m34 = models.build("madry_wrn34", num_classes=10, input_shape=CIFAR, widen_factor=1)
        m28 = models.build("madry_wrn28", num_classes=10, input_shape=CIFAR, widen_factor=1)
        self.assertIsNotNone(m34.get_layer("stage3_unit5_add"))
        self.assertIsNotNone(m28.get_layer("stage3_unit4_add"))
        self.assertNotIn("stage3_unit5_add", [l.name for l in m28.layers])
        self.assertEqual(m34.count_params(), madry_wrn_counts(34, 1, 10)[1])
        self.assertEqual(m28.count_params(), madry_wrn_counts(28, 1, 10)[1])

    def test_madry_wrn_per_image_standardization(self):
        model = models.build("madry_wrn", num_classes=10, input_shape=CIFAR, depth=10,
                             widen_factor=1, per_image_standardization=True)
        pis = _layers_of(model, PerImageStandardization)
        self.assertLen(pis, 1)
        self.assertEqual(_inbound(model, "init_conv"), [pis[0].name])
        x = self.random_images((4,) + CIFAR)
        logits = model(x, training=False)
        self.assertAllClose(model(2.0 * x - 1.0, training=False), logits, rtol=1e-4, atol=1e-4)
        self.assertAllClose(model(255.0 * x, training=False), logits, rtol=1e-4, atol=1e-4)
        # Without the layer the logits depend on the pixel range.
        plain = models.build("madry_wrn", num_classes=10, input_shape=CIFAR, depth=10,
                             widen_factor=1)
        self.assertNotAllClose(plain(2.0 * x - 1.0, training=False), plain(x, training=False))

    def test_per_image_standardization_layer(self):
        layer = PerImageStandardization()
        x = self.random_images((3, 5, 6, 2), low=0.0, high=255.0)
        x[2] = 7.0  # a constant image: stddev is clipped at 1/sqrt(N)
        x = tf.constant(x)
        self.assertAllClose(layer(x), tf.image.per_image_standardization(x), rtol=1e-5, atol=1e-5)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x) * tf.random.normal(x.shape, seed=1))
        grad = tape.gradient(y, x)
        self.assertTrue(np.all(np.isfinite(grad.numpy())))
        self.assertGreater(float(tf.reduce_max(tf.abs(grad[:2]))), 0.0)

    def test_custom_layers_serialize(self):
        model = models.build("madry_wrn", num_classes=10, input_shape=(16, 16, 3), depth=10,
                             widen_factor=1, per_image_standardization=True)
        clone = keras.Model.from_config(model.get_config())
        clone.set_weights(model.get_weights())
        x = self.random_images((2, 16, 16, 3))
        self.assertAllClose(clone(x, training=False), model(x, training=False))
        r20 = models.build("resnet20_cifar", num_classes=10, input_shape=CIFAR)
        self.assertEqual(keras.Model.from_config(r20.get_config()).count_params(),
                         r20.count_params())

    # --- TRADES WRN / ResNets -------------------------------------------------------------------

    def test_trades_wrn_structure(self):
        model = models.build("trades_wrn", num_classes=10, input_shape=CIFAR, depth=16,
                             widen_factor=2)
        shortcut_convs = [l for l in model.layers if _is_1x1_conv(l)]
        self.assertLen(shortcut_convs, 3)  # one per channel change
        self.assertEmpty(_layers_of(model, keras.layers.LeakyReLU))
        for stage in (1, 2, 3):
            prefix = f"block{stage}_layer1"
            # Both the 1x1 shortcut and the conv branch take the activated x.
            self.assertEqual(_inbound(model, f"{prefix}_shortcut_conv"), [f"{prefix}_relu1"])
            conv1_in = _inbound(model, f"{prefix}_conv1")[0]
            if stage > 1:  # stride-2 conv: explicit PyTorch-style padding first
                self.assertEqual(conv1_in, f"{prefix}_conv1_pad")
                conv1_in = _inbound(model, conv1_in)[0]
            self.assertEqual(conv1_in, f"{prefix}_relu1")
        # Equal widths: shortcut is the raw x.
        self.assertIn("block1_layer1_add", _inbound(model, "block1_layer2_add"))
        self.assertEmpty(_layers_of(model, keras.layers.Dropout))

    def test_resnet20_option_a(self):
        model = models.build("resnet20_cifar", num_classes=10, input_shape=CIFAR)
        self.assertEmpty([l.name for l in model.layers if _is_1x1_conv(l)])
        convs = _layers_of(model, keras.layers.Conv2D)
        self.assertLen(convs, 1 + 3 * 3 * 2)  # stem + 2 per block: 19 convs + fc = 20 layers
        pad = model.get_layer("layer2_block1_shortcut_pad")
        self.assertEqual((pad.before, pad.after), (8, 8))
        pad = model.get_layer("layer3_block1_shortcut_pad")
        self.assertEqual((pad.before, pad.after), (16, 16))
        # The option-A shortcut is exactly x[:, ::2, ::2, :] with zero channels around it.
        sub = keras.Model(model.input, model.get_layer("layer3_block1_shortcut_pad").output)
        feed = keras.Model(model.input, model.get_layer("layer2_block3_relu2").output)
        x = self.random_images((2,) + CIFAR)
        expected = np.pad(keras.ops.convert_to_numpy(feed(x, training=False))[:, ::2, ::2, :],
                          [(0, 0), (0, 0), (0, 0), (16, 16)])
        self.assertAllClose(sub(x, training=False), expected)

    def test_resnet18_projection_shortcuts(self):
        model = models.build("resnet18_cifar", num_classes=10, input_shape=CIFAR)
        self.assertLen([l for l in model.layers if _is_1x1_conv(l)], 3)
        self.assertEmpty(_layers_of(model, keras.layers.MaxPooling2D))
        self.assertEqual(model.get_layer("conv1").kernel.shape, (3, 3, 3, 64))


def test_madry_mnist_cnn_capacity_scale():
    """Madry et al.'s capacity study: 2c, 4c filters and 64c FC units (c=16 is the release)."""
    import pytest

    c = 8
    m = models.build("madry_mnist_cnn", num_classes=10, input_shape=(28, 28, 1), capacity=c)
    conv1 = 5 * 5 * 1 * 2 * c + 2 * c
    conv2 = 5 * 5 * 2 * c * 4 * c + 4 * c
    fc1 = 7 * 7 * 4 * c * 64 * c + 64 * c
    fc2 = 64 * c * 10 + 10
    assert m.count_params() == conv1 + conv2 + fc1 + fc2
    with pytest.raises(ValueError, match="Received: capacity=0"):
        models.build("madry_mnist_cnn", num_classes=10, input_shape=(28, 28, 1), capacity=0)
