"""The model an attack runs against: a logits callable ``model_fn(x)`` in a fixed BatchNorm mode.

Every attack takes a logits callable. A Keras model passed instead is called with
``training=attack.training`` (``False`` by default: BatchNorm in inference mode, no statistic
updates); :class:`ModelFn` fixes the mode and knows its inference-mode twin. :func:`model_key` is
the identity of a model in a mode, the key of the attacks' one compile cache
(:mod:`tfadv.attacks.compiling`).
"""

from __future__ import annotations

from typing import Callable, Hashable, Tuple

import keras


class ModelFn:
    """A Keras model called in a fixed BatchNorm mode; it knows its inference-mode twin, so an attack
    handed a training-mode callable still computes clean logits/targets in inference mode."""

    def __init__(self, model: keras.layers.Layer, training: bool = False):
        self.model = model
        self.training = bool(training)

    def __call__(self, x):
        return self.model(x, training=self.training)


def inference_fn(model) -> Callable:
    """The inference-mode logits callable of a Keras model or ModelFn (plain callables as they are)."""
    if isinstance(model, ModelFn):
        return ModelFn(model.model, False)
    return as_model_fn(model, False)


def as_model_fn(model, training: bool = False) -> Callable:
    """Returns a logits callable. Keras layers/models are called with ``training=training``; a
    ModelFn keeps the mode its creator fixed (a defense's ``attack_training``)."""
    if isinstance(model, ModelFn):
        return model
    if isinstance(model, keras.layers.Layer):
        return ModelFn(model, training)
    if callable(model):
        if training:
            raise ValueError(
                "training=True needs a keras Model/Layer so that BatchNorm can be switched to "
                f"training mode; a plain callable cannot be. Received: {model!r}.")
        return model
    raise TypeError(f"model_fn must map images to logits. Received: {model!r}.")


def model_key(model_fn, training: bool = False) -> Tuple[int, Hashable]:
    """``(id of the model, BatchNorm mode)``: the same for every wrapper of one model in one mode (a
    fresh ``ModelFn`` per call, as ``AdversarialModel.model_fn`` makes, included). A Keras model is
    keyed in the mode ``training`` the attack would call it in; a plain callable has no mode (None).
    The id stays unique only while the model lives: a cache keyed by it keeps the model alive."""
    if isinstance(model_fn, ModelFn):
        return id(model_fn.model), model_fn.training
    if isinstance(model_fn, keras.layers.Layer):
        return id(model_fn), bool(training)
    return id(model_fn), None


def output_classes(model_fn, x, memo=None) -> int:
    """The number of logits ``model_fn`` returns, for the host-side label check of an eager call.

    A functional Keras model states it (``outputs``); any other model is probed once on one image
    (``x[:1]``, inference mode). ``memo`` (a ``weakref.WeakKeyDictionary`` its owner keeps, e.g.
    :meth:`tfadv.attacks.base.Attack.output_classes`) remembers the probe for as long as the model
    lives, so that repeated eager calls (FGSM in an evaluation loop) pay no extra forward pass.
    """
    model = model_fn.model if isinstance(model_fn, ModelFn) else model_fn
    outputs = getattr(model, "outputs", None) if isinstance(model, keras.Model) else None
    if outputs and len(outputs) == 1 and outputs[0].shape[-1] is not None:
        return int(outputs[0].shape[-1])
    try:
        cached = memo.get(model) if memo is not None else None
    except TypeError:  # not weak-referenceable: probe every call
        cached = None
    if cached is not None:
        return cached
    count = int(inference_fn(model_fn)(x[:1]).shape[-1])
    if memo is not None:
        try:
            memo[model] = count
        except TypeError:
            pass
    return count
