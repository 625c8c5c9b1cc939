"""Keras -> PyTorch conversion of small CNNs, for cross-checking tfadv's attacks with torchattacks.

    from tfadv.interop import torch_port
    torch_net = torch_port.to_torch(keras_network)            # NCHW float32 -> logits, eval mode
    torch_net = torch_port.with_unit_input(torch_net, "[-1,1]")  # takes [0,1] images (torchattacks)

The PyTorch network is built layer by layer from a Keras functional (or Sequential) model whose
layers form a single chain from its one input to its one output, and computes the same function
(inference mode) on NCHW inputs:

* ``Conv2D`` (channels_last, no dilation/groups): kernel HWIO -> OIHW. ``'same'`` padding is TF's
  (``pad = max((ceil(n/s)-1)*s + k - n, 0)``, the odd pixel at the bottom/right), applied with an
  explicit ``ZeroPad2d`` when asymmetric; ``'valid'`` is PyTorch's padding 0.
* ``MaxPooling2D``: ``'same'`` pads with -inf (TF ignores padded positions), ``'valid'`` floors.
* ``BatchNormalization`` (on the channel axis, inference statistics, Keras' epsilon).
* ``Flatten``: PyTorch's ``nn.Flatten`` on NCHW (the native layout); the following ``Dense`` layer
  (and any ``BatchNormalization`` in between) has its input rows permuted from Keras' NHWC flatten
  order to NCHW order, so no transpose sits in the PyTorch network.
* ``Dense`` on flat features; ``ReLU`` / ``Activation('relu'|'linear')`` and the ``relu``/
  ``linear`` activations of Conv2D/Dense; ``Dropout`` (identity in inference);
  ``GlobalAveragePooling2D``; nested chain models.

Anything else (residual connections, other activations, softmax outputs, ...) raises
:class:`UnsupportedLayerError` naming the layer. The layer converters are
:mod:`tfadv.interop.torch_layers`; this module walks the model and assembles them. Requires PyTorch
(the ``crosscheck`` extra).
"""

from __future__ import annotations

from typing import List, Sequence

import keras
import numpy as np

try:
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("tfadv.interop.torch_port needs PyTorch, which is not part of tfadv's core "
                      "install: pip install 'tfadv[crosscheck]' (torch==2.13.0 and torchattacks)."
                      ) from e

from tfadv import ranges as ranges_lib
from tfadv.interop import torch_layers
from tfadv.interop.torch_layers import UnsupportedLayerError, same_padding


# ------------------------------------------------------------------------------------------------
# Small modules.


class UnitRangeInput(nn.Module):
    """Maps images in [0,1] to ``[low, high]`` before the wrapped network (torchattacks wants [0,1])."""

    def __init__(self, net: nn.Module, low: float, high: float):
        super().__init__()
        self.net = net
        self.low = float(low)
        self.width = float(high) - float(low)

    def forward(self, x):
        return self.net(x * self.width + self.low)


def with_unit_input(net: nn.Module, pixel_range) -> nn.Module:
    """``net`` itself for a ``[0,1]`` model; else ``net`` behind the affine map [0,1] -> range.

    An eps of ``e`` in [0,1] units is then ``e * width`` in the model's units (e.g. 2e in [-1,1]),
    the same convention as tfadv's pixel-level flags.
    """
    rng = ranges_lib.get_range(pixel_range)
    if rng.low == 0.0 and rng.high == 1.0:
        return net
    return UnitRangeInput(net, rng.low, rng.high).eval()


# ------------------------------------------------------------------------------------------------
# Graph walk.


