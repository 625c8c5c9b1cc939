"""The wide ResNets of RobustBench's CIFAR leaderboards, as Keras networks that take its weights.

* :func:`rb_wrn_28_10`, :func:`rb_wrn_34_10` -- RobustBench's ``WideResNet``
  (``robustbench/model_zoo/architectures/wide_resnet.py``, "based on code from TRADES"): the layout
  of :func:`tfadv.models.wide_resnet.trades_wrn`, which they are.
* :func:`dm_wrn` (``dm_wrn_28_10``, ``dm_wrn_70_16``) -- DeepMind's ``DMWideResNet`` (Gowal et al.
  2020, "Uncovering the limits of adversarial training"; Rebuffi et al. 2021), RobustBench's
  ``dm_wide_resnet.py``: the input is standardised inside the network (``(x - mean) / std``), the
  activation is ReLU or Swish (``x * sigmoid(x)``), and a stride-2 conv pads the bottom and right
  only (TensorFlow's ``SAME``), the left and top never.

Layer names follow the PyTorch modules' paths (``layer.1.block.0.conv_0`` is ``layer1_block0_conv_0``)
so that :mod:`tfadv.interop.state_dict` maps a state dict onto the network.
"""

from __future__ import annotations

import keras

from tfadv.models import layers
from tfadv.models.wide_resnet import trades_wrn

CIFAR10_MEAN, CIFAR10_STD = layers.CIFAR10_MEAN_STD
ACTIVATIONS = ("relu", "swish")


def rb_wrn_28_10(num_classes, input_shape, *, mean=None, std=None, name="rb_wrn_28_10"):
    """RobustBench's ``WideResNet(depth=28, widen_factor=10)`` (Carmon et al. 2019, Wang et al.
    2020, ...): :func:`~tfadv.models.wide_resnet.trades_wrn` with ``depth=28``. 36,479,194
    trainable parameters for 10 classes. ``mean``/``std``: input standardisation inside the
    network, for the entries whose ``forward`` normalises (none by default)."""
    return trades_wrn(num_classes, input_shape, depth=28, widen_factor=10, mean=mean, std=std,
                      name=name)


def rb_wrn_34_10(num_classes, input_shape, *, mean=None, std=None, name="rb_wrn_34_10"):
    """RobustBench's ``WideResNet(depth=34, widen_factor=10)`` (TRADES, MART, AWP, ...):
    :func:`~tfadv.models.wide_resnet.trades_wrn` with ``depth=34``; 46,160,474 trainable parameters
    for 10 classes."""
    return trades_wrn(num_classes, input_shape, depth=34, widen_factor=10, mean=mean, std=std,
                      name=name)


def _check(model_name, input_shape, depth, width, activation):
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"Model '{model_name}' expects `depth` to be an int of the form 6 * n + 4 "
                         f"with n >= 1 (e.g. 28 or 70). Received: depth={depth!r}.")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"Model '{model_name}' expects `width` to be a positive int. "
                         f"Received: width={width!r}.")
    if activation not in ACTIVATIONS:
        raise ValueError(f"Model '{model_name}' expects `activation` in {ACTIVATIONS}. "
                         f"Received: activation={activation!r}.")
    if input_shape[0] % 4 or input_shape[1] % 4:
        # As the release: a stride-2 block's 3x3 branch (padded bottom/right) and its 1x1
        # shortcut only agree in size on even feature maps.
        raise ValueError(f"Model '{model_name}' needs a height and width divisible by 4 (two "
                         f"stride-2 groups). Received: input_shape={tuple(input_shape)!r}.")
    size = min(input_shape[0], input_shape[1])
    for _ in range(2):
        size = layers.conv_output_size(size + 1, 3, 2)  # pad bottom/right by one, then a valid conv
    layers.check_spatial(model_name, input_shape, size)
    return (depth - 4) // 6


def _act(activation, name):
    if activation == "swish":
        return keras.layers.Activation("silu", name=name)  # x * sigmoid(x), DeepMind's Swish
    return keras.layers.ReLU(name=name)


def _conv(filters, kernel, stride, name, padding="valid"):
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                               kernel_initializer=layers.torch_default_kernel_init(), name=name)


