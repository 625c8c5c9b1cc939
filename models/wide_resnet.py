"""Wide residual networks of the adversarial-training releases.

* :func:`madry_wrn` -- the WRN of Madry et al.'s ``MadryLab/cifar10_challenge`` (TF1), also used by
  Bilateral Adversarial Training (without the per-image standardization) and by the FOSC release.
* :func:`trades_wrn` -- the PyTorch ``WideResNet`` of ``yaodongyu/TRADES`` (``models/wideresnet.py``).

The two differ in their shortcuts (parameter-free avg-pool + channel zero-padding vs. 1x1 convs),
activation (leaky ReLU 0.1 vs. ReLU), which tensor feeds a channel-changing unit's shortcut, and
BatchNorm epsilon (TF1 1e-3 vs. PyTorch 1e-5). Both use BN momentum 0.9 (TF1 ``decay=0.9``, PyTorch
``momentum=0.1``).
"""

from __future__ import annotations

import keras

from tfadv.models.layers import (
    ChannelZeroPad,
    PerImageStandardization,
    channel_pad_amounts,
    check_spatial,
    conv_output_size,
    image_input,
    tf1_conv_init,
    torch_conv3x3,
    torch_default_kernel_init,
)

MADRY_BN_MOMENTUM = 0.9  # tf.contrib.layers.batch_norm(decay=0.9, ...)
MADRY_BN_EPSILON = 1e-3
MADRY_LEAKINESS = 0.1
TRADES_BN_MOMENTUM = 0.9  # PyTorch BatchNorm2d(momentum=0.1) == Keras momentum 0.9
TRADES_BN_EPSILON = 1e-5


def _check_wrn_args(model_name, depth, widen_factor):
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"Model '{model_name}' expects `depth` to be an int of the form 6 * n + 4 with n >= 1 "
            f"(e.g. 28 or 34). Received: depth={depth!r}."
        )
    if isinstance(widen_factor, bool) or not isinstance(widen_factor, int) or widen_factor < 1:
        raise ValueError(
            f"Model '{model_name}' expects `widen_factor` to be a positive int. "
            f"Received: widen_factor={widen_factor!r}."
        )
    return (depth - 4) // 6


def _check_three_stages(model_name, input_shape):
    size = min(input_shape[0], input_shape[1])
    for _ in range(2):
        size = conv_output_size(size, 3, 2, "same")
    check_spatial(model_name, input_shape, size)


# ------------------------------------------------------------------------------------------------
# Madry et al. (cifar10_challenge)
# ------------------------------------------------------------------------------------------------

def _madry_bn(name):
    return keras.layers.BatchNormalization(
        momentum=MADRY_BN_MOMENTUM, epsilon=MADRY_BN_EPSILON, name=name
    )


def _madry_act(name):
    return keras.layers.LeakyReLU(negative_slope=MADRY_LEAKINESS, name=name)


def _madry_conv(filters, stride, name):
    # TF1 'SAME' padding == Keras 'same' (also for stride 2). No biases.
    return keras.layers.Conv2D(
        filters,
        3,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer=tf1_conv_init(),
        name=name,
    )


def _madry_unit(x, out_filters, stride, activate_before_residual, prefix):
    in_filters = x.shape[-1]
    if activate_before_residual:
        # "shared_activation": the shortcut also starts from the activated tensor.
        x = _madry_bn(f"{prefix}_bn1")(x)
        x = _madry_act(f"{prefix}_act1")(x)
        shortcut = x
    else:
        # "residual_only_activation": the shortcut takes the raw input of the unit.
        shortcut = x
        x = _madry_bn(f"{prefix}_bn1")(x)
        x = _madry_act(f"{prefix}_act1")(x)
    x = _madry_conv(out_filters, stride, f"{prefix}_conv1")(x)
    x = _madry_bn(f"{prefix}_bn2")(x)
    x = _madry_act(f"{prefix}_act2")(x)
    x = _madry_conv(out_filters, 1, f"{prefix}_conv2")(x)

    if in_filters != out_filters:
        if stride > 1:
            # TF1 avg_pool(ksize=stride, strides=stride, 'VALID'). 'same' is identical for even
            # feature maps (all of CIFAR's) and keeps odd sizes consistent with the 'same' conv.
            shortcut = keras.layers.AveragePooling2D(
                pool_size=stride, strides=stride, padding="same", name=f"{prefix}_shortcut_pool"
            )(shortcut)
        before, after = channel_pad_amounts(in_filters, out_filters)
        shortcut = ChannelZeroPad(before, after, name=f"{prefix}_shortcut_pad")(shortcut)
    elif stride != 1:  # cannot happen in a WRN (widths double when strides are 2)
        raise ValueError(
            f"A Madry WRN unit with equal widths must have stride 1. Received: stride={stride!r}."
        )
    return keras.layers.Add(name=f"{prefix}_add")([x, shortcut])


