"""Pixel ranges and the one place where eps/step sizes change units.

Convention (issue #2, BAT sec. 3.1 footnote 1): every eps/step *flag* is written in pixel levels out
of 255. ``--eps=8`` therefore means 8/255 of the input range: 8/255 in ``[0,1]`` and 16/255 in
``[-1,1]`` (BAT and ImageNet-Adversarial-Training map images with ``2*(x/255-0.5)``).
MNIST-style budgets such as 0.3 of the range are written ``--eps=76.5``.

The library (attacks, defenses) always works in *input units*: the units of the tensors fed to the
network. Scripts convert flags with :meth:`PixelRange.from_pixels` exactly once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Union

import numpy as np

PIXEL_LEVELS = 255.0


@dataclasses.dataclass(frozen=True)
class PixelRange:
    """A closed interval [low, high] that images live in."""

    name: str
    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low

    def from_pixels(self, value: float) -> float:
        """Converts a size in pixel levels (out of 255) to input units of this range."""
        return float(value) / PIXEL_LEVELS * self.width

    def to_pixels(self, value: float) -> float:
        """Converts a size in input units of this range back to pixel levels."""
        return float(value) * PIXEL_LEVELS / self.width

    def from_uint8(self, images):
        """Maps uint8-valued images (0..255, any dtype) into this range as float32.

        ``[-1,1]`` gives exactly ``2*(x/255-0.5)`` as in BAT's and the tensorpack code's preprocessing.
        """
        import tensorflow as tf

        x = tf.cast(images, tf.float32) / PIXEL_LEVELS
        return x * self.width + self.low

    def check_images(self, images, *, tolerance: float = 1e-5, what: str = "images") -> None:
        """Raises ValueError if a NumPy/eager batch lies outside the range."""
        arr = np.asarray(images)
        if arr.size == 0:
            return
        lo, hi = float(arr.min()), float(arr.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{what} contain NaN or Inf values. Received: min={lo}, max={hi}.")
        if lo < self.low - tolerance or hi > self.high + tolerance:
            raise ValueError(
                f"{what} must lie in the declared pixel range {self.name}. "
                f"Received: min={lo:.6g}, max={hi:.6g}."
            )

    def __str__(self) -> str:
        return self.name


RANGES = {
    "[0,1]": PixelRange("[0,1]", 0.0, 1.0),
    "[-1,1]": PixelRange("[-1,1]", -1.0, 1.0),
}
_ALIASES = {"0,1": "[0,1]", "01": "[0,1]", "zero_one": "[0,1]", "-1,1": "[-1,1]", "pm1": "[-1,1]",
            "minus_one_one": "[-1,1]"}


def get_range(name: Union[str, PixelRange]) -> PixelRange:
    """Returns the PixelRange named ``[0,1]`` or ``[-1,1]`` (spaces ignored)."""
    if isinstance(name, PixelRange):
        return name
    if not isinstance(name, str):
        raise TypeError(f"A pixel range must be a name such as '[0,1]'. Received: {name!r}.")
    key = name.replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in RANGES:
        raise ValueError(
            f"Unknown pixel range. Expected one of {sorted(RANGES)}. Received: {name!r}."
        )
    return RANGES[key]


def check_pixel_size(value: float, *, name: str = "eps", allow_zero: bool = True,
                     allow_subpixel: bool = False) -> float:
    """Validates a size written in pixel levels out of 255 and returns it as float.

    A budget below one pixel level (e.g. ``0.3`` or ``0.031``) is almost always a fraction of the
    range written in the wrong units, so it is refused unless ``allow_subpixel`` (step sizes such
    as PGD-20's 0.003*255=0.765 are legitimately sub-pixel).
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of pixel levels out of 255. Received: {value!r}.")
    if not math.isfinite(v) or v < 0 or v > PIXEL_LEVELS:
        raise ValueError(
            f"{name} must be in pixel levels, between 0 and 255 (e.g. --{name}=8 for 8/255). "
            f"Received: {value!r}."
        )
    if v == 0 and not allow_zero:
        raise ValueError(f"{name} must be positive. Received: {value!r}.")
    if 0 < v < 1 and not allow_subpixel:
        raise ValueError(
            f"{name}={value!r} is below one pixel level. Sizes are in pixel levels out of 255: "
            f"a budget of {v} of the range is --{name}={v * PIXEL_LEVELS:g}. Received: {value!r}."
        )
    return v
