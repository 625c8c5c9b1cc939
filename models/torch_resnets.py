"""PyTorch ResNets of RobustBench's leaderboards, as Keras networks that take their weights.

* :func:`preact_resnet18` -- RobustBench's ``PreActResNet18`` / ``PreActResNet(PreActBlock, [2, 2,
  2, 2], bn_before_fc, out_shortcut)`` (``robustbench/model_zoo/architectures/resnet.py``; Wong et
  al. 2020, Rice et al. 2020, Andriushchenko & Flammarion 2020, ...).
* :func:`tv_resnet50` (:func:`tv_resnet`) -- torchvision's ``resnet50`` (ImageNet; "v1.5": the
  stride sits in the 3x3 conv), which RobustBench's ImageNet entries wrap in ``normalize_model``.

Layer names follow the PyTorch modules' paths (``layer2.0.shortcut.0`` is ``layer2_0_shortcut_0``)
so that :mod:`tfadv.interop.state_dict` maps a state dict onto the network. Every conv pads as
PyTorch does (``padding=k // 2`` on every side, also with stride 2).
"""

from __future__ import annotations

import keras

from tfadv.models.layers import (
    IMAGENET_MEAN_STD,
    check_spatial,
    image_input,
    kaiming_normal_init,
    torch_batch_norm,
    torch_conv3x3,
    torch_default_bias_init,
    torch_default_kernel_init,
)

IMAGENET_MEAN, IMAGENET_STD = IMAGENET_MEAN_STD
RESNET50_BLOCKS = (3, 4, 6, 3)


def _bn(x, name):
    return torch_batch_norm(name)(x)


def _conv1x1(x, filters, stride, name, kernel_initializer):
    return keras.layers.Conv2D(filters, 1, strides=stride, padding="valid", use_bias=False,
                               kernel_initializer=kernel_initializer, name=name)(x)


def _check_size(model_name, input_shape, num_halvings):
    size = min(input_shape[0], input_shape[1])
    for _ in range(num_halvings):
        size = (size + 1) // 2  # a k x k conv padded k // 2, stride 2
    check_spatial(model_name, input_shape, size)


def _preact_block(x, planes, stride, out_shortcut, prefix):
    """RobustBench's ``PreActBlock``: ``conv2(relu(bn2(conv1(a)))) + shortcut`` with
    ``a = relu(bn1(x))``; the shortcut is ``x``, or a 1x1 conv (stride) of ``x`` (of ``a`` with
    ``out_shortcut``) when the shape changes."""
    init = torch_default_kernel_init()
    out = keras.layers.ReLU(name=f"{prefix}_relu1")(_bn(x, f"{prefix}_bn1"))
    shortcut = x
    if stride != 1 or x.shape[-1] != planes:
        shortcut = _conv1x1(out if out_shortcut else x, planes, stride, f"{prefix}_shortcut_0", init)
    out = torch_conv3x3(out, planes, stride, f"{prefix}_conv1", kernel_initializer=init)
    out = keras.layers.ReLU(name=f"{prefix}_relu2")(_bn(out, f"{prefix}_bn2"))
    out = torch_conv3x3(out, planes, 1, f"{prefix}_conv2", kernel_initializer=init)
    return keras.layers.Add(name=f"{prefix}_add")([out, shortcut])


def preact_resnet18(num_classes, input_shape, *, bn_before_fc=False, out_shortcut=False,
                    mean=None, std=None, name="preact_resnet18"):
    """RobustBench's pre-activation ResNet-18 (``PreActResNet(PreActBlock, [2, 2, 2, 2])``).

    conv3x3 64 ``conv1`` -> four stages ``layer1..4`` of two pre-activation blocks, widths
    64/128/256/512, strides 1/2/2/2 -> (``bn_before_fc``: BN ``bn`` -> ReLU) -> global average pool
    (``F.avg_pool2d(out, 4)`` on 32x32 inputs) -> linear ``linear``. ``out_shortcut``: the 1x1
    shortcut convs take the activated input (as ``PreActBlock(out_shortcut=True)``). ``mean``/``std``
    standardise the input inside the network (Wong et al. 2020's ``mu``/``sigma``). RobustBench's
    ``PreActResNet18()`` is ``bn_before_fc=False, out_shortcut=False``; 11,171,146 trainable
    parameters for 10 classes (11,172,170 with ``bn``).
    """
    _check_size(name, input_shape, 3)
    inputs, x = image_input(input_shape, mean, std)
    x = torch_conv3x3(x, 64, 1, "conv1", kernel_initializer=torch_default_kernel_init())
    for stage, (planes, stride) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2)), 1):
        for i in range(2):
            x = _preact_block(x, planes, stride if i == 0 else 1, out_shortcut, f"layer{stage}_{i}")
    if bn_before_fc:
        x = keras.layers.ReLU(name="relu")(_bn(x, "bn"))
    x = keras.layers.GlobalAveragePooling2D(name="global_avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=torch_default_kernel_init(),
                                 bias_initializer=torch_default_bias_init(512), name="linear")(x)
    return keras.Model(inputs, outputs, name=name)


