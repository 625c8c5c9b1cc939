"""PyTorch state dicts of RobustBench's architectures -> the weights of tfadv's Keras twins.

    from tfadv.interop import state_dict, weight_files
    tensors, normalization = weight_files.unwrap(weight_files.read("model.safetensors"))
    network = state_dict.build("dm_wrn_70_16", tensors, normalization=normalization)

Each architecture of :data:`ARCHITECTURES` is a model of :mod:`tfadv.models` whose layers are named
after the PyTorch modules, and a list of renaming rules from a Keras layer name to the module path
(``layer1_block0_conv_0`` -> ``layer.1.block.0.conv_0``). Every Keras layer with weights takes the
tensors of its module:

* ``Conv2D``: ``weight`` OIHW -> kernel HWIO (``bias`` if the layer has one);
* ``Dense``: ``weight`` (out, in) -> kernel (in, out), ``bias``;
* ``BatchNormalization``: ``weight``, ``bias``, ``running_mean``, ``running_var`` -> gamma, beta,
  moving mean and variance (``num_batches_tracked`` is ignored).

Keys the network needs and the state dict lacks, keys it has and the network does not use, and
shapes that differ are all reported before any weight is set.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from tfadv import models

#: State dict keys that carry no weight of the network (BatchNorm's step counter).
IGNORED_SUFFIXES = (".num_batches_tracked",)
_BLOCK = (r"^(layer\d+)_(\d+)_(.+)$", r"\1.\2.\3")
_SEQUENTIAL = (r"^(.+)_(shortcut|downsample)_(\d+)$", r"\1_\2.\3")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A Keras model of :mod:`tfadv.models` and how its layer names become PyTorch module paths.

    Attributes:
        model: the registry name the network is built from.
        rules: ``(pattern, replacement)`` pairs of :func:`re.sub`, applied in order to a Keras
            layer name to give the PyTorch module path.
        num_classes_key: the key whose first dimension is the number of classes.
        input_shape: the default ``(H, W, C)``.
        pytorch: the PyTorch definition it mirrors (for messages and docs).
    """

    model: str
    rules: tuple
    num_classes_key: str
    input_shape: tuple
    pytorch: str

    def torch_name(self, layer_name: str) -> str:
        for pattern, replacement in self.rules:
            layer_name = re.sub(pattern, replacement, layer_name)
        return layer_name


_RB_WRN_RULES = ((r"^block(\d)_layer(\d+)_(.+)$",
                  lambda m: f"block{m[1]}.layer.{int(m[2]) - 1}.{m[3]}"),
                 (r"\.shortcut_conv$", ".convShortcut"), (r"^final_bn$", "bn1"),
                 (r"^logits$", "fc"))
_DM_RULES = ((r"^layer(\d)_block(\d+)_(.+)$", r"layer.\1.block.\2.\3"),)
_CIFAR = (32, 32, 3)

#: ``--arch`` name -> :class:`Architecture`.
ARCHITECTURES = {
    "rb_wrn": Architecture("trades_wrn", _RB_WRN_RULES, "fc.weight", _CIFAR,
                           "RobustBench WideResNet(depth, widen_factor)"),
    "rb_wrn_28_10": Architecture("rb_wrn_28_10", _RB_WRN_RULES, "fc.weight", _CIFAR,
                                 "RobustBench WideResNet(depth=28, widen_factor=10)"),
    "rb_wrn_34_10": Architecture("rb_wrn_34_10", _RB_WRN_RULES, "fc.weight", _CIFAR,
                                 "RobustBench WideResNet(depth=34, widen_factor=10)"),
    "dm_wrn_28_10": Architecture("dm_wrn_28_10", _DM_RULES, "logits.weight", _CIFAR,
                                 "RobustBench DMWideResNet(depth=28, width=10)"),
    "dm_wrn_70_16": Architecture("dm_wrn_70_16", _DM_RULES, "logits.weight", _CIFAR,
                                 "RobustBench DMWideResNet(depth=70, width=16)"),
    "dm_wrn": Architecture("dm_wrn", _DM_RULES, "logits.weight", _CIFAR,
                           "RobustBench DMWideResNet(depth, width)"),
    "preact_resnet18": Architecture("preact_resnet18", (_SEQUENTIAL, _BLOCK), "linear.weight",
                                    _CIFAR, "RobustBench PreActResNet(PreActBlock, [2, 2, 2, 2])"),
    "tv_resnet50": Architecture("tv_resnet50", (_SEQUENTIAL, _BLOCK), "fc.weight", (224, 224, 3),
                                "torchvision resnet50"),
    "tv_resnet": Architecture("tv_resnet", (_SEQUENTIAL, _BLOCK), "fc.weight", (224, 224, 3),
                              "torchvision ResNet(Bottleneck, blocks)"),
}


def get_architecture(name: str) -> Architecture:
    key = str(name).strip().lower()
    if key not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture for a PyTorch state dict. Expected one of: "
                         f"{', '.join(sorted(ARCHITECTURES))}. Received: arch={name!r}.")
    return ARCHITECTURES[key]


