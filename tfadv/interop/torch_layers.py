"""The per-layer half of the Keras -> PyTorch port (:mod:`tfadv.interop.torch_port`): one converter
per supported Keras layer type, and TF's ``'SAME'`` padding arithmetic they share.

A converter appends ``(name, torch module)`` pairs for one Keras layer (a padding module before a
convolution or pooling whose TF padding is asymmetric, the activation after it) and updates the
:class:`Layout` of the tensor flowing on: NCHW images, or flat features whose order differs from
Keras' NHWC flatten order until the next ``Dense`` layer permutes its input rows back.
:func:`convert_layer` picks the converter by the layer's exact type. Requires PyTorch (the
``crosscheck`` extra).
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np

try:
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("tfadv.interop.torch_port needs PyTorch, which is not part of tfadv's core "
                      "install: pip install 'tfadv[crosscheck]' (torch==2.13.0 and torchattacks)."
                      ) from e


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
# One converter per layer type.


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


class Layout:
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


CONVERTERS = (
    (keras.layers.Conv2D, _convert_conv),
    (keras.layers.Dense, _convert_dense),
    (keras.layers.MaxPooling2D, _convert_pool),
    (keras.layers.BatchNormalization, _convert_bn),
    (keras.layers.Flatten, _convert_flatten),
    (keras.layers.ReLU, _convert_relu),
    (keras.layers.Activation, _convert_activation),
    (keras.layers.GlobalAveragePooling2D, _convert_gap),
)
IDENTITY_IN_INFERENCE = (keras.layers.Dropout,)




def convert_layer(layer, layout: Layout, out: list, *, model_name: str) -> None:
    """Appends the PyTorch modules computing ``layer`` (inference mode) to ``out`` and updates
    ``layout``; raises :class:`UnsupportedLayerError` for a layer type without a converter (the
    message names ``model_name``, the model holding the layer)."""
    if type(layer) in IDENTITY_IN_INFERENCE:
        out.append((layer.name, nn.Identity()))
        return
    for cls, fn in CONVERTERS:
        if type(layer) is cls:  # exact types: a subclass may compute something else
            fn(layer, layout, out)
            return
    supported = ", ".join(c.__name__ for c, _ in CONVERTERS) + ", Dropout"
    raise UnsupportedLayerError(
        f"Cannot convert layer {layer.name!r} of type {type(layer).__name__} (model "
        f"{model_name!r}) to PyTorch; supported layers: {supported}.")
