"""Wrappers that make a user's model take images in a pixel range and return logits.

The threat model of an evaluation is in pixel space: eps is measured on the images fed to the
attacks. A model trained on normalised inputs ``(x - mean) / std`` is therefore wrapped so that the
normalisation happens *inside* it (:func:`wrap`), and eps stays a pixel-space budget. A model whose
outputs are probabilities (a final softmax) is wrapped so that it returns their logarithm:
log-probabilities are logits up to a per-example constant, which changes no prediction, no
cross-entropy and no margin, while attacks and the CW/DLR losses need logits.

A Keras model is wrapped by a functional Keras model (its layers serializable, so the wrapper can be
saved as ``.keras``); any other callable (a SavedModel signature) by :class:`WrappedFn`.
"""

from __future__ import annotations

import json
import warnings
from typing import Callable, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

#: The smallest positive float32: log-probabilities are clipped at its log (about -87.3) so that an
#: underflowed probability gives a finite value and gradient.
_TINY = float(np.finfo(np.float32).tiny)


def parse_normalize(value: str) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """``(mean, std)`` from ``"MEAN,STD"``, each a number or a per-channel list:
    ``"0.5,0.25"`` or ``"[0.485,0.456,0.406],[0.229,0.224,0.225]"``. Every std must be positive
    and the two lists of equal length (a single number broadcasts over the channels)."""
    try:
        parsed = json.loads(f"[{value}]")
    except (TypeError, ValueError):
        parsed = None
    if not isinstance(parsed, list) or len(parsed) != 2:
        raise ValueError(f"--normalize must be MEAN,STD: two numbers or two per-channel lists, "
                         f"e.g. 0.5,0.25 or [0.485,0.456,0.406],[0.229,0.224,0.225]. "
                         f"Received: {value!r}.")
    mean, std = ([p] if isinstance(p, (int, float)) else p for p in parsed)
    numbers = (isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*mean, *std])
    if not mean or not all(numbers) or not np.all(np.isfinite([*mean, *std])):
        raise ValueError(f"--normalize takes finite numbers only. Received: {value!r}.")
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise ValueError(f"--normalize's mean and std lists must have the same length (one value "
                         f"per channel). Received: {value!r}.")
    if min(std) <= 0:
        raise ValueError(f"--normalize's std must be positive. Received: {value!r}.")
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def normalize_images(x, mean: Sequence[float], std: Sequence[float]):
    """``(x - mean) / std`` with per-channel (last axis) or scalar ``mean`` and ``std``."""
    return (x - tf.constant(mean, x.dtype)) / tf.constant(std, x.dtype)


def log_probabilities(p):
    """``log(p)``, with ``p`` clipped below at the smallest positive float32 (finite everywhere)."""
    return tf.math.log(tf.maximum(p, tf.constant(_TINY, p.dtype)))


def looks_like_probabilities(outputs, atol: float = 1e-3) -> bool:
    """True when ``outputs`` (B, classes), B >= 1, are non-negative with every row summing to 1."""
    out = np.asarray(outputs, np.float64)
    if out.ndim != 2 or out.shape[0] == 0 or out.shape[1] < 2:
        return False
    return bool(out.min() >= 0 and np.all(np.abs(out.sum(axis=-1) - 1.0) <= atol))


@keras.saving.register_keras_serializable(package="tfadv")
class NormalizeInputs(keras.layers.Layer):
    """``(x - mean) / std`` over the last axis (pixel-space images in, the model's inputs out)."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(v) for v in np.ravel(mean)]
        self.std = [float(v) for v in np.ravel(std)]

    def call(self, x):
        return normalize_images(x, self.mean, self.std)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="tfadv")
class LogProbabilities(keras.layers.Layer):
    """The logarithm of a softmax output (:func:`log_probabilities`), used as logits."""

    def call(self, p):
        return log_probabilities(tf.cast(p, tf.float32))


def application_module(name: str):
    """The public ``keras.applications`` submodule (its name) that defines the classifier ``name``
    and its ``preprocess_input``, e.g. ``resnet50`` for ``ResNet50``."""
    constructor = getattr(keras.applications, name, None) if name[:1].isupper() else None
    if constructor is not None:
        # The submodule exporting the constructor (resnet50), else the one named after the module
        # that defines it (mobilenet_v3, which exports only preprocess_input).
        defined_in = getattr(constructor, "__module__", "").rsplit(".", 1)[-1]
        subs = sorted(dir(keras.applications), key=lambda sub: sub != defined_in)
        for sub in subs:
            module = getattr(keras.applications, sub)
            if not sub.startswith("_") and hasattr(module, "preprocess_input") and (
                    getattr(module, name, None) is constructor or sub == defined_in):
                return sub
    raise ValueError(f"No keras.applications classifier of this name; the classifiers are "
                     f"{[n for n in dir(keras.applications) if n[:1].isupper()]}. Received: {name!r}.")


@keras.saving.register_keras_serializable(package="tfadv")
class ApplicationPreprocess(keras.layers.Layer):
    """A ``keras.applications`` classifier's own preprocessing, for images in ``[low, high]``: the
    images are scaled to pixel levels 0..255 (what ``preprocess_input`` takes), then
    ``keras.applications.<module>.preprocess_input`` is applied."""

    def __init__(self, module: str, low: float = 0.0, high: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.module, self.low, self.high = str(module), float(low), float(high)

    def call(self, x):
        levels = (x - self.low) * (255.0 / (self.high - self.low))
        return getattr(keras.applications, self.module).preprocess_input(levels)

    def get_config(self):
        return {**super().get_config(), "module": self.module, "low": self.low, "high": self.high}


class WrappedFn:
    """A logits callable around a non-Keras model ``fn`` (images -> outputs): normalises the
    images first and/or takes the log of probability outputs. ``input_shape`` (one image) and
    ``num_classes`` are kept so the input checks see what the model takes."""

    def __init__(self, fn: Callable, *, input_shape, num_classes: int, normalize=None,
                 log_outputs: bool = False):
        self.fn = fn
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)
        self.normalize = normalize
        self.log_outputs = bool(log_outputs)

    def __call__(self, images):
        x = tf.convert_to_tensor(images, tf.float32)
        if self.normalize is not None:
            x = normalize_images(x, *self.normalize)
        out = self.fn(x)
        return log_probabilities(out) if self.log_outputs else out


def check_channels(normalize, input_shape) -> None:
    """Per-channel statistics must have one value per channel of the model's images."""
    if normalize is None or input_shape is None or input_shape[-1] is None:
        return
    for what, values in zip(("mean", "std"), normalize):
        if len(values) not in (1, int(input_shape[-1])):
            raise ValueError(f"--normalize's {what} has {len(values)} values but the model's "
                             f"images have {input_shape[-1]} channels (shape {tuple(input_shape)}). "
                             f"Received: {what}={list(values)}.")


