"""Argument and batch checks shared by the attacks (each error names the value received)."""

from __future__ import annotations

import functools
import warnings
from typing import Callable, Optional, Tuple

import keras
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


def check_at_least(value, what: str, minimum: float = 0.0, *,
                   received: Optional[str] = None) -> float:
    """A finite number >= ``minimum`` (a float); the errors end ``Received: <received>.``, by
    default the value's repr (``received="eps=..."`` names the argument)."""
    received = repr(value) if received is None else received
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number >= {minimum:g}. Received: {received}.") from None
    if not np.isfinite(v) or v < minimum:
        raise ValueError(f"{what} must be a finite number >= {minimum:g}. Received: {received}.")
    return v


def check_norm_and_radius(attack: str, norm: str, norms, eps, pixel_range) -> Tuple[str, float]:
    """(``norm``, ``eps``) of a minimum-norm or black-box attack (FAB, Square): ``norm`` one of
    ``norms``, ``eps`` a radius >= 0 in input units (:func:`check_radius`; an Linf radius above
    the range width cannot be in input units, L2 radii may exceed it)."""
    if norm not in norms:
        raise ValueError(f"Unknown norm for {attack}. Expected one of {norms}. Received: {norm!r}.")
    return norm, check_radius(eps, "eps", norm, pixel_range, allow_zero=True)


def check_radius(value, what: str, norm: str, pixel_range, *, allow_zero: bool = False,
                 allow_none: bool = False):
    """The one size check of the attacks: a finite number > 0 (>= 0 with ``allow_zero``) in input
    units; an Linf size must not exceed the width of the pixel range (a pixel-level flag passed
    unconverted). L2 sizes legitimately exceed the width (ImageNet L2 eps=3): no bound there."""
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number in input units. Received: {value!r}.") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} number "
                         f"in input units. Received: {value!r}.")
    if norm == "linf" and v > pixel_range.width:
        raise ValueError(
            f"{what}={value!r} exceeds the width {pixel_range.width:g} of the pixel range "
            f"{pixel_range}. Attacks take sizes in input units: 8 pixel levels are "
            f"{pixel_range.from_pixels(8):.6g} here (tfadv.ranges.get_range("
            f"'{pixel_range}').from_pixels(8)). Received: {what}={value!r}.")
    return v


def check_int(value, what: str, minimum: int) -> int:
    """An integer (int or integral float, not bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) \
            or int(value) != value or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}. Received: {value!r}.")
    return int(value)


def validate_batch(x, y, logits, pixel_range):
    """The one batch check of the attacks and the evaluation runner (eagerly, on the host): a batch
    of images in the pixel range and one label in [0, classes) per image.

    ``x``, ``y``: eager tensors or arrays. ``logits``: the model's logits for some of the images
    (then a softmax output is warned about), the number of classes (an int), or a callable
    returning either, called only once the shapes and the range passed (a model call last).
    Returns ``logits`` (what the callable returned), so that a caller's model call is not repeated."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2:
        raise ValueError(f"Images must be a batch (B, ...). Received shape: {x.shape}.")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"Labels must have shape ({x.shape[0]},) to match the images. "
                         f"Received shape: {y.shape}.")
    pixel_range.check_images(x)
    if callable(logits):
        logits = logits()
    if not isinstance(logits, (int, np.integer)):
        warn_if_probabilities(logits)
    num_classes = logits if isinstance(logits, (int, np.integer)) else int(logits.shape[-1])
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"Labels must be in [0, {num_classes}), the model's {num_classes} "
                         f"classes: check that the labels belong to the model's dataset. "
                         f"Received: min={y.min()}, max={y.max()}.")
    return logits


def model_image_shape(model) -> Optional[Tuple[Optional[int], ...]]:
    """The shape of one image (batch dimension left out) that ``model`` takes, or None where the
    model states none: a Keras model's ``input_shape`` (single input), the model inside a wrapper
    that keeps it as ``.model`` (:class:`tfadv.attacks.core.ModelFn`), or the ``input_shape`` of any
    other callable (a tfadv ``LoadedModel`` states the image shape). A bare function: None."""
    inner = getattr(model, "model", None)
    if not isinstance(model, keras.layers.Layer) and isinstance(inner, keras.layers.Layer):
        model = inner
    try:
        shape = getattr(model, "input_shape", None)
    except (AttributeError, ValueError):  # a Keras model that was never built or called
        return None
    if not isinstance(shape, (tuple, list)) or not all(d is None or isinstance(d, (int, np.integer))
                                                       for d in shape):
        return None  # several inputs, or not a shape
    shape = tuple(None if d is None else int(d) for d in shape)
    if isinstance(model, keras.layers.Layer) or (shape and shape[0] is None):
        shape = shape[1:]  # Keras states the batch dimension first
    return shape


