"""ImageNet ResNets as in facebookresearch/ImageNet-Adversarial-Training (``resnet_model.py``),
the code BAT's ImageNet experiments follow (BAT ICCV sec. 5 "Implementation Details", Table 9:
ResNet-50/101/152).

* Stem: conv 7x7/2 (64) -> BN -> ReLU -> max-pool 3x3/2 ("same" padding, TF style).
* Four groups of residual blocks, widths 64/128/256/512 (x ``width / 64``), strides 1/2/2/2.
  Bottleneck (depth 50/101/152, ``NUM_BLOCKS``): 1x1 -> BN-ReLU -> 3x3 (stride here, "ResNet v1.5"
  as in "ImageNet in 1 Hour" sec. 5.1) -> BN-ReLU -> 1x1 (4x) -> BN with **gamma initialised to 0**
  ("ImageNet in 1 Hour" sec. 5.1, tensorpack ``get_bn(zero_init=True)``); shortcut = identity, or
  1x1 conv (stride) + BN when the channel count changes; ``relu(block + shortcut)``.
  Basic blocks (depth 18/34, for small CPU runs): 3x3 (stride) -> BN-ReLU -> 3x3 -> BN (gamma 0).
* Head: global average pool -> dense ``num_classes`` (weights N(0, 0.01), bias 0).
* Convs have no bias, He init ``VarianceScaling(2, fan_out)`` (TF1's truncated normal); BN momentum
  0.9, epsilon 1e-5 (tensorpack ``BatchNorm`` defaults).

Inputs are images in [-1,1] (the release's ``image*2/255 - 1``, nothing else); outputs are logits.
Built from Keras layers: keras-cv's ``ResNetBackbone`` strides the first 1x1 conv (v1) and cannot
zero-initialise the last BN gamma, so it does not fit this architecture.
"""

from __future__ import annotations

import keras

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
NUM_BLOCKS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
BOTTLENECK_DEPTHS = (50, 101, 152)
GROUP_STRIDES = (1, 2, 2, 2)
#: Name suffix of each residual block's last BN (gamma initialised to zero).
LAST_BN = "_last_bn"


def _conv(x, filters, kernel, stride, name):
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal"),
        name=name)(x)


def _bn(x, name, zero_gamma=False):
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones", name=name)(x)


def _shortcut(x, filters, stride, prefix):
    if x.shape[-1] == filters:
        return x
    return _bn(_conv(x, filters, 1, stride, f"{prefix}_convshortcut"), f"{prefix}_convshortcut_bn")


def _bottleneck(x, filters, stride, prefix):
    shortcut = _shortcut(x, filters * 4, stride, prefix)
    h = keras.layers.ReLU(name=f"{prefix}_relu1")(_bn(_conv(x, filters, 1, 1, f"{prefix}_conv1"),
                                                       f"{prefix}_conv1_bn"))
    h = keras.layers.ReLU(name=f"{prefix}_relu2")(_bn(_conv(h, filters, 3, stride, f"{prefix}_conv2"),
                                                       f"{prefix}_conv2_bn"))
    h = _bn(_conv(h, filters * 4, 1, 1, f"{prefix}_conv3"), f"{prefix}{LAST_BN}", zero_gamma=True)
    return keras.layers.ReLU(name=f"{prefix}_out")(keras.layers.Add(name=f"{prefix}_add")([h, shortcut]))


def _basic(x, filters, stride, prefix):
    shortcut = _shortcut(x, filters, stride, prefix)
    h = keras.layers.ReLU(name=f"{prefix}_relu1")(_bn(_conv(x, filters, 3, stride, f"{prefix}_conv1"),
                                                       f"{prefix}_conv1_bn"))
    h = _bn(_conv(h, filters, 3, 1, f"{prefix}_conv2"), f"{prefix}{LAST_BN}", zero_gamma=True)
    return keras.layers.ReLU(name=f"{prefix}_out")(keras.layers.Add(name=f"{prefix}_add")([h, shortcut]))


def last_block_bn_names(model):
    """Names of the BN layers closing each residual block (their gamma is initialised to zero)."""
    return [layer.name for layer in model.layers if layer.name.endswith(LAST_BN)]


def resnet_imagenet(num_classes, input_shape, *, depth=50, width=64, name="resnet_imagenet"):
    """The tensorpack ImageNet ResNet of ``depth`` (18, 34, 50, 101, 152) and base ``width``.

    Every layer pads "same", so any input size works (a 32x32 input ends in a 1x1 feature map).

    Raises:
        ValueError: unknown depth or non-positive width.
    """
    if depth not in NUM_BLOCKS:
        raise ValueError(f"Expected `depth` in {sorted(NUM_BLOCKS)}. Received: depth={depth!r}.")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"Expected `width` to be a positive int. Received: width={width!r}.")
    block = _bottleneck if depth in BOTTLENECK_DEPTHS else _basic
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = keras.layers.ReLU(name="conv0_relu")(_bn(_conv(inputs, width, 7, 2, "conv0"), "conv0_bn"))
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool0")(x)
    for group, (count, stride) in enumerate(zip(NUM_BLOCKS[depth], GROUP_STRIDES)):
        filters = width * 2 ** group
        for i in range(count):
            x = block(x, filters, stride if i == 0 else 1, f"group{group}_block{i}")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        bias_initializer="zeros", name="linear")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet50_imagenet(num_classes, input_shape, *, name="resnet50_imagenet", **kwargs):
    return resnet_imagenet(num_classes, input_shape, depth=50, name=name, **kwargs)


def resnet101_imagenet(num_classes, input_shape, *, name="resnet101_imagenet", **kwargs):
    return resnet_imagenet(num_classes, input_shape, depth=101, name=name, **kwargs)


def resnet152_imagenet(num_classes, input_shape, *, name="resnet152_imagenet", **kwargs):
    return resnet_imagenet(num_classes, input_shape, depth=152, name=name, **kwargs)


def resnet18_imagenet(num_classes, input_shape, *, name="resnet18_imagenet", **kwargs):
    return resnet_imagenet(num_classes, input_shape, depth=18, name=name, **kwargs)
