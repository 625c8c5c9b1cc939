"""Dataset sources: one registered function per dataset.

Each function has the signature
``fn(split, *, data_dir=None, argument=None, shuffle_files=False, seed=None) -> core.Source``
and returns *unbatched* ``(uint8 image (H,W,C), integer label)`` pairs; :func:`tfadv.data.load`
does the rest (limit, shuffle, augmentation, batching, pixel range). ``argument`` is the ``PATH``
of ``npz:PATH`` and ``None`` otherwise.

Nothing is downloaded: tfds datasets must already be prepared in ``data_dir``
(``--data_dir=DIR``); ``digits`` (scikit-learn's bundled copy) and ``npz:PATH`` work offline.
"""

from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from tfadv.data.core import DATASETS, DatasetNotPreparedError, Source, parse_split, slice_arrays

REQUIRED_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


# --------------------------------------------------------------------------------------- tfds


def _default_tfds_data_dir() -> str:
    try:
        from tensorflow_datasets.core import constants

        return constants.get_default_data_dir()
    except Exception:  # pragma: no cover - only a message detail.
        return os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))


def _not_prepared(name: str, tfds_name: str, data_dir: Optional[str], error: Exception):
    searched = data_dir if data_dir is not None else _default_tfds_data_dir()
    return DatasetNotPreparedError(
        f"Dataset '{name}' (tfds '{tfds_name}') is not prepared in the tfds data directory "
        f"{searched!r}, and nothing is downloaded here (download=False). Either pass "
        f"--data_dir=DIR pointing at a tfds data directory where '{tfds_name}' has been prepared "
        f"(e.g. with `tfds build {tfds_name} --data_dir=DIR` on a machine with internet access), "
        f"or pass --dataset=npz:PATH with a Keras-layout npz file (x_train, y_train, x_test, "
        f"y_test), or --dataset=digits for an offline quick run. "
        f"Received: dataset={name!r}, data_dir={data_dir!r}. tfds said: {error}"
    )


def tfds_source(name: str, tfds_name: str, split: str, *, data_dir=None, shuffle_files=False,
                seed=None) -> Source:
    """Loads ``tfds_name`` with ``tfds.load(..., download=False, as_supervised=True)``.

    Raises:
        DatasetNotPreparedError: the dataset is not prepared in ``data_dir`` (tfds 4.9 raises
            ``AssertionError("Dataset ...: could not find data in ...")`` for that; an unknown tfds
            name gives ``DatasetNotFoundError``).
    """
    _, split = parse_split(split, dataset=name, allow_slicing=True)
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(shuffle_seed=seed) if shuffle_files else None
    try:
        ds, tfds_info = tfds.load(
            tfds_name, split=split, data_dir=data_dir, download=False, as_supervised=True,
            with_info=True, shuffle_files=shuffle_files, read_config=read_config,
        )
    except (AssertionError, tfds.core.registered.DatasetNotFoundError, FileNotFoundError) as e:
        raise _not_prepared(name, tfds_name, data_dir, e) from e
    image_shape = tuple(tfds_info.features["image"].shape)
    num_classes = tfds_info.features["label"].num_classes
    num_examples = int(ds.cardinality())
    if num_examples < 0:  # Unknown or infinite: fall back to the recorded split sizes.
        try:
            num_examples = int(tfds_info.splits[split].num_examples)
        except Exception:
            num_examples = None
    return Source(ds, num_classes=num_classes, image_shape=image_shape,
                  num_examples=num_examples)


@DATASETS.register("mnist")
def mnist(split, *, data_dir=None, argument=None, shuffle_files=False, seed=None) -> Source:
    """MNIST from tfds (28x28x1, 10 classes; 60,000 train / 10,000 test)."""
    return tfds_source("mnist", "mnist", split, data_dir=data_dir, shuffle_files=shuffle_files,
                       seed=seed)


