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
:class:`UnsupportedLayerError` naming the layer. Requires PyTorch (the ``crosscheck`` extra).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

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


class UnsupportedLayerError(ValueError):
    """The Keras model holds a layer (or a topology) the converter cannot reproduce exactly."""


# ------------------------------------------------------------------------------------------------
# Padding arithmetic (TF's 'SAME').


def same_padding(size: int, kernel: int, stride: int):
    """TF 'SAME' padding of one spatial dimension: ``(before, after)``; the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(in_hw, kernel, strides, padding):
    """Returns (top, bottom, left, right) for 'same' / 'valid'."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding != "same":
        raise UnsupportedLayerError(f"Unsupported padding. Expected 'same' or 'valid'. "
                                    f"Received: padding={padding!r}.")
    if in_hw[0] is None or in_hw[1] is None:
        raise UnsupportedLayerError("'same' padding needs a static spatial input shape to compute "
                                    f"TF's padding amounts. Received: spatial shape={in_hw!r}.")
    top, bottom = same_padding(int(in_hw[0]), int(kernel[0]), int(strides[0]))
    left, right = same_padding(int(in_hw[1]), int(kernel[1]), int(strides[1]))
    return top, bottom, left, right


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


def _input_shape(layer) -> tuple:
    """The (static) input shape of ``layer``'s first call, batch dimension included."""
    node = layer._inbound_nodes[0]
    return tuple(node.input_tensors[0].shape)


def _activation_module(activation, layer) -> Optional[nn.Module]:
    name = getattr(activation, "__name__", str(activation))
    if name == "linear":
        return None
    if name == "relu":
        return nn.ReLU()
    raise UnsupportedLayerError(
        f"Unsupported activation {name!r} in layer {layer.name!r} ({type(layer).__name__}); "
        f"supported: relu, linear (the network must output logits).")


