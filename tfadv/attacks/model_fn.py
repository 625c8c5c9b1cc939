"""The model an attack runs against: a logits callable ``model_fn(x)`` in a fixed BatchNorm mode.

Every attack takes a logits callable. A Keras model passed instead is called with
``training=attack.training`` (``False`` by default: BatchNorm in inference mode, no statistic
updates); :class:`ModelFn` fixes the mode and knows its inference-mode twin. :func:`model_key` is
the identity of a model in a mode, the key of the attacks' one compile cache
(:mod:`tfadv.attacks.compiling`). :class:`CountedModelFn` counts the passes an attack makes
(issue 20): forward and input-gradient (backward) passes, per example, exactly.
"""

from __future__ import annotations

from typing import Callable, Hashable, Tuple

import keras
import tensorflow as tf


class ModelFn:
    """A Keras model called in a fixed BatchNorm mode; it knows its inference-mode twin, so an attack
    handed a training-mode callable still computes clean logits/targets in inference mode."""

    def __init__(self, model: keras.layers.Layer, training: bool = False):
        self.model = model
        self.training = bool(training)

    def __call__(self, x):
        return self.model(x, training=self.training)


class PassCounter:
    """Forward and backward (input-gradient) passes, per example-pass: one image through the model
    counts 1. Two int64 variables, so that counting works eagerly, inside ``tf.function`` and inside
    ``tf.while_loop``; read them with :meth:`totals` (differences of two readings count a call)."""

    def __init__(self):
        self.forward = tf.Variable(0, dtype=tf.int64, trainable=False, name="forward_passes")
        self.backward = tf.Variable(0, dtype=tf.int64, trainable=False, name="backward_passes")

    def totals(self) -> Tuple[int, int]:
        """``(forward, backward)`` passes counted so far."""
        return int(self.forward.numpy()), int(self.backward.numpy())


def _count_backward(x, variable):
    """``x`` unchanged, whose gradient adds its batch size to ``variable`` when it is computed."""

    @tf.custom_gradient
    def mark(t):
        def grad(upstream):
            with tf.control_dependencies(
                    [variable.assign_add(tf.cast(tf.shape(upstream)[0], tf.int64))]):
                return tf.identity(upstream)

        return tf.identity(t), grad

    return mark(x)


class CountedModelFn:
    """A logits callable that counts its passes in a :class:`PassCounter`: every call adds the
    batch size to ``forward``, every gradient that reaches the input adds it to ``backward`` (a
    ``batch_jacobian`` over K logits counts K backward passes per example).

    It keeps the BatchNorm mode of the callable it wraps (``training``), its inference-mode twin is
    counted by the same counter (:func:`inference_fn`), and the attacks' compile cache keys it by
    the model and the counter (:func:`model_key`)."""

    def __init__(self, model_fn: Callable, counter: PassCounter):
        self.inner = model_fn
        self.counter = counter
        self.training = bool(getattr(model_fn, "training", False))

    @property
    def model(self):
        """The Keras model inside (for image-shape checks), or the wrapped callable."""
        return getattr(self.inner, "model", self.inner)

    @property
    def traceable(self) -> bool:
        """Whether the wrapped callable is a Keras model (or ModelFn): safe to trace whole."""
        return isinstance(self.inner, (keras.layers.Layer, ModelFn))

    def __call__(self, x):
        logits = self.inner(_count_backward(x, self.counter.backward))
        count = self.counter.forward.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        with tf.control_dependencies([count]):
            return tf.identity(logits)


def counted(model_fn, counter: PassCounter) -> CountedModelFn:
    """``model_fn`` counting its passes in ``counter`` (an already counted callable as it is)."""
    if isinstance(model_fn, CountedModelFn):
        return model_fn
    return CountedModelFn(model_fn, counter)


def uncounted(model_fn) -> Callable:
    """The callable inside a :class:`CountedModelFn` (others as they are), for a computation that
    counts its passes by hand with :func:`add_passes` (a vectorised ``batch_jacobian``: ``pfor``
    cannot vectorise the counter's update)."""
    return model_fn.inner if isinstance(model_fn, CountedModelFn) else model_fn


def add_passes(model_fn, *, forward, backward):
    """Adds passes to ``model_fn``'s counter where it is a :class:`CountedModelFn` (else nothing);
    returns the update ops (a list, empty when nothing is counted) for control dependencies."""
    if not isinstance(model_fn, CountedModelFn):
        return []
    return [model_fn.counter.forward.assign_add(tf.cast(forward, tf.int64)),
            model_fn.counter.backward.assign_add(tf.cast(backward, tf.int64))]


def inference_fn(model) -> Callable:
    """The inference-mode logits callable of a Keras model or ModelFn (plain callables as they are;
    a counted one stays counted by its counter)."""
    if isinstance(model, CountedModelFn):
        return model if not model.training else CountedModelFn(inference_fn(model.inner),
                                                                model.counter)
    if isinstance(model, ModelFn):
        return ModelFn(model.model, False)
    return as_model_fn(model, False)


def as_model_fn(model, training: bool = False) -> Callable:
    """Returns a logits callable. Keras layers/models are called with ``training=training``; a
    ModelFn keeps the mode its creator fixed (a defense's ``attack_training``)."""
    if isinstance(model, (ModelFn, CountedModelFn)):
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
    The id stays unique only while the model lives: a cache keyed by it keeps the model alive.
    A :class:`CountedModelFn` adds its counter's id to the mode: functions traced with one counter
    never count into another."""
    if isinstance(model_fn, CountedModelFn):
        key, mode = model_key(model_fn.inner, training)
        return key, (mode, id(model_fn.counter))
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
    model = model_fn.model if isinstance(model_fn, (ModelFn, CountedModelFn)) else model_fn
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
