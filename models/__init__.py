"""Network architectures of the adversarial-training releases, built by name.

    from tfadv import models
    model = models.build("madry_wrn34", num_classes=10, input_shape=(32, 32, 3))

Every model is a Keras functional model mapping float images ``(N, H, W, C)`` to logits (no
softmax), named after the registry entry it was built from, with no kernel regularizers (weight
decay is the training code's business) and no assumption on the pixel range.
"""

from __future__ import annotations

import numbers

from tfadv.registry import Registry

from tfadv.models import layers, lenet, resnet_cifar, small_cnns, wide_resnet
from tfadv.models import dm_wide_resnet, resnet_imagenet, torch_resnets

REGISTRY = Registry("model")

# name(s) -> builder. Each builder has the signature
# ``builder(num_classes, input_shape, *, <architecture kwargs>, name=...)``.
REGISTRY.register("madry_wrn")(wide_resnet.madry_wrn)
REGISTRY.register("madry_wrn34")(wide_resnet.madry_wrn34)
REGISTRY.register("madry_wrn28")(wide_resnet.madry_wrn28)
REGISTRY.register("trades_wrn")(wide_resnet.trades_wrn)
REGISTRY.register("trades_wrn34_10")(wide_resnet.trades_wrn34_10)
REGISTRY.register("resnet18_cifar")(resnet_cifar.resnet18_cifar)
REGISTRY.register("resnet20_cifar")(resnet_cifar.resnet20_cifar)
REGISTRY.register("lenet5")(lenet.lenet5)
REGISTRY.register("madry_mnist_cnn")(small_cnns.madry_mnist_cnn)
REGISTRY.register("wong_mnist_cnn")(small_cnns.wong_mnist_cnn)
REGISTRY.register("trades_smallcnn")(small_cnns.trades_smallcnn)
REGISTRY.register("fosc_mnist_cnn")(small_cnns.fosc_mnist_cnn)
REGISTRY.register("fosc_cifar_cnn")(small_cnns.fosc_cifar_cnn)
REGISTRY.register("digits_cnn")(small_cnns.digits_cnn)
# ImageNet ResNets (tensorpack ImageNet-Adversarial-Training; BAT ICCV Table 9).
REGISTRY.register("resnet_imagenet")(resnet_imagenet.resnet_imagenet)
REGISTRY.register("resnet18_imagenet")(resnet_imagenet.resnet18_imagenet)
REGISTRY.register("resnet50_imagenet")(resnet_imagenet.resnet50_imagenet)
REGISTRY.register("resnet101_imagenet")(resnet_imagenet.resnet101_imagenet)
REGISTRY.register("resnet152_imagenet")(resnet_imagenet.resnet152_imagenet)
# RobustBench's PyTorch layouts, whose state dicts tfadv.interop.state_dict (tfadv-import-torch) maps.
REGISTRY.register("rb_wrn_28_10")(dm_wide_resnet.rb_wrn_28_10)
REGISTRY.register("rb_wrn_34_10")(dm_wide_resnet.rb_wrn_34_10)
REGISTRY.register("dm_wrn")(dm_wide_resnet.dm_wrn)
REGISTRY.register("dm_wrn_28_10")(dm_wide_resnet.dm_wrn_28_10)
REGISTRY.register("dm_wrn_70_16")(dm_wide_resnet.dm_wrn_70_16)
REGISTRY.register("preact_resnet18")(torch_resnets.preact_resnet18)
REGISTRY.register("tv_resnet")(torch_resnets.tv_resnet)
REGISTRY.register("tv_resnet50")(torch_resnets.tv_resnet50)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_num_classes(num_classes):
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(
            "Expected `num_classes` to be an int >= 2. "
            f"Received: num_classes={num_classes!r}."
        )
    return int(num_classes)


def _check_input_shape(input_shape):
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(_is_int(d) and d > 0 for d in input_shape)
    ):
        raise ValueError(
            "Expected `input_shape` to be a tuple of 3 positive ints (height, width, channels). "
            f"Received: input_shape={input_shape!r}."
        )
    return tuple(int(d) for d in input_shape)


def names():
    """Sorted list of the registered model names (aliases included)."""
    return list(REGISTRY.names())


def build(name, *, num_classes, input_shape, **kwargs):
    """Builds the model registered as `name`.

    Args:
        name: a registry name (case-insensitive), see :func:`names`.
        num_classes: number of logits, an int >= 2.
        input_shape: ``(height, width, channels)``, positive ints.
        **kwargs: architecture options of that builder (e.g. ``depth``, ``widen_factor``,
            ``per_image_standardization`` for ``madry_wrn``). The model is named after the
            registry entry (call the builder function directly for another name).

    Returns:
        A freshly initialised ``keras.Model`` producing logits.

    Raises:
        ValueError: unknown name, bad `num_classes` or `input_shape`, or an input too small for
            the architecture.
    """
    factory = REGISTRY.lookup(name)
    num_classes = _check_num_classes(num_classes)
    input_shape = _check_input_shape(input_shape)
    return factory(num_classes, input_shape, name=name.strip().lower(), **kwargs)


__all__ = ["REGISTRY", "build", "names", "layers"]