def madry_wrn(
    num_classes,
    input_shape,
    *,
    depth=34,
    widen_factor=10,
    per_image_standardization=False,
    name="madry_wrn",
):
    """Madry et al.'s CIFAR wide ResNet (``MadryLab/cifar10_challenge``, ``model.py``; TF1).

    Follows the release: stem conv3x3 -> 16; three stages of ``(depth - 4) / 6`` pre-activation
    units (5 for ``depth=34``, the released model; 4 for ``depth=28``) with widths
    ``16 * widen_factor``, ``32 * widen_factor``, ``64 * widen_factor`` and strides 1/2/2.
    Unit: BN -> leaky-ReLU(0.1) -> conv3x3(stride) -> BN -> leaky-ReLU(0.1) -> conv3x3, no conv
    biases. Only the first unit of stage 1 takes its shortcut from the activated tensor; when the
    width changes the shortcut is avg-pool(stride) + symmetric channel zero-padding (no 1x1 conv).
    Head: BN -> leaky-ReLU(0.1) -> global average pool -> dense(num_classes) with bias, giving
    logits. BN momentum 0.9 (TF1 decay), epsilon 1e-3.

    Initialisation as released: conv kernels ``normal(0, sqrt(2 / (k*k*out_channels)))``; the dense
    kernel ``uniform_unit_scaling(factor=1)`` == ``VarianceScaling(1, fan_in, uniform)``; bias 0.

    Args:
        num_classes: number of logits.
        input_shape: ``(H, W, C)``.
        depth: ``6 * n + 4``; 34 is the released model (README says 32, old comments 28).
        widen_factor: width multiplier (10 in the release).
        per_image_standardization: apply ``tf.image.per_image_standardization`` as the first
            layer, inside the network (the release feeds [0, 255] pixels and does this; BAT feeds
            [-1, 1] pixels and does not).
        name: model name.
    """
    n = _check_wrn_args(name, depth, widen_factor)
    _check_three_stages(name, input_shape)
    widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    strides = [1, 2, 2]
    activate_before_residual = [True, False, False]

    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = inputs
    if per_image_standardization:
        x = PerImageStandardization(name="per_image_standardization")(x)
    x = _madry_conv(16, 1, "init_conv")(x)
    for stage, (width, stride, abr) in enumerate(zip(widths, strides, activate_before_residual), 1):
        x = _madry_unit(x, width, stride, abr, f"stage{stage}_unit1")
        for unit in range(2, n + 1):
            x = _madry_unit(x, width, 1, False, f"stage{stage}_unit{unit}")
    x = _madry_bn("final_bn")(x)
    x = _madry_act("final_act")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_avg_pool")(x)
    outputs = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "uniform"),
        bias_initializer="zeros",
        name="logits",
    )(x)
    return keras.Model(inputs, outputs, name=name)


def madry_wrn34(num_classes, input_shape, *, widen_factor=10, per_image_standardization=False,
                name="madry_wrn34"):
    """Madry et al.'s released WRN (cifar10_challenge): :func:`madry_wrn` with ``depth=34``."""
    return madry_wrn(num_classes, input_shape, depth=34, widen_factor=widen_factor,
                     per_image_standardization=per_image_standardization, name=name)


def madry_wrn28(num_classes, input_shape, *, widen_factor=10, per_image_standardization=False,
                name="madry_wrn28"):
    """Madry et al.'s WRN (cifar10_challenge) at ``depth=28`` (4 units per stage), e.g. BAT's WRN-28-10."""
    return madry_wrn(num_classes, input_shape, depth=28, widen_factor=widen_factor,
                     per_image_standardization=per_image_standardization, name=name)


# ------------------------------------------------------------------------------------------------
# TRADES (yaodongyu/TRADES, models/wideresnet.py)
# ------------------------------------------------------------------------------------------------

def _trades_bn(name):
    return keras.layers.BatchNormalization(
        momentum=TRADES_BN_MOMENTUM, epsilon=TRADES_BN_EPSILON, name=name
    )


