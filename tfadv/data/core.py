"""The dataset registry and :func:`load`, which turns a source into a ``tf.data`` pipeline.

A *source* (see :mod:`tfadv.data.sources`) yields unbatched ``(uint8 image (H,W,C), integer
label)`` pairs in a fixed order. :func:`load` adds, in this order:

1. ``take(limit)`` -- the first ``limit`` examples, before any shuffling;
   with ``num_shards > 1``, then this input pipeline's share of them (see :func:`load`);
2. training only: ``shuffle`` (seeded when ``seed`` is given, reshuffled every iteration);
3. training only: the dataset's per-image augmentation (:mod:`tfadv.data.augment`), on uint8
   images, with stateless per-example seeds from ``tf.data.Dataset.random`` (deterministic when
   ``seed`` is given, different every epoch);
4. ``batch``;
5. conversion to ``float32`` in the declared pixel range with
   :meth:`tfadv.ranges.PixelRange.from_uint8` (``[-1,1]`` is ``2*(x/255-0.5)``, the BAT /
   ImageNet-Adversarial-Training convention) and labels to ``int32``;
6. ``prefetch``.

Adding a dataset is one function in :mod:`tfadv.data.sources` decorated with
``@DATASETS.register("name")`` (``imagenet`` will be added this way by a later issue).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Optional, Tuple, Union

import tensorflow as tf

from tfadv import ranges
from tfadv.data import augment as augment_lib
from tfadv.registry import Registry

DATASETS = Registry("dataset")

#: Base split names every dataset accepts.
SPLITS = ("train", "test")

#: Datasets addressed as ``prefix:ARGUMENT`` (e.g. ``npz:/path/file.npz``).
PREFIXED = ("npz",)

_SPLIT_RE = re.compile(r"^(?P<base>[A-Za-z_]+)(?P<slice>\[[^\[\]]*\])?$")


class DatasetNotPreparedError(ValueError):
    """A tfds dataset is not present in the data directory and cannot be downloaded here."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What :func:`load` returns next to the pipeline.

    Attributes:
        name: canonical dataset name (``"cifar10"``, ``"svhn"``, ``"npz:/path/file.npz"``).
        split: the split as requested (``"train"``, ``"test"``, ``"train[:1000]"``).
        num_classes: number of classes; labels lie in ``[0, num_classes)``.
        image_shape: ``(H, W, C)`` of one image.
        num_examples: examples in one pass of the pipeline (after ``limit``); ``None`` only if the
            source cannot tell.
        pixel_range: the :class:`tfadv.ranges.PixelRange` the images lie in.
    """

    name: str
    split: str
    num_classes: int
    image_shape: Tuple[int, int, int]
    num_examples: Optional[int]
    pixel_range: ranges.PixelRange


@dataclasses.dataclass(frozen=True)
class Source:
    """What a registered dataset function returns.

    Attributes:
        dataset: unbatched ``(image, label)`` pairs, images ``uint8`` ``(H, W, C)`` with values
            0..255, labels integer; fixed order unless the source was asked to shuffle files.
        num_classes: number of classes.
        image_shape: ``(H, W, C)``.
        num_examples: size of ``dataset`` (``None`` if unknown).
        split_examples: for a source that shards itself (its function takes ``shard_index`` and
            ``num_shards``, e.g. ImageNet's file list split before decoding), the size of the
            whole split, of which ``dataset`` is shard ``shard_index`` (``records[i::n]``);
            ``None`` otherwise.
    """

    dataset: tf.data.Dataset
    num_classes: int
    image_shape: Tuple[int, int, int]
    num_examples: Optional[int]
    split_examples: Optional[int] = None


_COMMON_SOURCE_ARGS = ("split", "data_dir", "argument", "shuffle_files", "seed")
#: Keyword options of a source that shards itself (before decoding); other sources are sharded
#: with ``tf.data.Dataset.shard`` in :func:`load`.
_SHARD_ARGS = ("shard_index", "num_shards")


def names():
    """The registered dataset names (``npz`` is used as ``npz:PATH``)."""
    return list(DATASETS.names())


def parse_name(name: str) -> Tuple[str, Optional[str]]:
    """Splits ``"npz:PATH"`` into ``("npz", "PATH")``; plain names give ``(name, None)``.

    Raises ValueError for unknown names and for a prefixed dataset given without its argument.
    """
    if not isinstance(name, str):
        raise ValueError(f"A dataset name must be a string. Received: {name!r}.")
    stripped = name.strip()
    key, sep, argument = stripped.partition(":")
    key = key.strip().lower()
    if sep:
        if key not in PREFIXED:
            raise ValueError(
                f"Unknown dataset {name!r}: only {', '.join(p + ':PATH' for p in PREFIXED)} take "
                f"an argument after ':'. Expected one of: {', '.join(names())}. Received: {name!r}."
            )
        if not argument.strip():
            raise ValueError(
                f"Dataset '{key}' needs a path: --dataset={key}:PATH. Received: {name!r}."
            )
        DATASETS.lookup(key)
        return key, argument.strip()
    if key in PREFIXED:
        raise ValueError(
            f"Dataset '{key}' needs a path: --dataset={key}:PATH (a Keras-layout .npz file). "
            f"Received: {name!r}."
        )
    DATASETS.lookup(key)  # Raises "Unknown dataset ... Expected one of ... Received: ...".
    return key, None


def parse_split(split: str, *, dataset: str, allow_slicing: bool = True) -> Tuple[str, str]:
    """Validates a split and returns ``(base, split)``, e.g. ``("train", "train[:1000]")``.

    Accepted: ``"train"``, ``"test"``, and, when ``allow_slicing``, tfds slicing syntax on them
    (``"train[:1000]"``, ``"test[:10%]"``; in-memory datasets take integer slices only, see
    :func:`slice_arrays`).
    """
    if not isinstance(split, str):
        raise ValueError(f"A split must be a string such as 'train'. Received: {split!r}.")
    text = split.replace(" ", "")
    match = _SPLIT_RE.match(text)
    base = match.group("base").lower() if match else None
    if base not in SPLITS:
        hint = " (or a tfds slice such as 'train[:1000]')" if allow_slicing else ""
        raise ValueError(
            f"Unknown split for dataset '{dataset}'. Expected one of {list(SPLITS)}{hint}. "
            f"Received: {split!r}."
        )
    if match.group("slice") and not allow_slicing:
        raise ValueError(
            f"Dataset '{dataset}' does not support split slicing; use split='{base}' with "
            f"limit=N to take the first N examples. Received: {split!r}."
        )
    return base, base + (match.group("slice") or "")


_INT_SLICE_RE = re.compile(r"^\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


def slice_arrays(split: str, arrays, *, dataset: str):
    """``arrays`` (same length, the whole base split) cut to ``split``'s slice.

    In-memory datasets take integer slices with Python's meaning, in the split's own order:
    ``"train[:-100]"`` (all but the last 100), ``"train[-100:]"``, ``"test[10:20]"``. Other slice
    forms, and a slice that selects nothing, are errors naming the split.
    """
    base, full = parse_split(split, dataset=dataset)
    text = full[len(base):]
    if not text:
        return arrays
    match = _INT_SLICE_RE.match(text)
    if not match:
        raise ValueError(f"Dataset '{dataset}' takes integer slices such as '{base}[:-100]' or "
                         f"'{base}[-100:]'. Received: {split!r}.")
    bounds = slice(*(int(v) if v else None for v in (match.group("start"), match.group("stop"))))
    out = [a[bounds] for a in arrays]
    if len(out[0]) == 0:
        raise ValueError(f"Split {split!r} of dataset '{dataset}' selects no examples (the split "
                         f"has {len(arrays[0])}). Received: {split!r}.")
    return out


def _check_positive_int(value, what: str, *, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer. Received: {value!r}.")
    return value


def _source(name: str, split: str, data_dir, *, training: bool, seed, limit, options=None,
            shard=(0, 1)):
    """``(key, canonical name, Source)``; ``shard`` is ``(shard_index, num_shards)``, passed to
    sources that take them (they shard themselves and report ``split_examples``)."""
    key, argument = parse_name(name)
    factory = DATASETS.lookup(key)
    canonical = key if argument is None else f"{key}:{argument}"
    options = dict(options or {})
    accepted = inspect.signature(factory).parameters
    own = _COMMON_SOURCE_ARGS + _SHARD_ARGS
    if options:
        unknown = sorted(k for k in options if k not in accepted or k in _SHARD_ARGS)
        if unknown:
            raise ValueError(f"Dataset {key!r} takes no option(s) {unknown}; its options are "
                             f"{sorted(k for k in accepted if k not in own)} (shards: load's "
                             f"shard_index/num_shards). Received: {options!r}.")
    shuffle_files = training and limit is None
    if all(k in accepted for k in _SHARD_ARGS):
        options.update(zip(_SHARD_ARGS, shard))
    elif shard[1] > 1:  # Dataset.shard needs the same order on every worker (tfds: unseeded)
        shuffle_files = False
    source = factory(split, data_dir=data_dir, argument=argument, shuffle_files=shuffle_files,
                     seed=seed, **options)
    return key, canonical, source


def _check_shard(shard_index, num_shards) -> Tuple[int, int]:
    _check_positive_int(num_shards, "num_shards")
    if isinstance(shard_index, bool) or not isinstance(shard_index, int) or \
            not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be an integer in [0, num_shards={num_shards}). "
                         f"Received: shard_index={shard_index!r}.")
    return shard_index, num_shards


def _take_shard(source: Source, limit, shard):
    """This input pipeline's share of the first ``limit`` examples of ``source``, and its size
    (``None``: unsharded, the count of :func:`_info`).

    With ``num_shards = n > 1`` every shard gets the same number of examples,
    ``floor(min(N, limit) / n)``: shard ``i`` is examples ``i, i+n, i+2n, ...`` of the first
    ``n * floor(min(N, limit) / n)`` (the last ``min(N, limit) % n``, at most ``n - 1``, are in no
    shard), so the shards are disjoint, their union is that prefix, and every worker of a
    multi-worker run takes the same number of steps (its collectives would hang otherwise).
    """
    shard_index, num_shards = shard
    ds = source.dataset
    if num_shards == 1:
        return (ds if limit is None else ds.take(limit)), None
    self_sharded = source.split_examples is not None
    total = source.split_examples if self_sharded else source.num_examples
    if total is None:
        raise ValueError(f"Cannot split a dataset of unknown size into {num_shards} equal shards. "
                         f"Received: num_shards={num_shards!r}.")
    available = total if limit is None else min(total, limit)
    per_shard = available // num_shards
    if per_shard < 1:
        raise ValueError(f"num_shards is larger than the {available} examples; every shard needs "
                         f"at least one. Received: num_shards={num_shards!r}.")
    if self_sharded:  # ``records[i::n]``: its first per_shard are examples i, i+n, ... as below
        return ds.take(per_shard), per_shard
    return ds.take(per_shard * num_shards).shard(num_shards, shard_index), per_shard


def _info(canonical, split, source: Source, limit, pixel_range) -> DatasetInfo:
    num_examples = source.num_examples
    if limit is not None and num_examples is not None:
        num_examples = min(limit, num_examples)
    elif limit is not None:
        num_examples = None
    return DatasetInfo(
        name=canonical,
        split=split.strip(),
        num_classes=int(source.num_classes),
        image_shape=tuple(int(d) for d in source.image_shape),
        num_examples=None if num_examples is None else int(num_examples),
        pixel_range=pixel_range,
    )


def info(name: str, split: str = "train", *, data_dir: Optional[str] = None,
         pixel_range: Union[str, ranges.PixelRange] = "[0,1]", limit: Optional[int] = None,
         **source_options) -> DatasetInfo:
    """Returns the :class:`DatasetInfo` that ``load`` would return, without iterating anything.
    ``source_options`` are the dataset's own keyword options (see :func:`load`)."""
    pixel_range = ranges.get_range(pixel_range)
    _check_positive_int(limit, "limit", allow_none=True)
    _, canonical, source = _source(name, split, data_dir, training=False, seed=None, limit=limit,
                                   options=source_options)
    return _info(canonical, split, source, limit, pixel_range)


def load(name: str, split: str = "train", *, batch_size: int = 128,
         pixel_range: Union[str, ranges.PixelRange] = "[0,1]", training: Optional[bool] = None,
         data_dir: Optional[str] = None, shuffle_buffer: int = 10_000, seed: Optional[int] = None,
         drop_remainder: bool = False, limit: Optional[int] = None, augment=None,
         shard_index: int = 0, num_shards: int = 1,
         **source_options) -> Tuple[tf.data.Dataset, DatasetInfo]:
    """Builds a batched ``tf.data`` pipeline of ``(images, labels)``.

    Args:
        name: a registered dataset (:func:`names`): ``mnist``, ``cifar10``, ``cifar100``,
            ``svhn`` (tfds, must be prepared in ``data_dir``), ``digits`` (scikit-learn, offline),
            or ``npz:PATH`` (a Keras-layout npz file).
        split: ``"train"`` or ``"test"``, or a slice of one: ``"train[:-1000]"`` (tfds slicing
            for tfds datasets; integer slices for ``digits``, ``npz:PATH`` and ``imagenet``).
        batch_size: examples per batch.
        pixel_range: ``"[0,1]"`` or ``"[-1,1]"`` (or a PixelRange); images are mapped with
            :meth:`PixelRange.from_uint8`, so ``[-1,1]`` is exactly ``2*(x/255-0.5)``.
        training: whether to build a training pipeline (shuffled, augmented). Defaults to whether
            the split is ``train`` (slices of train included). Eval pipelines are neither shuffled
            nor augmented and yield the same batches in the same order on every iteration.
        data_dir: tfds data directory (default: tfds' own, ``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``). Nothing is ever downloaded.
        shuffle_buffer: shuffle buffer size for training pipelines.
        seed: makes shuffling and augmentation deterministic (each epoch still differs).
        drop_remainder: drop the last incomplete batch.
        limit: use only the first ``limit`` examples of the split (taken before shuffling).
        augment: ``None``/``True`` for the dataset's default augmentation (CIFAR: pad-4 crop +
            flip; SVHN: pad-4 crop; others none), ``False`` for none, or the name of an
            augmentation in :data:`tfadv.data.augment.AUGMENTATIONS`. Ignored when not training.
        shard_index, num_shards: this input pipeline's share (one per worker host of a
            multi-worker run): examples ``shard_index, shard_index + num_shards, ...`` of the
            first ``limit``, taken before shuffling and batching; all shards have the same size
            ``floor(min(N, limit) / num_shards)``, so at most ``num_shards - 1`` examples are in
            none. ImageNet splits its file list before decoding; other sources use
            ``tf.data.Dataset.shard`` on their fixed order (tfds: files unshuffled; each host
            reads every file and keeps its share).
        **source_options: keyword options of the registered dataset function itself (e.g.
            ImageNet's ``image_size``, ``lmdb``, ``num_workers``); an option the dataset does not
            take is an error naming the ones it does.

    Returns:
        ``(dataset, info)``: ``dataset`` yields ``float32`` images ``(B, H, W, C)`` in
        ``pixel_range`` and ``int32`` labels ``(B,)``; ``info`` is a :class:`DatasetInfo` (its
        ``num_examples`` counts this shard's examples).
    """
    pixel_range = ranges.get_range(pixel_range)
    _check_positive_int(batch_size, "batch_size")
    shard = _check_shard(shard_index, num_shards)
    _check_positive_int(shuffle_buffer, "shuffle_buffer")
    _check_positive_int(limit, "limit", allow_none=True)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or None. Received: {seed!r}.")
    if training is None:
        base = split.replace(" ", "").split("[", 1)[0].lower() if isinstance(split, str) else None
        training = base == "train"
    training = bool(training)
    augment_fn = None
    if training:
        key, _ = parse_name(name)
        augment_fn = augment_lib.resolve(key, augment)

    key, canonical, source = _source(name, split, data_dir, training=training, seed=seed,
                                     limit=limit, options=source_options, shard=shard)
    height, width, channels = source.image_shape
    ds, shard_examples = _take_shard(source, limit, shard)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if augment_fn is not None:
            aug_seed = None if seed is None else (seed + 1) % 2**63
            seeds = tf.data.Dataset.random(seed=aug_seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                lambda example, s: (augment_fn(example[0], s), example[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_range(images, labels):
        images = tf.ensure_shape(images, [None, height, width, channels])
        return pixel_range.from_uint8(images), tf.cast(labels, tf.int32)

    ds = ds.map(to_range, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    info = _info(canonical, split, source, limit, pixel_range)
    if shard_examples is not None:
        info = dataclasses.replace(info, num_examples=shard_examples)
    return ds, info
