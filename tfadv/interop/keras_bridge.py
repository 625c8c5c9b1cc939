"""Any Keras classifier as a PyTorch module: the forward pass runs the Keras model, the backward pass
returns its input gradient, so torchattacks runs unchanged on ResNets, WideResNets, normalising
wrappers (:mod:`tfadv.wrappers`) or a loaded ``.keras`` file.

    from tfadv.interop import keras_bridge
    net = keras_bridge.KerasBridge(keras_network, pixel_range="[-1,1]")  # [0,1] NCHW -> logits
    torchattacks.APGD(net, eps=8 / 255)(images, labels)

:class:`KerasFunction` is a ``torch.autograd.Function`` on NHWC images in the model's units:
``forward`` converts the torch tensor to a TensorFlow one, calls the model in inference mode
(``training=False``: BatchNormalization uses its moving statistics, Dropout is the identity) inside
a persistent ``tf.GradientTape`` (a ``tf.function`` traced once), and returns the logits as a torch
tensor; ``backward`` is the vector-Jacobian product
``tape.gradient(logits, x, output_gradients=upstream)`` — the exact input gradient of TensorFlow,
not a numerical or re-implemented one. The tape is persistent because FAB
back-propagates from the same logits once per class (``retain_graph=True``). A forward without a
gradient (``torch.no_grad()`` or an input not requiring one) keeps no tape. The logits equal the
eager ``model(x, training=False)`` bit for bit (tests/interop/test_keras_bridge.py).

:class:`KerasBridge` is the ``nn.Module`` torchattacks gets: it takes images in [0,1] (torchattacks'
range), NCHW, maps them affinely to the model's pixel range and to NHWC with torch operations (whose
gradients torch applies) and calls :class:`KerasFunction`. Its computations follow the model's
dtype (float32; float64 for a float64 model, as ``torch.autograd.gradcheck`` wants). It has one
parameter, an empty tensor: torchattacks reads the device from ``next(model.parameters())``;
``eval()``/``train()`` only set the flag (the Keras model always runs in inference mode).

Unlike :mod:`tfadv.interop.torch_port`, nothing of the network is re-implemented in PyTorch: the
bridge cross-checks the attacks (both libraries attack the same function and gradient), not the
network's numerics. Requires PyTorch (the ``crosscheck`` extra).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

try:
    import torch
    from torch import nn
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("tfadv.interop.keras_bridge needs PyTorch, which is not part of tfadv's core "
                      "install: pip install 'tfadv[crosscheck]' (torch==2.13.0 and torchattacks)."
                      ) from e

from tfadv import ranges as ranges_lib

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class _KerasCall:
    """The network in inference mode as a ``tf.function`` over any batch size (traced once per dtype
    and image shape); ``dtype`` is the network's input dtype."""

    def __init__(self, network: keras.Model):
        self.network = network
        self.dtype = tf.as_dtype(network.inputs[0].dtype).name
        image_shape = tuple(network.inputs[0].shape[1:])
        self.call = tf.function(lambda x: network(x, training=False), input_signature=[
            tf.TensorSpec((None, *image_shape), self.dtype)], reduce_retracing=True)

    def taped(self, x: tf.Tensor, persistent: bool):
        """``(logits, tape)``. Also without a gradient the call runs under a tape: TensorFlow's
        graph optimizer then keeps the network's operations as eager Keras runs them (a plain graph
        call folds inference BatchNormalization into the convolutions, changing logits by ~1e-5)."""
        with tf.GradientTape(persistent=persistent) as tape:
            tape.watch(x)
            logits = self.call(x)
        return logits, tape

    def to_tf(self, x: "torch.Tensor") -> tf.Tensor:
        return tf.convert_to_tensor(x.detach().cpu().numpy(), dtype=self.dtype)

    def to_torch(self, t: tf.Tensor, like: "torch.Tensor") -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(t.numpy())).to(like.device)


class KerasFunction(torch.autograd.Function):
    """``logits = model(x_nhwc, training=False)`` with TensorFlow's input gradient as backward."""

    @staticmethod
    def forward(ctx, x_nhwc, keras_call: _KerasCall):
        x = keras_call.to_tf(x_nhwc)
        logits, tape = keras_call.taped(x, persistent=True)
        ctx.tape, ctx.x, ctx.logits, ctx.keras_call = tape, x, logits, keras_call
        return keras_call.to_torch(logits, x_nhwc)

    @staticmethod
    def backward(ctx, upstream):
        keras_call = ctx.keras_call
        g = tf.convert_to_tensor(upstream.detach().cpu().numpy(), dtype=ctx.logits.dtype)
        grad = ctx.tape.gradient(ctx.logits, ctx.x, output_gradients=g)
        if grad is None:  # the logits do not depend on the input
            grad = tf.zeros_like(ctx.x)
        return keras_call.to_torch(grad, upstream), None


class KerasBridge(nn.Module):
    """A Keras classifier as a PyTorch module on [0,1] NCHW images (module docstring).

    Args:
        network: a built ``keras.Model`` with one image input (N, H, W, C) returning logits.
        pixel_range: the range the network takes (``"[0,1]"`` or ``"[-1,1]"``).
    """

    def __init__(self, network: keras.Model, pixel_range="[0,1]"):
        super().__init__()
        if not isinstance(network, keras.Model):
            raise ValueError(f"KerasBridge needs a keras.Model (a SavedModel signature has no "
                             f"input gradient to hand to torch here). Received: "
                             f"{type(network).__name__}.")
        shape = _image_input_shape(network)
        self.keras_call = _KerasCall(network)
        if self.keras_call.dtype not in _TORCH_DTYPES:
            raise ValueError(f"KerasBridge runs float32 or float64 models. Received: input dtype "
                             f"{self.keras_call.dtype}.")
        rng = ranges_lib.get_range(pixel_range)
        self.low, self.width = float(rng.low), float(rng.width)
        self.input_shape_chw = (shape[2], shape[0], shape[1])
        self.torch_dtype = _TORCH_DTYPES[self.keras_call.dtype]
        # torchattacks takes its device from next(model.parameters()); nothing is trained here.
        anchor = torch.zeros(0, dtype=self.torch_dtype)
        self.device_anchor = nn.Parameter(anchor, requires_grad=False)
        self.eval()

    @property
    def network(self) -> keras.Model:
        return self.keras_call.network

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape_chw:
            raise ValueError(f"KerasBridge takes NCHW images of shape (N, "
                             f"{', '.join(map(str, self.input_shape_chw))}). Received: shape "
                             f"{tuple(x.shape)}.")
        x_nhwc = (x.to(self.torch_dtype) * self.width + self.low).permute(0, 2, 3, 1)
        if len(x_nhwc) == 0:  # oneDNN fails on empty batches: no model call
            n = int(self.network.output_shape[-1])
            return torch.zeros((0, n), dtype=self.torch_dtype, device=x.device)
        if torch.is_grad_enabled() and x_nhwc.requires_grad:
            return KerasFunction.apply(x_nhwc, self.keras_call)
        logits, _ = self.keras_call.taped(self.keras_call.to_tf(x_nhwc), persistent=False)
        return self.keras_call.to_torch(logits, x)


def _image_input_shape(network):
    try:
        shape = tuple(network.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        shape = None
    if shape is None or len(shape) != 4 or None in shape[1:] or len(network.inputs) != 1:
        raise ValueError(f"KerasBridge needs a built model with one image input (N, H, W, C) of "
                         f"known size. Received: input shape {shape!r}.")
    return tuple(int(d) for d in shape[1:])


__all__ = ["KerasBridge", "KerasFunction"]