def _chain(model: keras.Model) -> List[keras.layers.Layer]:
    """The model's layers from input to output, checking they form one chain of single-input layers."""
    if isinstance(model, keras.Sequential):
        return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    inputs = model.inputs if isinstance(model.inputs, (list, tuple)) else [model.inputs]
    outputs = model.outputs if isinstance(model.outputs, (list, tuple)) else [model.outputs]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedLayerError(
            f"Only single-input, single-output models can be converted. Received: model "
            f"{model.name!r} with {len(inputs)} inputs and {len(outputs)} outputs.")
    input_id = id(inputs[0])
    layers = []
    tensor = outputs[0]
    for _ in range(100_000):
        if id(tensor) == input_id:
            break
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            raise UnsupportedLayerError(f"Cannot trace model {model.name!r}: a tensor has no history.")
        layer = history.operation
        node = layer._inbound_nodes[history.node_index]
        parents = list(node.input_tensors)
        if isinstance(layer, keras.layers.InputLayer):
            break
        if len(parents) != 1:
            raise UnsupportedLayerError(
                f"Only chains of single-input layers can be converted (no residual or merge "
                f"layers). Received: layer {layer.name!r} ({type(layer).__name__}) with "
                f"{len(parents)} inputs in model {model.name!r}.")
        layers.append(layer)
        tensor = parents[0]
    else:  # pragma: no cover
        raise UnsupportedLayerError(f"Model {model.name!r} is too deep to trace.")
    return layers[::-1]


def _convert_layers(model, layout, out):
    for layer in _chain(model):
        if isinstance(layer, keras.Model):
            _convert_layers(layer, layout, out)
            continue
        torch_layers.convert_layer(layer, layout, out, model_name=model.name)


class TorchPort(nn.Sequential):
    """The converted network: NCHW float32 images -> logits (``.keras_name`` records the source)."""

    keras_name: str = ""
    input_shape_chw: Sequence[int] = ()


def to_torch(network: keras.Model) -> TorchPort:
    """Builds a PyTorch network computing ``network(x, training=False)`` on NCHW inputs.

    Returns the network in eval mode, float32 on the CPU; its parameters are copies (later
    changes to the Keras weights are not reflected).

    Raises:
        UnsupportedLayerError: a layer or topology that cannot be converted exactly.
        TypeError: ``network`` is not a Keras model.
    """
    if not isinstance(network, keras.Model):
        raise TypeError(f"Expected a keras.Model (the network, not a SavedModel). Received: "
                        f"{type(network).__name__}.")
    try:
        in_shape = tuple(network.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        in_shape = None
    if in_shape is None or len(in_shape) != 4:
        raise UnsupportedLayerError(f"Expected a built model with image inputs (N, H, W, C). "
                                    f"Received: input shape {in_shape!r}.")
    layout = torch_layers.Layout()
    modules: list = []
    _convert_layers(network, layout, modules)
    if layout.rank != 2:
        raise UnsupportedLayerError(f"The model must end in flat logits (N, classes). Received: "
                                    f"model {network.name!r} ending in a rank-4 tensor.")
    port = TorchPort()
    seen = set()
    for name, module in modules:
        key = name.replace(".", "_") or "layer"
        while key in seen:
            key += "_"
        seen.add(key)
        port.add_module(key, module)
    port.keras_name = network.name
    port.input_shape_chw = (int(in_shape[3]), int(in_shape[1]), int(in_shape[2]))
    for p in port.parameters():
        p.requires_grad_(False)
    return port.float().eval()


# ------------------------------------------------------------------------------------------------
# Layout helpers.


def nhwc_to_nchw(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))


def nchw_to_nhwc(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1))


def torch_logits(net: nn.Module, x_nhwc, batch_size: int = 1000) -> np.ndarray:
    """Logits of the PyTorch network for NHWC NumPy images (no gradient)."""
    x = nhwc_to_nchw(np.asarray(x_nhwc, np.float32))
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(net(torch.from_numpy(x[i:i + batch_size])).numpy())
    return np.concatenate(outs) if outs else np.zeros([0, 0], np.float32)


__all__ = ["UnsupportedLayerError", "TorchPort", "UnitRangeInput", "to_torch", "with_unit_input",
           "same_padding", "nhwc_to_nchw", "nchw_to_nhwc", "torch_logits"]
