"""Per-image training augmentations for :func:`tfadv.data.load`.

Every augmentation is a pure-TensorFlow, graph-safe function ``fn(image, seed) -> image`` acting on
one ``uint8`` image of shape ``(H, W, C)`` *before* it is mapped into the pixel range, with
``seed`` a stateless-RNG seed (an int32/int64 tensor of shape ``(2,)``). Randomness comes only from
``tf.random`` / ``tf.image`` *stateless* ops, so a pipeline built with a fixed ``seed`` produces the
same augmented images on every run, whatever the map parallelism.

Padding is done with zeros in uint8 space, i.e. with black pixels (the low end of any pixel range):

* ``crop_flip`` (CIFAR-10/100): pad 4 pixels on each side, take a random crop of the original size,
  flip left-right with probability 1/2. This is Madry et al.'s CIFAR-10 augmentation
  (``resize_image_with_crop_or_pad`` to 40x40, random 32x32 crop, random flip) and TRADES'
  ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``.
* ``crop`` (SVHN): the same pad-4 random crop, *without* flipping (digits are not flip invariant).

MNIST, ``digits`` and ``npz:`` datasets are not augmented by default. Which dataset uses which
augmentation is :data:`DEFAULT_AUGMENTATION`; new augmentations are registered in
:data:`AUGMENTATIONS` (``@AUGMENTATIONS.register("name")``).
"""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

from tfadv.registry import Registry

AugmentFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

AUGMENTATIONS = Registry("augmentation")

#: Dataset name -> name of its default training augmentation (datasets not listed: none).
DEFAULT_AUGMENTATION = {
    "cifar10": "crop_flip",
    "cifar100": "crop_flip",
    "svhn": "crop",
}

#: Pixels of zero padding before the random crop (pad-to-40 for 32x32 images).
PADDING = 4


def _split_seed(seed: tf.Tensor, num: int) -> tf.Tensor:
    """Derives ``num`` independent stateless seeds (shape ``(num, 2)``) from one seed."""
    seed = tf.cast(seed, tf.int64)
    return tf.random.experimental.stateless_split(seed, num=num)


def pad_and_random_crop(image: tf.Tensor, seed: tf.Tensor, padding: int = PADDING) -> tf.Tensor:
    """Zero-pads ``padding`` pixels on every side, then crops back to the original size at random.

    The output has the input's shape and dtype; content is shifted by up to ``padding`` pixels in
    each direction, with black pixels entering from the border.
    """
    image = tf.convert_to_tensor(image)
    static_shape = image.shape
    size = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    cropped = tf.image.stateless_random_crop(padded, size=size, seed=seed)
    cropped.set_shape(static_shape)
    return cropped


@AUGMENTATIONS.register("crop")
def crop(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Pad-4 random crop only (SVHN): no flip, digits are not flip invariant."""
    return pad_and_random_crop(image, seed)


@AUGMENTATIONS.register("crop_flip")
def crop_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Pad-4 random crop + random horizontal flip (CIFAR-10/100, as Madry et al. and TRADES)."""
    seeds = _split_seed(seed, 2)
    image = pad_and_random_crop(image, seeds[0])
    return tf.image.stateless_random_flip_left_right(image, seed=seeds[1])


@AUGMENTATIONS.register("flip")
def flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Random horizontal flip only."""
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def resolve(dataset: str, augment) -> Optional[AugmentFn]:
    """Returns the augmentation a training pipeline of ``dataset`` should use, or None.

    Args:
        dataset: registry name of the dataset (``"cifar10"``, ``"npz"``, ...).
        augment: ``None`` or ``True`` for the dataset's default (:data:`DEFAULT_AUGMENTATION`,
            possibly none), ``False`` or ``"none"`` for no augmentation, or the name of a registered
            augmentation (e.g. ``"crop_flip"`` for a CIFAR-like ``npz:`` file).
    """
    if augment is None or augment is True:
        name = DEFAULT_AUGMENTATION.get(dataset)
        return None if name is None else AUGMENTATIONS.lookup(name)
    if augment is False:
        return None
    if isinstance(augment, str):
        if augment.strip().lower() in ("none", ""):
            return None
        return AUGMENTATIONS.lookup(augment)
    raise ValueError(
        "augment must be None (dataset default), True, False, or the name of an augmentation "
        f"({', '.join(AUGMENTATIONS.names())}). Received: {augment!r}."
    )
