"""Transfer (black-box) attack: adversarial examples crafted on a source model, evaluated on the target.

The threat model of the "black-box" rows of BAT (sec. 5), FOSC (sec. 5.1, a separately trained
surrogate) and Madry et al.: the attacker has white-box access to a *source* model only and
submits the images it crafts there to the target model. ``attack(model_fn, x, y)`` therefore never
evaluates ``model_fn``; it runs the inner attack on the source and returns its images.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from tfadv import ranges as ranges_lib
from tfadv.attacks.base import Attack
from tfadv.attacks.model_fn import as_model_fn
from tfadv.attacks.registry import ATTACKS


def run_attack(attack: Attack, model_fn, x, y, **kwargs):
    """Calls ``attack``; inside a ``tf.function`` an attack that is not graph-safe (host-side
    control flow) runs eagerly through ``tf.py_function``, so callers can always be traced."""
    if tf.executing_eagerly() or attack.graph_safe:
        return attack(model_fn, x, y, **kwargs)
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.cast(tf.convert_to_tensor(y), tf.int32)
    out = tf.py_function(lambda a, b: tf.convert_to_tensor(attack(model_fn, a, b, **kwargs),
                                                           tf.float32),
                         [x, y], Tout=tf.float32)
    out.set_shape(x.shape)
    return out


class TransferAttack(Attack):
    """Runs ``inner`` on a fixed source model and returns its images for any target model.

    Args:
        source: the source model: a Keras model (called in inference mode), a logits callable, or
            the path of a tfadv SavedModel / run directory / checkpoint
            (:func:`tfadv.loading.load_for_evaluation`).
        inner: the attack crafted on the source: a registered name or an Attack instance.
        inner_params: parameters of the inner attack when it is given by name.
        pixel_range: the range of the images; with a path source it must agree with the range
            the source was exported with (taken from its metadata when not given).
    """

    name = "transfer"

    def __init__(self, *, source, inner="pgd", inner_params: Optional[dict] = None,
                 pixel_range=None, name: Optional[str] = None):
        self.source_description = source if isinstance(source, str) else type(source).__name__
        info = {}
        if isinstance(source, str):
            from tfadv import loading  # deferred: loading pulls in the checkpoint machinery

            source, info = loading.load_for_evaluation(source)
        if source is None or not (isinstance(source, keras.layers.Layer) or callable(source)):
            raise ValueError("transfer needs a source model: a Keras model, a logits callable or "
                             f"the path of a SavedModel/run directory. Received: {source!r}.")
        self.source = source
        self.source_fn = as_model_fn(source, False)
        inner_params = dict(inner_params or {})
        source_range = info.get("pixel_range")
        if source_range is None and isinstance(getattr(source, "pixel_range", None),
                                               ranges_lib.PixelRange):
            source_range = source.pixel_range.name  # a LoadedModel knows its range
        if pixel_range is None:
            pixel_range = inner_params.get("pixel_range", source_range or "[0,1]")
        self.pixel_range = ranges_lib.get_range(pixel_range)
        for what, value in (("the source model's", source_range),
                            ("the inner attack's", inner_params.get("pixel_range"))):
            if value is not None and ranges_lib.get_range(value) != self.pixel_range:
                raise ValueError(f"The pixel range {self.pixel_range} differs from {what} range. "
                                 f"Received: {value!r}.")
        if isinstance(inner, Attack):
            if inner_params:
                raise ValueError("inner_params apply to an inner attack given by name; this one "
                                 f"is already built. Received: {sorted(inner_params)}.")
            inner_range = getattr(inner, "pixel_range", None)
            if inner_range is not None and ranges_lib.get_range(inner_range) != self.pixel_range:
                raise ValueError(f"The inner attack works in {inner_range}, the transfer attack in "
                                 f"{self.pixel_range}. Received: {inner!r}.")
            self.inner = inner
        elif isinstance(inner, str):
            if inner.strip().lower() == "transfer":
                raise ValueError("The inner attack of a transfer attack cannot be 'transfer'. "
                                 f"Received: inner={inner!r}.")
            from tfadv import attacks  # deferred: tfadv.attacks imports this module

            inner_params["pixel_range"] = str(self.pixel_range)
            self.inner = attacks.get(inner, **inner_params)
        else:
            raise ValueError(f"inner must be an attack name or an Attack. Received: {inner!r}.")
        self.graph_safe = bool(self.inner.graph_safe)
        self.info = info
        if name is not None:
            self.name = name

    def reproducible_per_call(self) -> bool:
        """When the inner attack on the source model is."""
        return self.inner.reproducible_per_call()

    def model_calls_per_example(self) -> int:
        """Evaluations of the *source* model (the target is never queried by the attack)."""
        return self.inner.model_calls_per_example()

    def get_config(self) -> dict:
        return {"name": self.name, "source": self.source_description,
                "pixel_range": str(self.pixel_range), "inner": self.inner.get_config()}

    def __call__(self, model_fn, x, y, **kwargs):
        """Returns the inner attack's images against the source; ``model_fn`` (the target) is
        not evaluated."""
        return run_attack(self.inner, self.source_fn, x, y, **kwargs)


@ATTACKS.register("transfer")
def transfer(*, source, inner="pgd", pixel_range=None, name: Optional[str] = None,
             inner_params: Optional[dict] = None, **params) -> TransferAttack:
    """Transfer attack from ``source``; the inner attack's parameters may be given flat
    (``transfer(source=m, inner="pgd", eps=0.1)``) or as ``inner_params={...}``."""
    merged = dict(inner_params or {})
    overlap = sorted(set(merged) & set(params))
    if overlap:
        raise ValueError(f"Give each inner-attack parameter once (flat or in inner_params). "
                         f"Received both for: {overlap}.")
    merged.update(params)
    return TransferAttack(source=source, inner=inner, inner_params=merged if merged else None,
                          pixel_range=pixel_range, name=name)