def wrap(model, *, input_shape, normalize=None, log_outputs: bool = False):
    """``model`` taking pixel-space images and returning logits.

    ``normalize``: ``(mean, std)`` (:func:`parse_normalize`) applied inside, or None.
    ``log_outputs``: take the log of the model's (softmax) outputs. A Keras model becomes a
    functional Keras model ``NormalizeInputs -> model -> LogProbabilities``; any other callable a
    :class:`WrappedFn`. Returns ``model`` itself when there is nothing to wrap.
    """
    check_channels(normalize, input_shape)
    if normalize is None and not log_outputs:
        return model
    if isinstance(model, keras.layers.Layer):
        inputs = keras.Input(tuple(input_shape), name="pixels")
        h = inputs if normalize is None else NormalizeInputs(*normalize, name="normalize")(inputs)
        h = model(h)
        outputs = LogProbabilities(name="log_probabilities")(h) if log_outputs else h
        return keras.Model(inputs, outputs, name=f"{model.name}_wrapped")
    return WrappedFn(model, input_shape=input_shape, num_classes=getattr(model, "num_classes", 0),
                     normalize=normalize, log_outputs=log_outputs)


def probe_images(input_shape, low: float, high: float, batch: int = 4, seed: int = 0):
    """A few uniform random images (float32) in ``[low, high]`` of ``input_shape`` (one image)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, (batch, *input_shape)).astype(np.float32)


def convert_probabilities(model, outputs, *, input_shape, normalize=None):
    """When ``outputs`` (the model's outputs on probe images) look like probabilities, warns and
    returns the model wrapped to give log-probabilities; else ``model`` (wrapped by ``normalize``)."""
    softmax = looks_like_probabilities(outputs)
    if softmax:
        warnings.warn("The model's outputs are probabilities (every row non-negative and summing to "
                      "1): it is wrapped to return their logarithm, log-probabilities, which attacks "
                      "use as logits (the same predictions; margins and cross-entropy unchanged). "
                      f"Received: outputs with row sums {np.round(np.sum(outputs, -1), 6).tolist()}.",
                      UserWarning, stacklevel=2)
    return wrap(model, input_shape=input_shape, normalize=normalize, log_outputs=softmax)


__all__ = ["ApplicationPreprocess", "LogProbabilities", "NormalizeInputs", "WrappedFn", "application_module", "check_channels",
           "convert_probabilities", "log_probabilities", "looks_like_probabilities",
           "normalize_images", "parse_normalize", "probe_images", "wrap"]



def low_precision_copy(model, precision: str):
    """A copy of the functional Keras ``model`` (nested functional models included) whose layers
    compute in ``precision`` (``"bf16"``/``"fp16"``: Keras' mixed policies, float32 variables),
    with ``model``'s weights, returning float32 logits.

    For attacking in low precision while the attack's steps and projections stay float32 (the
    attacks cast the logits and gradients they get) and accuracy is measured on ``model`` itself.
    ``"fp32"`` returns ``model``. A model that is not a functional Keras model is refused."""
    from tfadv import distribute

    policy = distribute.policy_name(precision)
    if precision == "fp32":
        return model
    if not isinstance(model, keras.Model) or not isinstance(getattr(model, "inputs", None), list):
        raise ValueError("A low-precision copy needs a functional Keras model (its layers are "
                         f"rebuilt with the {policy} policy). Received: {type(model).__name__}.")

    def clone(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    outputs = keras.layers.Activation("linear", dtype="float32", name="float32_logits")(
        copy.outputs[0])
    return keras.Model(copy.inputs, outputs, name=f"{model.name}_{precision}")
