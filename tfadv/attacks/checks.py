"""Argument and batch checks shared by the attacks (each error names the value received)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from tfadv import batches as batches_lib


def check_number(value, what, *, positive=True, upper=None):
    """A finite number >= 0 (> 0 if ``positive``), at most ``upper`` when given."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number. Received: {value!r}.") from None
    if not np.isfinite(v) or v < 0 or (positive and v == 0) or (upper is not None and v > upper):
        bound = f" and at most {upper:g}" if upper is not None else ""
        raise ValueError(f"{what} must be {'positive' if positive else 'non-negative'}{bound}. "
                         f"Received: {value!r}.")
    return v


def check_radius(value, what: str, norm: str, pixel_range, allow_none: bool = False):
    """Validates a size in input units (a positive finite number; Linf sizes ≤ the range width)."""
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive number in input units. "
                         f"Received: {value!r}.") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{what} must be a positive number in input units. Received: {value!r}.")
    if norm == "linf" and v > pixel_range.width:
        raise ValueError(
            f"{what}={value!r} exceeds the width {pixel_range.width:g} of the pixel range "
            f"{pixel_range}; sizes are in input units (8 pixel levels are "
            f"{pixel_range.from_pixels(8):.6g} here). Received: {what}={value!r}.")
    return v


def check_int(value, what: str, minimum: int) -> int:
    """An integer (int or integral float, not bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) \
            or int(value) != value or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}. Received: {value!r}.")
    return int(value)


def validate_batch(x, y, logits, pixel_range) -> None:
    """Eager checks shared by the attacks of this package: a batch, matching labels, range.

    ``logits``: the model's logits for some of the images, or the number of classes (an int)."""
    if x.shape.rank is None or x.shape.rank < 2:
        raise ValueError(f"Images must be a batch (B, ...). Received shape: {x.shape}.")
    if y.shape.rank != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"Labels must have shape ({x.shape[0]},) to match the images. "
                         f"Received shape: {y.shape}.")
    pixel_range.check_images(x.numpy())
    num_classes = logits if isinstance(logits, (int, np.integer)) else int(logits.shape[-1])
    yn = y.numpy()
    if yn.size and (yn.min() < 0 or yn.max() >= num_classes):
        raise ValueError(f"Labels must be in [0, {num_classes}). Received: min={yn.min()}, "
                         f"max={yn.max()}.")


def expand_to(mask, like):
    """Reshapes a per-example vector (B,) to broadcast against ``like`` (B, ...)."""
    return tf.reshape(mask, tf.concat([tf.shape(mask), tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def unless_empty(x, y, pixel_range, attack: Callable):
    """``attack()``, the adversarial images of the batch ``x`` (labels ``y``), where it has
    examples; an empty batch comes back as it is, without a model call (nothing to perturb; oneDNN
    kernels fail on zero-size batches, see :mod:`tfadv.batches`). Eagerly its shapes and range are
    checked first, as an attack checks any batch."""
    if tf.executing_eagerly() and x.shape.rank and x.shape[0] == 0:
        validate_batch(x, y, 0, pixel_range)
    return batches_lib.if_nonempty(x, attack, lambda: tf.stop_gradient(x))