@DATASETS.register("cifar10")
def cifar10(split, *, data_dir=None, argument=None, shuffle_files=False, seed=None) -> Source:
    """CIFAR-10 from tfds (32x32x3, 10 classes; 50,000 train / 10,000 test)."""
    return tfds_source("cifar10", "cifar10", split, data_dir=data_dir,
                       shuffle_files=shuffle_files, seed=seed)


@DATASETS.register("cifar100")
def cifar100(split, *, data_dir=None, argument=None, shuffle_files=False, seed=None) -> Source:
    """CIFAR-100 from tfds, fine labels (32x32x3, 100 classes; 50,000 train / 10,000 test)."""
    return tfds_source("cifar100", "cifar100", split, data_dir=data_dir,
                       shuffle_files=shuffle_files, seed=seed)


@DATASETS.register("svhn")
def svhn(split, *, data_dir=None, argument=None, shuffle_files=False, seed=None) -> Source:
    """SVHN cropped digits from tfds ``svhn_cropped`` (32x32x3, 10 classes; 73,257 train /
    26,032 test). Only ``train`` and ``test``: the ``extra`` split is not offered."""
    return tfds_source("svhn", "svhn_cropped", split, data_dir=data_dir,
                       shuffle_files=shuffle_files, seed=seed)


# ------------------------------------------------------------------------------------- digits

DIGITS_TEST_FRACTION = 0.2


@functools.lru_cache(maxsize=1)
def digits_arrays():
    """Returns ``{"train": (x, y), "test": (x, y)}`` for scikit-learn's digits, as NumPy arrays.

    Images are uint8 ``(N, 8, 8, 1)``: the 0..16 gray levels mapped to 0..255 by
    ``round(x * 255 / 16)``; labels int64. The split is stratified and fixed: for each class
    ``k`` (in order 0..9), its indices are permuted with one shared ``np.random.RandomState(0)``
    and the first ``round(0.2 * n_k)`` go to test; both splits keep the original order of
    scikit-learn's file. This gives 1,438 train and 359 test examples (1,797 in all).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    rng = np.random.RandomState(0)
    test_mask = np.zeros(len(labels), dtype=bool)
    for k in range(10):
        idx = np.flatnonzero(labels == k)
        n_test = int(round(DIGITS_TEST_FRACTION * len(idx)))
        test_mask[rng.permutation(idx)[:n_test]] = True
    return {
        "train": (images[~test_mask], labels[~test_mask]),
        "test": (images[test_mask], labels[test_mask]),
    }


@DATASETS.register("digits")
def digits(split, *, data_dir=None, argument=None, shuffle_files=False, seed=None) -> Source:
    """scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``).

    The offline default for quick runs: shape ``(8, 8, 1)``, 10 classes, no augmentation. Pixel
    values 0..16 become uint8 ``round(x*255/16)``. Fixed stratified split, ~80/20, seeded with
    ``np.random.RandomState(0)``: 1,438 train / 359 test (see :func:`digits_arrays`). Integer
    slices (``train[:-143]``) index that order (:func:`tfadv.data.core.slice_arrays`).
    """
    base, _ = parse_split(split, dataset="digits")
    x, y = slice_arrays(split, digits_arrays()[base], dataset="digits")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    return Source(ds, num_classes=10, image_shape=(8, 8, 1), num_examples=len(x))


# ---------------------------------------------------------------------------------------- npz


def _npz_error(path: str, message: str) -> ValueError:
    return ValueError(f"Invalid npz dataset {path!r}: {message}")


def _validate_npz_images(path: str, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or min(x.shape[1:], default=0) < 1:
        raise _npz_error(path, f"{key} must have shape (N,H,W) or (N,H,W,C). "
                               f"Received: shape {x.shape}.")
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.integer)
                                   or np.issubdtype(x.dtype, np.floating)):
        raise _npz_error(path, f"{key} must hold uint8 pixel levels 0..255. "
                               f"Received: dtype {x.dtype}.")
    if x.size == 0:
        return x.astype(np.uint8)
    lo, hi = x.min(), x.max()
    if np.issubdtype(x.dtype, np.floating):
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise _npz_error(path, f"{key} contains NaN or Inf. Received: min={lo}, max={hi}.")
        if hi <= 1.0:
            raise _npz_error(
                path, f"{key} looks like float images in [0,1]; images must be pixel levels "
                      f"0..255 (store np.round(x * 255).astype('uint8')). "
                      f"Received: dtype {x.dtype}, min={lo:g}, max={hi:g}.")
        if not np.all(np.equal(np.mod(x, 1), 0)):
            raise _npz_error(path, f"{key} must hold integer pixel levels 0..255. "
                                   f"Received: non-integer float values (dtype {x.dtype}, "
                                   f"min={lo:g}, max={hi:g}).")
    if lo < 0 or hi > 255:
        raise _npz_error(path, f"{key} must hold pixel levels 0..255. "
                               f"Received: dtype {x.dtype}, min={lo:g}, max={hi:g}.")
    return x.astype(np.uint8)


def _validate_npz_labels(path: str, key: str, y: np.ndarray) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:  # Keras' CIFAR layout: (N, 1).
        y = y[:, 0]
    if y.ndim != 1:
        raise _npz_error(path, f"{key} must have shape (N,) or (N,1). Received: shape {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        raise _npz_error(path, f"{key} must hold integer class ids. Received: dtype {y.dtype}.")
    if y.size and y.min() < 0:
        raise _npz_error(path, f"{key} must be non-negative class ids. "
                               f"Received: min label {int(y.min())}.")
    return y.astype(np.int64)


def _npz_shape(archive, key: str):
    """The shape of ``archive[key]`` read from its .npy header, without loading the array."""
    with archive.zip.open(key + ".npy") as f:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, _ = read_header(f)
    return tuple(shape) + ((1,) if len(shape) == 3 else ())


def _npz_num_classes(path: str, labels: dict) -> int:
    """The class count of the training labels (10 if the largest is below 10, else ``max + 1``);
    a test label outside it is an error, so that neither split changes the model's class count."""
    train, test = labels["train"], labels["test"]
    num_classes = 10 if int(train.max()) < 10 else int(train.max()) + 1
    outside = test[test >= num_classes]
    if outside.size:
        raise _npz_error(path, f"y_test holds labels outside the {num_classes} classes of y_train "
                               f"(0..{num_classes - 1}); the model would get the wrong class count. "
                               f"Received: y_test label(s) {sorted(set(outside.tolist()))}.")
    return num_classes