def _trades_block(x, out_planes, stride, drop_rate, prefix):
    in_planes = x.shape[-1]
    equal_in_out = in_planes == out_planes
    if equal_in_out and stride != 1:  # cannot happen in a WRN (widths double when strides are 2)
        raise ValueError(
            f"A TRADES BasicBlock with equal widths must have stride 1. Received: stride={stride!r}."
        )
    if equal_in_out:
        out = _trades_bn(f"{prefix}_bn1")(x)
        out = keras.layers.ReLU(name=f"{prefix}_relu1")(out)
        shortcut = x
    else:
        # Channel change: BN-ReLU is applied to x itself, and both the conv branch and the
        # 1x1-conv shortcut take that activated x.
        x = _trades_bn(f"{prefix}_bn1")(x)
        x = keras.layers.ReLU(name=f"{prefix}_relu1")(x)
        out = x
        shortcut = keras.layers.Conv2D(
            out_planes,
            1,
            strides=stride,
            padding="valid",
            use_bias=False,
            kernel_initializer=tf1_conv_init(),
            name=f"{prefix}_shortcut_conv",
        )(x)
    out = torch_conv3x3(out, out_planes, stride, f"{prefix}_conv1", kernel_initializer=tf1_conv_init())
    out = _trades_bn(f"{prefix}_bn2")(out)
    out = keras.layers.ReLU(name=f"{prefix}_relu2")(out)
    if drop_rate > 0:
        out = keras.layers.Dropout(drop_rate, name=f"{prefix}_dropout")(out)
    out = torch_conv3x3(out, out_planes, 1, f"{prefix}_conv2", kernel_initializer=tf1_conv_init())
    return keras.layers.Add(name=f"{prefix}_add")([shortcut, out])


def trades_wrn(num_classes, input_shape, *, depth=34, widen_factor=10, drop_rate=0.0,
               mean=None, std=None, name="trades_wrn"):
    """TRADES' PyTorch WideResNet (``yaodongyu/TRADES``, ``models/wideresnet.py``).

    Stem conv3x3 -> 16 (no bias); three ``NetworkBlock`` stages of ``(depth - 4) / 6`` BasicBlocks,
    widths ``16/32/64 * widen_factor``, strides 1/2/2; ReLU. BasicBlock: if in == out,
    ``out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + x``; otherwise ``x = relu(bn1(x))`` and both the
    conv branch and a 1x1 stride-s conv shortcut (no bias) take that activated x. Dropout 0 as
    released. Head: BN -> ReLU -> average pool -> linear (logits). BN momentum 0.9 (PyTorch 0.1),
    epsilon 1e-5.

    Initialisation as released: conv ``normal(0, sqrt(2 / (k*k*out_channels)))``, linear bias 0,
    linear weight PyTorch default ``U(+-1/sqrt(fan_in))``.

    Deviations: the release's unused ``sub_block1`` (defined, never called in ``forward``) is left
    out, so the trainable count is the well-known 46,160,474 for WRN-34-10; the head uses global
    average pooling (``F.avg_pool2d(out, 8)`` on 32x32 inputs is the same thing); stride-2 3x3
    convs pad one pixel on every side, as PyTorch's ``padding=1``.

    ``mean`` and ``std`` (both or neither) standardise the input inside the network
    (:class:`~tfadv.models.layers.Standardize`), as RobustBench models that normalise in
    ``forward`` do; the TRADES release does not.
    """
    n = _check_wrn_args(name, depth, widen_factor)
    _check_three_stages(name, input_shape)
    widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    strides = [1, 2, 2]

    inputs, x = image_input(input_shape, mean, std)
    x = torch_conv3x3(x, 16, 1, "conv1", kernel_initializer=tf1_conv_init())
    for stage, (width, stride) in enumerate(zip(widths, strides), 1):
        for unit in range(1, n + 1):
            x = _trades_block(x, width, stride if unit == 1 else 1, drop_rate,
                              f"block{stage}_layer{unit}")
    x = _trades_bn("final_bn")(x)
    x = keras.layers.ReLU(name="final_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_avg_pool")(x)
    outputs = keras.layers.Dense(
        num_classes,
        kernel_initializer=torch_default_kernel_init(),
        bias_initializer="zeros",
        name="logits",
    )(x)
    return keras.Model(inputs, outputs, name=name)


def trades_wrn34_10(num_classes, input_shape, *, drop_rate=0.0, name="trades_wrn34_10"):
    """TRADES' released CIFAR model: :func:`trades_wrn` with ``depth=34, widen_factor=10``."""
    return trades_wrn(num_classes, input_shape, depth=34, widen_factor=10, drop_rate=drop_rate,
                      name=name)


__all__ = ["madry_wrn", "madry_wrn34", "madry_wrn28", "trades_wrn", "trades_wrn34_10"]