def check_model_input(model, x, what: str = "Images") -> None:
    """Checks a batch ``x`` against what ``model`` takes before the first forward pass, from static
    shapes and dtypes only (eagerly and while tracing; ``x`` may also be a ``tf.TensorSpec``).

    Raises ValueError, naming what the model takes and what was received, for integer (or bool)
    images, a float tensor that is not float32 (NumPy floats are converted as before), and a batch
    whose image shape differs from the model's (an unbatched single image included). A model that
    states no input shape (a bare callable) gets the dtype check only."""
    dtype = getattr(x, "dtype", None)
    dtype = None if dtype is None else tf.as_dtype(dtype)
    shape = tf.TensorShape(x.shape if hasattr(x, "shape") else np.shape(x))
    expected = model_image_shape(model)
    takes = ("images" if expected is None else
             f"images of shape {expected}") + " float32 in its pixel range"
    received = (f"a batch of shape {tuple(shape.as_list()) if shape.rank is not None else shape}"
                f"{'' if dtype is None else ' ' + dtype.name}")
    if dtype is not None and (dtype.is_integer or dtype.is_bool):
        raise ValueError(
            f"{what} must be float32 in the pixel range: the model takes {takes}, but received "
            f"{dtype.name} values. Scale pixel levels 0..255 to the range as float32 first "
            f"(tfadv.ranges.get_range(pixel_range).from_uint8(x)). Received: {received}.")
    if dtype is not None and dtype != tf.float32 and not isinstance(x, np.ndarray):
        raise ValueError(f"{what} must be float32: the model takes {takes}; cast with "
                         f"tf.cast(x, tf.float32). Received: {received}.")
    if expected is None or shape.rank is None:
        return
    dims = shape.as_list()
    if len(dims) == len(expected) and tf.TensorShape(expected).is_compatible_with(shape):
        raise ValueError(f"{what} must be a batch (B, ...): the model takes {takes}; add the batch "
                         f"dimension to a single image with x[None]. Received: a single image of "
                         f"shape {tuple(dims)}.")
    if len(dims) != len(expected) + 1 or not tf.TensorShape(expected).is_compatible_with(
            tf.TensorShape(dims[1:])):
        raise ValueError(f"{what} do not fit the model: the model takes {takes}. Resize the images "
                         f"or evaluate on the dataset the model was built for. Received: {received}.")


def as_class_ids(y, what: str = "Labels"):
    """``y`` as int32 class ids. Integer labels pass; float labels only where every value is a whole
    number (never truncated: 1.7 is refused, not read as class 1); anything else is refused.
    Eagerly the error names the offending values; in a graph an assertion stops the step."""
    y = tf.convert_to_tensor(y)
    if y.dtype.is_integer:
        return tf.cast(y, tf.int32)
    if not y.dtype.is_floating:
        raise ValueError(f"{what} must be integer class ids. Received: dtype {y.dtype.name}.")
    whole = tf.reduce_all(tf.equal(y, tf.round(y)))
    if tf.executing_eagerly():
        if not bool(whole):
            values = y.numpy().ravel()
            bad = values[values != np.round(values)]
            raise ValueError(f"{what} must be integer class ids; float labels are not truncated. "
                             f"Received: {bad[:5].tolist()} ({y.dtype.name}).")
    else:
        check = tf.debugging.Assert(whole, [f"{what} must be integer class ids; float labels are "
                                            f"not truncated. Received:", y])
        with tf.control_dependencies([check]):
            y = tf.identity(y)
    return tf.cast(y, tf.int32)


def checking_input(call):
    """An attack's ``__call__(self, model_fn, x, y, ...)`` preceded by :func:`check_model_input`
    and with ``y`` made class ids by :func:`as_class_ids` (applied to every subclass of
    :class:`tfadv.attacks.Attack` when it is defined)."""

    @functools.wraps(call)
    def checked(self, *args, **kwargs):
        model_fn = args[0] if args else kwargs.get("model_fn")
        x = args[1] if len(args) > 1 else kwargs.get("x")
        if x is not None:
            check_model_input(model_fn, x)
        if len(args) > 2 and args[2] is not None:
            args = (*args[:2], as_class_ids(args[2]), *args[3:])
        elif kwargs.get("y") is not None:
            kwargs["y"] = as_class_ids(kwargs["y"])
        return call(self, *args, **kwargs)

    return checked


def warn_if_probabilities(outputs) -> None:
    """Warns when a model's outputs look like probabilities rather than logits: every row is
    non-negative and sums to 1 (within 1e-3). Attacks and the CW/DLR losses assume logits; the
    results are left as they are. ``outputs``: an eager (B, classes) tensor or array."""
    out = np.asarray(outputs, np.float64)
    if out.ndim != 2 or out.shape[0] == 0 or out.shape[1] < 2:
        return
    sums = out.sum(axis=-1)
    if out.min() >= 0 and np.all(np.abs(sums - 1.0) <= 1e-3):
        warnings.warn(
            "The model's outputs look like probabilities (softmax): every row is non-negative and "
            "sums to 1. Attacks and the CW/DLR losses assume logits, so their gradients and margins "
            "are those of the wrong function. Pass the pre-softmax logits (drop the final softmax "
            "activation) or wrap the model with tf.math.log(model(x)) (log-probabilities are "
            f"logits up to a constant). Received: outputs of shape {out.shape} with min "
            f"{out.min():.4g} and row sums in [{sums.min():.6f}, {sums.max():.6f}].",
            UserWarning, stacklevel=3)


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