def load_npz(path: str, split: str):
    """Loads and validates one split of a Keras-layout npz file.

    Returns ``(x uint8 (N,H,W,C), y int64 (N,), num_classes)``. Both splits are checked on every
    call (before any training step): neither may be empty, their image shapes must agree, and
    ``num_classes`` comes from the *training* labels -- 10 if the largest is below 10 (MNIST-,
    CIFAR-10-, SVHN-like files, even when a subset misses a class), else ``max + 1`` -- with a test
    label outside that range an error naming it.
    """
    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded):
        raise ValueError(
            f"npz dataset file not found: {expanded!r}. Pass --dataset=npz:PATH with an existing "
            f"Keras-layout .npz file. Received: {path!r}."
        )
    try:
        archive = np.load(expanded, allow_pickle=False)
    except Exception as e:
        raise _npz_error(path, f"could not be read with np.load(allow_pickle=False) ({e}). "
                               f"Received: {path!r}.") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _npz_error(path, f"expected an .npz archive with keys {list(REQUIRED_NPZ_KEYS)}. "
                               f"Received: a single array in {path!r}.")
    with archive:
        found = sorted(archive.files)
        missing = [k for k in REQUIRED_NPZ_KEYS if k not in archive.files]
        if missing:
            raise _npz_error(path, f"missing keys {missing}; the Keras layout needs "
                                   f"{list(REQUIRED_NPZ_KEYS)}. Received: keys {found}.")
        try:
            x = archive[f"x_{split}"]
            labels = {s: archive[f"y_{s}"] for s in ("train", "test")}
        except ValueError as e:  # Object arrays need pickle.
            raise _npz_error(path, f"holds arrays that need pickle ({e}). "
                                   f"Received: {path!r}.") from e
        shapes = {s: _npz_shape(archive, f"x_{s}") for s in ("train", "test")}
    x = _validate_npz_images(path, f"x_{split}", x)
    labels = {s: _validate_npz_labels(path, f"y_{s}", y) for s, y in labels.items()}
    for s, shape in shapes.items():
        if not shape or shape[0] == 0 or labels[s].size == 0:
            raise _npz_error(path, f"x_{s} and y_{s} must hold at least one example. "
                                   f"Received: x_{s} shape {shape}, y_{s} shape {labels[s].shape}.")
    if shapes["train"][1:] != shapes["test"][1:]:
        raise _npz_error(path, f"x_train and x_test must have the same image shape (H,W,C). "
                               f"Received: x_train {shapes['train'][1:]}, "
                               f"x_test {shapes['test'][1:]}.")
    y = labels[split]
    if len(x) != len(y):
        raise _npz_error(path, f"x_{split} and y_{split} must have the same length. "
                               f"Received: len(x_{split})={len(x)}, len(y_{split})={len(y)}.")
    return x, y, _npz_num_classes(path, labels)


