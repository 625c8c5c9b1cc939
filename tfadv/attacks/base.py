"""The base class of every attack: ``attack(model_fn, x, y) -> x_adv``, its input checks and its
one compile cache; and the ``noop`` attack (clean images through the robust-evaluation path).

The iterative loop (PGD, FGSM, MI-FGSM, C&W∞) is :mod:`tfadv.attacks.core`; the other attacks
subclass :class:`Attack` in their own modules.
"""

from __future__ import annotations

import abc
import weakref
from typing import Callable, Hashable, Optional

import tensorflow as tf

from tfadv.attacks import checks
from tfadv.attacks import compiling
from tfadv.attacks import model_fn as model_fn_lib


class Attack(abc.ABC):
    """Base class: ``attack(model_fn, x, y) -> x_adv``.

    ``graph_safe``: the call can be traced into a ``tf.function`` (the evaluation runner compiles
    it once per attack); attacks with host-side control flow set it to False and run eagerly.

    Every subclass's ``__call__`` first checks the images against the model (dtype, image shape;
    :func:`tfadv.attacks.checks.checking_input`), eagerly and while tracing.
    """

    name = "attack"
    graph_safe = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None and not getattr(call, "__isabstractmethod__", False):
            cls.__call__ = checks.checking_input(call)

    @abc.abstractmethod
    def __call__(self, model_fn, x, y, **kwargs):
        """Returns adversarial images for ``x`` (labels ``y``) against the logits callable."""

    @abc.abstractmethod
    def model_calls_per_example(self) -> int:
        """How many times the attack evaluates the model per example (for reports)."""

    def reproducible_per_call(self) -> bool:
        """Whether a call's adversarial images are a function of its images, labels, the model
        and this attack's configuration alone, never of earlier calls (no stateful random draws,
        no unseeded ones). A multi-worker evaluation, whose workers attack different batches,
        gives one device's per-example results only for such attacks, and a resumed evaluation
        continues bit-identically. False unless an attack says otherwise."""
        return False

    #: Models (with their static arguments) whose compiled functions an attack object keeps.
    compiled_cache_size = 8

    def compiled(self, model_fn, build: Callable, static: Hashable = (), *,
                 training: bool = False, lazy: bool = False) -> Optional[Callable]:
        """The attack's one compile cache (:mod:`tfadv.attacks.compiling`): the function
        ``build(model_fn)`` built for this model (in its BatchNorm mode; a bare Keras model in mode
        ``training``) and ``static`` arguments, reused until either changes. ``lazy``: None on the
        first call with a key (run op by op), the function from the second on."""
        cache = self.__dict__.get("_function_cache")
        if cache is None or not cache.belongs_to(self):  # a shallow copy starts its own
            cache = compiling.FunctionCache(self, self.compiled_cache_size)
            self._function_cache = cache
        return cache.get(model_fn, build, static, training=training, lazy=lazy)

    def compiled_call(self, model_fn, attack: Callable, *, training: bool = False) -> Callable:
        """``attack(model_fn, x, y)`` as one ``tf.function`` of ``(x, y)`` from the compile cache
        (``reduce_retracing``: one trace per image shape, one shape-relaxed trace at most)."""
        return self.compiled(model_fn, lambda owner: tf.function(
            lambda x, y: attack(owner, x, y), reduce_retracing=True), training=training)

    def checked_call(self, model_fn, x, y, attack: Callable, *, training: bool = False):
        """``attack(model_fn, x, y)`` for an attack that compiles itself whole (C&W-L2, DeepFool;
        it has a ``pixel_range``): an empty batch comes back as it is
        (:func:`tfadv.attacks.checks.unless_empty`); eagerly the batch is checked on the host
        against the model, then run as the cached compiled function (:meth:`compiled_call`);
        inside a caller's ``tf.function`` it traces into that graph."""
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.cast(tf.convert_to_tensor(y), tf.int32)

        def run():
            if tf.executing_eagerly():
                checks.validate_batch(x, y, lambda: self.output_classes(model_fn, x),
                                      self.pixel_range)
                return self.compiled_call(model_fn, attack, training=training)(x, y)
            return attack(model_fn, x, y)

        return checks.unless_empty(x, y, self.pixel_range, run)

    def output_classes(self, model_fn, x) -> int:
        """The number of classes ``model_fn`` outputs, for the host-side label check
        (:func:`tfadv.attacks.model_fn.output_classes`), a probe remembered per model by this
        attack object."""
        memo = self.__dict__.get("_class_counts")
        if memo is None:
            memo = self._class_counts = weakref.WeakKeyDictionary()
        return model_fn_lib.output_classes(model_fn, x, memo)

    def counted(self, model_fn) -> "model_fn_lib.CountedModelFn":
        """``model_fn`` counting its forward and backward passes (issue 20) in a counter this attack
        object keeps per model (remembered as long as the model lives), so that every call against
        one model reuses the same compiled functions; an already counted callable as it is. Read
        the counts as differences of ``.counter.totals()`` around a call."""
        if isinstance(model_fn, model_fn_lib.CountedModelFn):
            return model_fn
        memo = self.__dict__.get("_pass_counters")
        if memo is None:
            memo = self._pass_counters = weakref.WeakKeyDictionary()
        model = getattr(model_fn, "model", model_fn)
        try:
            counter = memo.get(model)
        except TypeError:  # not weak-referenceable: a counter per call
            counter = None
        if counter is None:
            counter = model_fn_lib.PassCounter()
            try:
                memo[model] = counter
            except TypeError:
                pass
        return model_fn_lib.counted(model_fn, counter)

    def compiled_functions(self):
        """The functions in the compile cache (least recently used first), for inspection."""
        cache = self.__dict__.get("_function_cache")
        return cache.functions() if cache is not None and cache.belongs_to(self) else []

    def clear_compiled(self) -> None:
        """Drops every compiled function (e.g. after the attack's networks were rebuilt)."""
        self.__dict__.pop("_function_cache", None)

    def get_config(self) -> dict:
        return {"name": self.name}


class NoOpAttack(Attack):
    """Returns the clean images, so clean and robust evaluation share one code path."""

    name = "noop"

    def __init__(self, **unused):
        if unused:
            raise ValueError(f"The noop attack takes no parameters. Received: {sorted(unused)}.")

    def __call__(self, model_fn, x, y, **kwargs):
        return tf.identity(tf.convert_to_tensor(x, tf.float32))

    def model_calls_per_example(self) -> int:
        return 0

    def reproducible_per_call(self) -> bool:
        return True