def num_classes_of(arch: Architecture, tensors) -> int:
    """The number of classes, from the shape of the classifier's weight in the state dict."""
    weight = tensors.get(arch.num_classes_key)
    if not isinstance(weight, np.ndarray) or weight.ndim != 2:
        raise ValueError(f"The state dict has no classifier weight '{arch.num_classes_key}' of "
                         f"{arch.pytorch}, so the number of classes is unknown; is it another "
                         f"architecture? Received: keys {sorted(tensors)[:8]}...")
    return int(weight.shape[0])


def build(name, tensors, *, input_shape=None, normalization=None, model_kwargs=None):
    """The Keras network of architecture ``name`` with the weights of the state dict ``tensors``.

    Args:
        name: a key of :data:`ARCHITECTURES`.
        tensors: ``{key: ndarray}`` (``tfadv.interop.weight_files.unwrap``'s first value).
        input_shape: ``(H, W, C)``; the architecture's default when None.
        normalization: ``(mean, std)`` to standardise inside the network, overriding the
            architecture's default; None keeps the default.
        model_kwargs: further options of the model builder (``activation="relu"``, ...).

    Raises:
        ValueError: unknown architecture, or a state dict that does not fit the network.
    """
    arch = get_architecture(name)
    kwargs = dict(model_kwargs or {})
    if normalization is not None:
        kwargs["mean"], kwargs["std"] = normalization
    network = models.build(arch.model, num_classes=num_classes_of(arch, tensors),
                           input_shape=tuple(input_shape or arch.input_shape), **kwargs)
    load(network, arch, tensors)
    return network


def _expected(layer, prefix):
    """[(state dict key, variable, transform)] of one Keras layer."""
    kind = type(layer).__name__
    if kind == "Conv2D":
        pairs = [("weight", layer.kernel, (2, 3, 1, 0))]
        if layer.use_bias:
            pairs.append(("bias", layer.bias, None))
    elif kind == "Dense":
        pairs = [("weight", layer.kernel, (1, 0))]
        if layer.use_bias:
            pairs.append(("bias", layer.bias, None))
    elif kind == "BatchNormalization" and layer.scale and layer.center:
        pairs = [("weight", layer.gamma, None), ("bias", layer.beta, None),
                 ("running_mean", layer.moving_mean, None),
                 ("running_var", layer.moving_variance, None)]
    else:
        raise ValueError(f"No PyTorch state dict mapping for the {kind} layer {layer.name!r}. "
                         f"Received: a layer with {len(layer.weights)} weights.")
    return [(f"{prefix}.{suffix}", variable, axes) for suffix, variable, axes in pairs]


def load(network, arch: Architecture, tensors) -> None:
    """Sets every weight of ``network`` from the state dict ``tensors`` (see the module docstring).

    Nothing is assigned unless every key matches and every shape fits.

    Raises:
        ValueError: missing keys, unexpected keys or shape mismatches, all listed.
    """
    plan = [item for layer in network.layers if layer.weights
            for item in _expected(layer, arch.torch_name(layer.name))]
    needed = {key for key, _, _ in plan}
    present = {k for k in tensors if not k.endswith(IGNORED_SUFFIXES)}
    missing, unexpected = sorted(needed - present), sorted(present - needed)
    shapes = []
    for key, variable, axes in plan:
        if key in present:
            value = np.asarray(tensors[key])
            value = value.transpose(axes) if axes is not None and value.ndim == len(axes) else value
            if tuple(value.shape) != tuple(variable.shape):
                shapes.append(f"{key}: expected {tuple(variable.shape)} (Keras layout), "
                              f"got {tuple(value.shape)}")
    if missing or unexpected or shapes:
        parts = [f"{label} ({len(items)}): {items[:10]}{' ...' if len(items) > 10 else ''}"
                 for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                      ("shape mismatches", shapes)) if items]
        raise ValueError(f"The state dict does not fit {arch.model} ({arch.pytorch}): "
                         f"{'; '.join(parts)}. Received: a state dict of {len(present)} tensors.")
    for key, variable, axes in plan:
        value = np.asarray(tensors[key], np.float32)
        variable.assign(value.transpose(axes) if axes is not None else value)


def to_state_dict(network, name) -> dict:
    """The mapping run backwards: ``{key: ndarray}`` in PyTorch's layout, the state dict of the
    network's PyTorch twin (``torch.nn.Module.load_state_dict`` takes it after ``torch.from_numpy``;
    BatchNorm's ``num_batches_tracked`` is left out)."""
    arch = get_architecture(name)
    out = {}
    for layer in network.layers:
        if layer.weights:
            for key, variable, axes in _expected(layer, arch.torch_name(layer.name)):
                value = np.asarray(variable.numpy())
                out[key] = np.ascontiguousarray(value.transpose(np.argsort(axes)) if axes is not None
                                                else value)
    return out


__all__ = ["ARCHITECTURES", "Architecture", "build", "get_architecture", "load", "num_classes_of",
           "to_state_dict"]
