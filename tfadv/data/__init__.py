"""Datasets as ``tf.data`` pipelines: one entry point, :func:`load`.

    from tfadv import data
    ds, info = data.load("cifar10", "train", batch_size=128, pixel_range="[-1,1]", seed=0)

Elements are ``(images float32 (B,H,W,C) in the pixel range, labels int32 (B,))``. Images are
mapped from uint8 with :meth:`tfadv.ranges.PixelRange.from_uint8`: ``[0,1]`` is ``x/255`` and
``[-1,1]`` is ``2*(x/255-0.5)`` (the BAT / ImageNet-Adversarial-Training convention).

Registered datasets (:func:`names`): ``mnist``, ``cifar10``, ``cifar100``, ``svhn`` (tfds, must be
prepared in ``--data_dir``; nothing is downloaded), ``digits`` (scikit-learn's bundled 8x8 digits,
the offline default for quick runs) and ``npz:PATH`` (a Keras-layout npz file).

:func:`validation_plan` (:mod:`tfadv.data.holdout`) picks the validation examples of a training
run: by default a held-out slice of the training split, excluded from training.
"""

from tfadv.data import sources as _sources  # noqa: F401  (registers the datasets)
from tfadv.data import holdout
from tfadv.data.augment import AUGMENTATIONS, DEFAULT_AUGMENTATION
from tfadv.data.core import (
    DATASETS,
    DatasetInfo,
    DatasetNotPreparedError,
    Source,
    info,
    load,
    names,
)
from tfadv.data.holdout import VAL_SPLITS, ValidationPlan, validation_plan

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "DEFAULT_AUGMENTATION",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "Source",
    "VAL_SPLITS",
    "ValidationPlan",
    "holdout",
    "info",
    "load",
    "names",
    "validation_plan",
]