def _np(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class _State:
    """Layout of the tensor flowing between layers in the PyTorch network."""

    def __init__(self):
        self.rank = 4              # 4: NCHW images; 2: (N, features)
        self.perm = None           # for rank 2: torch feature i = keras feature perm[i]


def _check_channels_last(layer):
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt != "channels_last":
        raise UnsupportedLayerError(f"Only channels_last layers are supported. Received: layer "
                                    f"{layer.name!r} with data_format={fmt!r}.")


def _convert_conv(layer, state, out):
    _check_channels_last(layer)
    if state.rank != 4:
        raise UnsupportedLayerError(f"Conv2D {layer.name!r} on a flat input is not supported.")
    if tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1:
        raise UnsupportedLayerError(f"Conv2D {layer.name!r}: dilation and groups are not supported. "
                                    f"Received: dilation_rate={layer.dilation_rate}, "
                                    f"groups={getattr(layer, 'groups', 1)}.")
    kernel = _np(layer.kernel)                       # (kh, kw, in, out)
    kh, kw, cin, cout = kernel.shape
    in_shape = _input_shape(layer)
    top, bottom, left, right = _pads(in_shape[1:3], (kh, kw), layer.strides, layer.padding)
    padding = 0
    if (top, left) == (bottom, right):
        padding = (top, left)
    else:
        out.append((f"{layer.name}_pad", nn.ZeroPad2d((left, right, top, bottom))))
    conv = nn.Conv2d(cin, cout, (kh, kw), stride=tuple(layer.strides), padding=padding,
                     bias=bool(layer.use_bias))
    with torch.no_grad():
        conv.weight.copy_(_tensor(kernel.transpose(3, 2, 0, 1)))
        if layer.use_bias:
            conv.bias.copy_(_tensor(_np(layer.bias)))
    out.append((layer.name, conv))
    act = _activation_module(layer.activation, layer)
    if act is not None:
        out.append((f"{layer.name}_relu", act))


def _convert_dense(layer, state, out):
    if state.rank != 2:
        raise UnsupportedLayerError(
            f"Dense {layer.name!r} is applied to a rank-4 tensor; only Dense layers on flat "
            f"features (after Flatten or global pooling) are supported.")
    kernel = _np(layer.kernel)                       # (in, out)
    if state.perm is not None:
        kernel = kernel[state.perm]                  # rows in NCHW flatten order
    linear = nn.Linear(kernel.shape[0], kernel.shape[1], bias=bool(layer.use_bias))
    with torch.no_grad():
        linear.weight.copy_(_tensor(kernel.T))
        if layer.use_bias:
            linear.bias.copy_(_tensor(_np(layer.bias)))
    out.append((layer.name, linear))
    state.perm = None
    act = _activation_module(layer.activation, layer)
    if act is not None:
        out.append((f"{layer.name}_relu", act))


def _convert_pool(layer, state, out):
    _check_channels_last(layer)
    if state.rank != 4:
        raise UnsupportedLayerError(f"MaxPooling2D {layer.name!r} on a flat input is not supported.")
    pool = tuple(layer.pool_size)
    strides = tuple(layer.strides) if layer.strides is not None else pool
    in_shape = _input_shape(layer)
    top, bottom, left, right = _pads(in_shape[1:3], pool, strides, layer.padding)
    if top or bottom or left or right:
        # TF's 'SAME' max-pool ignores padded positions: pad with -inf, never selected.
        out.append((f"{layer.name}_pad", nn.ConstantPad2d((left, right, top, bottom), float("-inf"))))
    out.append((layer.name, nn.MaxPool2d(pool, strides)))


def _convert_bn(layer, state, out):
    axis = layer.axis if isinstance(layer.axis, int) else (
        layer.axis[0] if len(layer.axis) == 1 else None)
    rank = state.rank
    if axis is None or axis not in (-1, rank - 1):
        raise UnsupportedLayerError(f"BatchNormalization {layer.name!r} must normalise the last "
                                    f"(channel) axis. Received: axis={layer.axis!r}.")
    if getattr(layer, "renorm", False):
        raise UnsupportedLayerError(f"BatchNormalization {layer.name!r} with renorm is not supported.")
    mean, var = _np(layer.moving_mean), _np(layer.moving_variance)
    n = mean.shape[0]
    gamma = _np(layer.gamma) if layer.scale else np.ones([n], np.float32)
    beta = _np(layer.beta) if layer.center else np.zeros([n], np.float32)
    if rank == 2 and state.perm is not None:
        mean, var, gamma, beta = (a[state.perm] for a in (mean, var, gamma, beta))
    bn = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(n, eps=float(layer.epsilon))
    with torch.no_grad():
        bn.running_mean.copy_(_tensor(mean))
        bn.running_var.copy_(_tensor(var))
        bn.weight.copy_(_tensor(gamma))
        bn.bias.copy_(_tensor(beta))
    out.append((layer.name, bn))


def _convert_flatten(layer, state, out):
    _check_channels_last(layer)
    shape = _input_shape(layer)
    if state.rank == 2:
        out.append((layer.name, nn.Identity()))
        return
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise UnsupportedLayerError(f"Flatten {layer.name!r} needs a static (H, W, C) input. "
                                    f"Received: shape={shape!r}.")
    h, w, c = (int(d) for d in shape[1:])
    out.append((layer.name, nn.Flatten()))
    state.rank = 2
    # torch (NCHW) flat index c*H*W + h*W + w holds Keras (NHWC) flat index (h*W + w)*C + c.
    state.perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()


def _convert_relu(layer, state, out):
    max_value = getattr(layer, "max_value", None)
    slope = float(getattr(layer, "negative_slope", 0.0) or 0.0)
    threshold = float(getattr(layer, "threshold", 0.0) or 0.0)
    if max_value is not None or slope != 0.0 or threshold != 0.0:
        raise UnsupportedLayerError(
            f"ReLU {layer.name!r}: only the plain ReLU is supported. Received: max_value="
            f"{max_value!r}, negative_slope={slope!r}, threshold={threshold!r}.")
    out.append((layer.name, nn.ReLU()))


def _convert_activation(layer, state, out):
    act = _activation_module(layer.activation, layer)
    out.append((layer.name, act if act is not None else nn.Identity()))


def _convert_gap(layer, state, out):
    _check_channels_last(layer)
    if getattr(layer, "keepdims", False):
        raise UnsupportedLayerError(f"GlobalAveragePooling2D {layer.name!r} with keepdims=True is "
                                    f"not supported.")
    out.append((layer.name, _GlobalAveragePool()))
    state.rank = 2
    state.perm = None


class _GlobalAveragePool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


_CONVERTERS = (
    (keras.layers.Conv2D, _convert_conv),
    (keras.layers.Dense, _convert_dense),
    (keras.layers.MaxPooling2D, _convert_pool),
    (keras.layers.BatchNormalization, _convert_bn),
    (keras.layers.Flatten, _convert_flatten),
    (keras.layers.ReLU, _convert_relu),
    (keras.layers.Activation, _convert_activation),
    (keras.layers.GlobalAveragePooling2D, _convert_gap),
)
_IDENTITY_IN_INFERENCE = (keras.layers.Dropout,)


def _convert_layers(model, state, out):
    for layer in _chain(model):
        if isinstance(layer, keras.Model):
            _convert_layers(layer, state, out)
            continue
        if type(layer) in _IDENTITY_IN_INFERENCE:
            out.append((layer.name, nn.Identity()))
            continue
        for cls, fn in _CONVERTERS:
            if type(layer) is cls:  # exact types: a subclass may compute something else
                fn(layer, state, out)
                break
        else:
            supported = ", ".join(c.__name__ for c, _ in _CONVERTERS) + ", Dropout"
            raise UnsupportedLayerError(
                f"Cannot convert layer {layer.name!r} of type {type(layer).__name__} (model "
                f"{model.name!r}) to PyTorch; supported layers: {supported}.")


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
    state = _State()
    modules: list = []
    _convert_layers(network, state, modules)
    if state.rank != 2:
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
