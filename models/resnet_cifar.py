"""CIFAR ResNets (post-activation BasicBlocks, PyTorch BatchNorm settings).

* :func:`resnet18_cifar` -- the common CIFAR ResNet-18 (``kuangliu/pytorch-cifar``, ``models/resnet.py``).
* :func:`resnet20_cifar` -- He et al. 2016 (arXiv:1512.03385, Sec. 4.2) ResNet-20 with option-A
  shortcuts, as in the PyTorch ``cifar_resnets.resnet20`` used as the L2L-DA CIFAR classifier.

Both use BN momentum 0.9 / epsilon 1e-5 (PyTorch ``BatchNorm2d`` defaults) and pad stride-2 3x3
convs one pixel on every side (PyTorch ``padding=1``).
"""

from __future__ import annotations

import keras

from tfadv.models.layers import (
    ChannelZeroPad,
    SpatialSubsample,
    channel_pad_amounts,
    check_spatial,
    conv_output_size,
    kaiming_normal_init,
    torch_conv3x3,
    torch_default_bias_init,
    torch_default_kernel_init,
)

BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BN_EPSILON = 1e-5


def _bn(name):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _check_stages(model_name, input_shape, num_stride2):
    size = min(input_shape[0], input_shape[1])
    for _ in range(num_stride2):
        size = conv_output_size(size, 3, 2, "same")
    check_spatial(model_name, input_shape, size)


def _basic_block(x, planes, stride, prefix, shortcut_type, kernel_init):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
    in_planes = x.shape[-1]
    out = torch_conv3x3(x, planes, stride, f"{prefix}_conv1", kernel_initializer=kernel_init)
    out = _bn(f"{prefix}_bn1")(out)
    out = keras.layers.ReLU(name=f"{prefix}_relu1")(out)
    out = torch_conv3x3(out, planes, 1, f"{prefix}_conv2", kernel_initializer=kernel_init)
    out = _bn(f"{prefix}_bn2")(out)

    shortcut = x
    if stride != 1 or in_planes != planes:
        if shortcut_type == "A":
            # He et al.'s option A: subsample and zero-pad the extra channels (no parameters).
            if stride != 1:
                shortcut = SpatialSubsample(stride, name=f"{prefix}_shortcut_subsample")(shortcut)
            before, after = channel_pad_amounts(in_planes, planes)
            shortcut = ChannelZeroPad(before, after, name=f"{prefix}_shortcut_pad")(shortcut)
        else:
            # Option B: 1x1 conv (stride, no bias) + BN projection.
            shortcut = keras.layers.Conv2D(
                planes,
                1,
                strides=stride,
                padding="valid",
                use_bias=False,
                kernel_initializer=kernel_init,
                name=f"{prefix}_shortcut_conv",
            )(shortcut)
            shortcut = _bn(f"{prefix}_shortcut_bn")(shortcut)
    out = keras.layers.Add(name=f"{prefix}_add")([out, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_relu2")(out)


def _cifar_resnet(num_classes, input_shape, *, stem_width, widths, blocks, shortcut_type,
                  kernel_init, name):
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = torch_conv3x3(inputs, stem_width, 1, "conv1", kernel_initializer=kernel_init)
    x = _bn("bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    for stage, (width, num_blocks) in enumerate(zip(widths, blocks), 1):
        for block in range(1, num_blocks + 1):
            stride = 2 if (stage > 1 and block == 1) else 1
            x = _basic_block(x, width, stride, f"layer{stage}_block{block}", shortcut_type,
                             kernel_init)
    x = keras.layers.GlobalAveragePooling2D(name="global_avg_pool")(x)
    outputs = keras.layers.Dense(
        num_classes,
        kernel_initializer=kernel_init,
        bias_initializer=torch_default_bias_init(widths[-1]),
        name="logits",
    )(x)
    return keras.Model(inputs, outputs, name=name)


def resnet18_cifar(num_classes, input_shape, *, name="resnet18_cifar"):
    """CIFAR ResNet-18 as in ``kuangliu/pytorch-cifar`` (``models/resnet.py``, ``ResNet18``).

    conv3x3 64 stem (stride 1, no max-pool) -> BN -> ReLU; four stages of 2 BasicBlocks with
    64/128/256/512 filters, strides 1/2/2/2; projection shortcuts (1x1 conv, no bias, + BN) where
    the shape changes; global average pool (``avg_pool2d(out, 4)`` on 32x32 inputs) -> linear.
    BN momentum 0.9, epsilon 1e-5. No explicit init in the release, so PyTorch's defaults are
    mirrored (weights and linear bias ``U(+-1/sqrt(fan_in))``). 11,173,962 trainable parameters for
    10 classes.
    """
    _check_stages(name, input_shape, 3)
    return _cifar_resnet(
        num_classes,
        input_shape,
        stem_width=64,
        widths=(64, 128, 256, 512),
        blocks=(2, 2, 2, 2),
        shortcut_type="B",
        kernel_init=torch_default_kernel_init(),
        name=name,
    )


def resnet20_cifar(num_classes, input_shape, *, name="resnet20_cifar"):
    """He et al. 2016's CIFAR ResNet-20 (arXiv:1512.03385 Sec. 4.2), option-A shortcuts.

    Follows the PyTorch ``cifar_resnets.resnet20`` used by L2L-DA's CIFAR classifier: conv3x3 16
    stem -> BN -> ReLU; 3 stages x 3 BasicBlocks with 16/32/64 filters, strides 1/2/2; option-A
    shortcuts ``x[:, ::2, ::2, :]`` + symmetric zero channel padding (no 1x1 conv); global average
    pool -> linear. BN momentum 0.9, epsilon 1e-5; conv and linear weights ``kaiming_normal``
    (fan_in), linear bias PyTorch default. 269,722 trainable parameters for 10 classes.

    Deviation: L2L-DA's ``Classifier`` wrapper normalises CIFAR inputs with ImageNet mean/std before
    this network; that normalisation is not part of the model here (models are pixel-range agnostic).
    """
    _check_stages(name, input_shape, 2)
    return _cifar_resnet(
        num_classes,
        input_shape,
        stem_width=16,
        widths=(16, 32, 64),
        blocks=(3, 3, 3),
        shortcut_type="A",
        kernel_init=kaiming_normal_init(),
        name=name,
    )


__all__ = ["resnet18_cifar", "resnet20_cifar"]