def _block(x, out_planes, stride, activation, prefix):
    """DeepMind's ``_Block``: pre-activation; when the width changes the 1x1 shortcut (stride s)
    takes the activated input, else the shortcut is the raw input."""
    has_shortcut = x.shape[-1] != out_planes
    if not has_shortcut and stride != 1:  # cannot happen in a WRN (widths change with strides)
        raise ValueError(f"A DMWideResNet block with equal widths must have stride 1. "
                         f"Received: stride={stride!r}.")
    out = _act(activation, f"{prefix}_relu_0")(layers.torch_batch_norm(f"{prefix}_batchnorm_0")(x))
    if has_shortcut:
        x = out
    if stride == 1:  # F.pad(v, (1, 1, 1, 1)): Keras' "same"
        out = _conv(out_planes, 3, 1, f"{prefix}_conv_0", padding="same")(out)
    else:  # F.pad(v, (0, 1, 0, 1)): bottom and right only, whatever the input size
        out = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{prefix}_pad_0")(out)
        out = _conv(out_planes, 3, stride, f"{prefix}_conv_0")(out)
    out = _act(activation, f"{prefix}_relu_1")(layers.torch_batch_norm(f"{prefix}_batchnorm_1")(out))
    out = _conv(out_planes, 3, 1, f"{prefix}_conv_1", padding="same")(out)
    shortcut = _conv(out_planes, 1, stride, f"{prefix}_shortcut")(x) if has_shortcut else x
    return keras.layers.Add(name=f"{prefix}_add")([shortcut, out])


def dm_wrn(num_classes, input_shape, *, depth=28, width=10, activation="swish",
           mean=CIFAR10_MEAN, std=CIFAR10_STD, name="dm_wrn"):
    """DeepMind's ``DMWideResNet`` (RobustBench ``dm_wide_resnet.py``).

    ``(x - mean) / std`` (inside the network: pass ``mean=None, std=None`` for none) -> conv3x3 16
    ``init_conv`` -> three groups (``layer.0..2``) of ``(depth - 4) / 6`` blocks, widths
    ``16/32/64 * width``, strides 1/2/2 -> BN -> activation -> global average pool -> linear
    ``logits``. Block: ``a = act(bn_0(x))``; ``conv_1(act(bn_1(conv_0(pad(a)))))`` plus ``x``, or
    plus a 1x1 conv of ``a`` with the block's stride when the width changes; a stride-2 ``conv_0``
    pads one pixel at the bottom and right (``F.pad(v, (0, 1, 0, 1))``). BN epsilon 1e-5. Swish is
    ``x * sigmoid(x)`` (the top entries: Gowal et al. 2020, Rebuffi et al. 2021); ReLU the others.
    WRN-70-16 has 266,796,506 trainable parameters for 10 classes, WRN-28-10 36,479,194.

    Deviations: the head averages globally where the release's ``F.avg_pool2d(out, 8)`` assumes
    32x32 inputs (the same there); the release's ``padding`` option (input zero padding before the
    normalisation, 0 in every RobustBench entry but a few CIFAR-100/ImageNet ones) is absent.
    """
    n = _check(name, input_shape, depth, width, activation)
    inputs, x = layers.image_input(input_shape, mean, std)
    x = _conv(16, 3, 1, "init_conv", padding="same")(x)
    for group, (planes, stride) in enumerate(zip((16 * width, 32 * width, 64 * width), (1, 2, 2))):
        for i in range(n):
            x = _block(x, planes, stride if i == 0 else 1, activation, f"layer{group}_block{i}")
    x = _act(activation, "relu")(layers.torch_batch_norm("batchnorm")(x))
    x = keras.layers.GlobalAveragePooling2D(name="global_avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=layers.torch_default_kernel_init(),
                                 bias_initializer=layers.torch_default_bias_init(64 * width),
                                 name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def dm_wrn_28_10(num_classes, input_shape, *, activation="swish", mean=CIFAR10_MEAN,
                 std=CIFAR10_STD, name="dm_wrn_28_10"):
    """:func:`dm_wrn` with ``depth=28, width=10`` (e.g. Gowal et al. 2020's WRN-28-10)."""
    return dm_wrn(num_classes, input_shape, depth=28, width=10, activation=activation, mean=mean,
                  std=std, name=name)


def dm_wrn_70_16(num_classes, input_shape, *, activation="swish", mean=CIFAR10_MEAN,
                 std=CIFAR10_STD, name="dm_wrn_70_16"):
    """:func:`dm_wrn` with ``depth=70, width=16`` (Gowal et al. 2020, Rebuffi et al. 2021: the top
    of RobustBench's CIFAR-10 Linf leaderboard)."""
    return dm_wrn(num_classes, input_shape, depth=70, width=16, activation=activation, mean=mean,
                  std=std, name=name)


__all__ = ["dm_wrn", "dm_wrn_28_10", "dm_wrn_70_16", "rb_wrn_28_10", "rb_wrn_34_10"]