@DATASETS.register("npz")
def npz(split, *, data_dir=None, argument=None, shuffle_files=False, seed=None) -> Source:
    """A Keras-layout npz file, used as ``npz:PATH``.

    The file holds ``x_train``, ``y_train``, ``x_test``, ``y_test`` (all four required): images
    uint8 ``(N,H,W)`` or ``(N,H,W,C)`` (a channel axis is added to the former; integer or float
    arrays holding whole numbers 0..255 are accepted, float images in [0,1] are refused), labels
    non-negative integers ``(N,)`` or ``(N,1)`` (float labels are refused, whole-valued or not: a
    class id is stored as an integer). Neither split may be empty and both must have the same image
    shape. ``num_classes`` is 10 if the largest training label is below 10, else ``max + 1``; a test
    label outside those classes is an error. Split slices (``train[:-100]``) index the file's
    order. Loaded with ``np.load(allow_pickle=False)`` into
    memory and served with ``tf.data.Dataset.from_tensor_slices``. No augmentation by default.
    """
    base, _ = parse_split(split, dataset=f"npz:{argument}")
    if not argument:
        raise ValueError(f"Dataset 'npz' needs a path: --dataset=npz:PATH. Received: {argument!r}.")
    x, y, num_classes = load_npz(argument, base)
    x, y = slice_arrays(split, (x, y), dataset=f"npz:{argument}")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    return Source(ds, num_classes=num_classes, image_shape=tuple(x.shape[1:]),
                  num_examples=len(x))


# ----------------------------------------------------------------------------------- imagenet


@DATASETS.register("imagenet")
def imagenet(split, *, data_dir=None, argument=None, shuffle_files=False, seed=None,
             image_size=224, shard_index=0, num_shards=1, num_workers=None, lmdb=False) -> Source:
    """ILSVRC12 JPEG folders (or LMDB files) under ``data_dir``, read with tensorpack dataflows
    (:mod:`tfadv.data.imagenet`; ``test`` is ILSVRC's val folder). :func:`tfadv.data.load` asks for
    ``shuffle_files`` on training pipelines: that turns on fb.resnet's augmentation (in worker
    processes) and the per-pass reshuffle. The keyword options are those of
    :func:`tfadv.data.imagenet.imagenet_source`."""
    from tfadv.data import imagenet as imagenet_lib

    base, _ = parse_split(split, dataset="imagenet")
    return imagenet_lib.imagenet_source(
        split, data_dir=data_dir, training=bool(shuffle_files) and base == "train",
        image_size=image_size, shard_index=shard_index, num_shards=num_shards,
        num_workers=num_workers, lmdb=lmdb, seed=seed)