def _bottleneck(x, planes, stride, prefix):
    """torchvision's ``Bottleneck``: ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) +
    identity)``, the stride in the 3x3 ``conv2``; ``identity`` is ``downsample`` (1x1 conv with the
    stride, then BN) when the shape changes."""
    init = kaiming_normal_init()
    identity = x
    if stride != 1 or x.shape[-1] != planes * 4:
        identity = _bn(_conv1x1(x, planes * 4, stride, f"{prefix}_downsample_0", init),
                       f"{prefix}_downsample_1")
    out = keras.layers.ReLU(name=f"{prefix}_relu1")(_bn(_conv1x1(x, planes, 1, f"{prefix}_conv1",
                                                                 init), f"{prefix}_bn1"))
    out = torch_conv3x3(out, planes, stride, f"{prefix}_conv2", kernel_initializer=init)
    out = keras.layers.ReLU(name=f"{prefix}_relu2")(_bn(out, f"{prefix}_bn2"))
    out = _bn(_conv1x1(out, planes * 4, 1, f"{prefix}_conv3", init), f"{prefix}_bn3")
    return keras.layers.ReLU(name=f"{prefix}_relu3")(keras.layers.Add(name=f"{prefix}_add")([out,
                                                                                           identity]))


def tv_resnet(num_classes, input_shape, *, blocks=RESNET50_BLOCKS, width=64, mean=IMAGENET_MEAN,
              std=IMAGENET_STD, name="tv_resnet"):
    """torchvision's bottleneck ``ResNet`` with ``blocks`` per stage and base ``width``.

    ``(x - mean) / std`` inside the network (ImageNet's by default, as RobustBench's
    ``normalize_model``; ``mean=None, std=None`` for none) -> conv7x7/2 ``conv1`` (pad 3) -> BN
    ``bn1`` -> ReLU -> max-pool 3x3/2 (pad 1) -> four stages ``layer1..4`` of bottlenecks, widths
    ``width * (1, 2, 4, 8)`` (x4 out), strides 1/2/2/2 -> global average pool -> linear ``fc``.
    Conv weights ``kaiming_normal`` (fan_out in torchvision; irrelevant once weights are loaded).
    """
    if (not isinstance(blocks, (tuple, list)) or len(blocks) != 4
            or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in blocks)):
        raise ValueError(f"Model '{name}' expects `blocks` to be 4 positive ints. "
                         f"Received: blocks={blocks!r}.")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"Model '{name}' expects `width` to be a positive int. "
                         f"Received: width={width!r}.")
    _check_size(name, input_shape, 5)
    inputs, x = image_input(input_shape, mean, std)
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = keras.layers.Conv2D(width, 7, strides=2, padding="valid", use_bias=False,
                            kernel_initializer=kaiming_normal_init(), name="conv1")(x)
    x = keras.layers.ReLU(name="relu")(_bn(x, "bn1"))
    # Zero padding equals PyTorch's -inf padding here: the inputs are ReLU outputs (>= 0) and
    # every window holds at least one of them.
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)
    for stage, count in enumerate(blocks, 1):
        for i in range(count):
            x = _bottleneck(x, width * 2 ** (stage - 1), 2 if stage > 1 and i == 0 else 1,
                            f"layer{stage}_{i}")
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=torch_default_kernel_init(),
                                 bias_initializer=torch_default_bias_init(x.shape[-1]),
                                 name="fc")(x)
    return keras.Model(inputs, outputs, name=name)


def tv_resnet50(num_classes, input_shape, *, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                name="tv_resnet50"):
    """torchvision's ``resnet50`` (:func:`tv_resnet` with blocks 3/4/6/3, width 64): 25,557,032
    trainable parameters for 1000 classes."""
    return tv_resnet(num_classes, input_shape, blocks=RESNET50_BLOCKS, width=64, mean=mean,
                     std=std, name=name)


__all__ = ["preact_resnet18", "tv_resnet", "tv_resnet50"]
