"""ILSVRC-2012 (ImageNet) through tensorpack dataflows, fed into ``tf.data``.

The ImageNet setting of BAT (ICCV paper, sec. 5 "Implementation Details", sec. 5.4) follows the
tensorpack code of facebookresearch/ImageNet-Adversarial-Training (``third_party/imagenet_utils.py``
``fbresnet_augmentor``, ``third_party/serve-data.py``): raw JPEG folders, fb.resnet.torch
augmentations computed in worker processes, inputs mapped to [-1,1] with ``x*2/255 - 1``.

Directory layout (``data_dir``)::

    data_dir/
      synsets.txt            optional: one WordNet id per line, the class order (caffe's ILSVRC12
                             meta file, sorted wnids); default: the sorted names of train/
      train/<wnid>/*.JPEG    the training images, one folder per class
      val/<wnid>/*.JPEG      validation images in class folders (tensorpack's "train" structure) ...
      val/*.JPEG + val.txt   ... or flat, with ``val.txt`` lines ``<file name> <label index|wnid>``
      ILSVRC-train.lmdb      optional LMDB files written by :func:`write_lmdb` (``lmdb=True``)
      ILSVRC-val.lmdb

The ``test`` split of :func:`tfadv.data.load` is ILSVRC's ``val`` folder (the paper evaluates on the
50k validation images, sec. 5.4).

Per image (decoded with Pillow as RGB uint8):

* train (fb.resnet.torch, as tensorpack's ``fbresnet_augmentor(True)``): random-size crop (8%-100%
  of the area, aspect ratio 3/4-4/3, 10 tries, else shortest-side resize + centre crop) resized to
  ``image_size`` (bicubic); then brightness x U(0.6,1.4), contrast x U(0.6,1.4) around each channel's
  mean, saturation 1+U(-0.4,0.4) against the grey image and AlexNet PCA lighting (std 0.1) in a
  random order; horizontal flip with probability 1/2; clipped to [0,255] and rounded to uint8.
* val (``fbresnet_augmentor(False)``): shortest side resized to ``round(image_size*256/224)``
  (256 for 224) with bicubic interpolation, centre crop ``image_size``.

A multi-worker run gives each host its shard (``shard_index``/``num_shards``, from the strategy's
``InputContext``): a disjoint part of the file list, split off before anything is decoded, so the
hosts split every epoch between them instead of each decoding (and auto-sharding) all of it.
Training images are produced in ``num_workers`` processes (tensorpack ``MultiProcessMapData`` over
ZMQ pipes) as one endless stream of epochs, each a fresh seeded shuffle of this shard's records, as
tensorpack trains; every pass of the ``tf.data`` pipeline takes the next ``len(shard)`` images of
that stream (with several workers, images near a pass boundary may belong to the neighbouring
epoch; a pass abandoned half way simply continues the stream). Every record carries its own
augmentation seed drawn in the main process, so with ``seed`` set the augmented images are
reproducible (only the arrival order between workers varies; ``num_workers=0`` makes pass ``k``
exactly epoch ``k``). Validation is decoded in order in the main process (eval pipelines must yield
the same batches in the same order on every pass). Pixels go to the requested range in
:func:`tfadv.data.load` (``[-1,1]`` is ``2*(x/255-0.5)``).
"""

from __future__ import annotations

import io
import os
import threading
from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfadv.data.core import DatasetNotPreparedError, Source, parse_split, slice_arrays

#: The image size of the paper's ResNets (Table 9) and of tensorpack's ``ImageNetModel``.
DEFAULT_IMAGE_SIZE = 224
#: fb.resnet.torch / tensorpack validation: resize the shortest side to 256, centre crop 224.
VAL_RESIZE_RATIO = 256.0 / 224.0
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
SPLIT_DIRS = {"train": "train", "test": "val"}

# fb.resnet.torch's PCA lighting constants (AlexNet sec. 4.1), RGB order, on the 0..255 scale.
LIGHTING_STD = 0.1
LIGHTING_EIGVAL = np.array([0.2175, 0.0188, 0.0045], np.float32) * 255.0
LIGHTING_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                            [-0.5808, -0.0045, -0.8140],
                            [-0.5836, -0.6948, 0.4203]], np.float32)
# ITU-R 601 luma, as cv2's RGB2GRAY used by tensorpack's Saturation.
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)

LAYOUT = ("data_dir/train/<wnid>/*.JPEG (one folder per class), and data_dir/val/<wnid>/*.JPEG or "
          "data_dir/val/*.JPEG with data_dir/val.txt ('<file name> <label index or wnid>' lines); "
          "optional data_dir/synsets.txt (one wnid per line, the class order)")


def _require_tensorpack():
    try:
        from tensorpack import dataflow  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "The 'imagenet' dataset reads ILSVRC12 with tensorpack's dataflows, which are not "
            "installed. Install the imagenet extra: pip install \"tfadv[imagenet]\" (tensorpack, "
            f"pyzmq, msgpack; lmdb for LMDB files). Received: ImportError({e})."
        ) from e
    return dataflow


def _require_lmdb():
    try:
        import lmdb
    except ImportError as e:
        raise ImportError(
            "ImageNet LMDB files are read and written with the lmdb package, which is not "
            f"installed: pip install lmdb, or the imagenet extra: pip install \"tfadv[imagenet]\". "
            f"Received: ImportError({e})."
        ) from e
    return lmdb


def _not_prepared(data_dir, problem: str) -> DatasetNotPreparedError:
    return DatasetNotPreparedError(
        f"ImageNet (ILSVRC12) is not prepared in {data_dir!r}: {problem}. Expected the layout "
        f"{LAYOUT}. Nothing is downloaded. Received: data_dir={data_dir!r}."
    )


# ----------------------------------------------------------------------------------- file lists


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_synsets(data_dir: str) -> List[str]:
    """The class order: ``synsets.txt`` if present, else the sorted class folders of ``train/``."""
    if not data_dir or not os.path.isdir(data_dir):
        raise _not_prepared(data_dir, "the directory does not exist")
    path = os.path.join(data_dir, "synsets.txt")
    if os.path.isfile(path):
        with open(path) as f:
            synsets = [line.split()[0] for line in f if line.strip()]
        if len(set(synsets)) != len(synsets) or len(synsets) < 2:
            raise _not_prepared(data_dir, f"{path} must list at least 2 distinct wnids, one per "
                                          f"line; it has {len(synsets)} lines")
        return synsets
    train = os.path.join(data_dir, "train")
    if not os.path.isdir(train):
        raise _not_prepared(data_dir, "there is no train/ folder (and no synsets.txt)")
    synsets = sorted(d for d in os.listdir(train) if os.path.isdir(os.path.join(train, d)))
    if len(synsets) < 2:
        raise _not_prepared(data_dir, f"train/ holds {len(synsets)} class folder(s); at least 2 "
                                      f"are needed")
    return synsets


def _class_folders(data_dir, split_dir, synsets) -> List[Tuple[str, int]]:
    records = []
    for label, wnid in enumerate(synsets):
        folder = os.path.join(split_dir, wnid)
        if not os.path.isdir(folder):
            continue
        records += [(os.path.join(folder, n), label) for n in sorted(os.listdir(folder))
                    if _is_image(n)]
    unknown = sorted(set(d for d in os.listdir(split_dir)
                         if os.path.isdir(os.path.join(split_dir, d))) - set(synsets))
    if unknown:
        raise _not_prepared(data_dir, f"{split_dir} has class folders that are not in the synset "
                                      f"list: {unknown[:5]}")
    return records


def _flat_val(data_dir, split_dir, synsets) -> List[Tuple[str, int]]:
    label_file = os.path.join(data_dir, "val.txt")
    if not os.path.isfile(label_file):
        raise _not_prepared(data_dir, "val/ holds images but no class folders, and there is no "
                                      "val.txt label file")
    index = {w: i for i, w in enumerate(synsets)}
    records = []
    with open(label_file) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise _not_prepared(data_dir, f"val.txt line {number} is {line.strip()!r}; expected "
                                              f"'<file name> <label index or wnid>'")
            name, label = parts
            label = index.get(label, label)
            try:
                label = int(label)
            except ValueError:
                raise _not_prepared(data_dir, f"val.txt line {number} names an unknown class "
                                              f"{parts[1]!r}") from None
            if not 0 <= label < len(synsets):
                raise _not_prepared(data_dir, f"val.txt line {number} has label {label}, outside "
                                              f"[0, {len(synsets)})")
            path = os.path.join(split_dir, name)
            if not os.path.isfile(path):
                raise _not_prepared(data_dir, f"val.txt line {number} names {name!r}, which is "
                                              f"not in {split_dir}")
            records.append((path, label))
    return records


def list_images(data_dir: str, split: str) -> Tuple[List[Tuple[str, int]], List[str]]:
    """``([(path, label), ...] in a fixed order, synsets)`` of ``split`` (``train``/``test``).

    Labels are indices into the synset list (:func:`read_synsets`). Train records are in synset
    then file-name order; val (``test``) records in file-name order (ILSVRC's original val order).

    Raises:
        DatasetNotPreparedError: the folder is missing, empty or malformed (the message names the
            directory and the expected layout).
    """
    base, _ = parse_split(split, dataset="imagenet", allow_slicing=False)
    synsets = read_synsets(data_dir)
    split_dir = os.path.join(data_dir, SPLIT_DIRS[base])
    if not os.path.isdir(split_dir):
        raise _not_prepared(data_dir, f"there is no {SPLIT_DIRS[base]}/ folder for split {split!r}")
    has_folders = any(os.path.isdir(os.path.join(split_dir, d)) for d in os.listdir(split_dir))
    if has_folders or base == "train":
        records = _class_folders(data_dir, split_dir, synsets)
    else:
        records = _flat_val(data_dir, split_dir, synsets)
    if not records:
        raise _not_prepared(data_dir, f"{split_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if base == "test":
        # ILSVRC2012_val_<n>.JPEG order (classes mixed), as val.txt: limit=N and shards then take a
        # sample of every class rather than the first classes of the synset list.
        records.sort(key=lambda r: (os.path.basename(r[0]), r[0]))
    return records, synsets


# --------------------------------------------------------------------------------- augmentation


def _decode(data) -> np.ndarray:
    """JPEG/PNG path or encoded bytes -> RGB uint8 (H, W, 3)."""
    from PIL import Image

    source = io.BytesIO(bytes(data)) if not isinstance(data, str) else data
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC), np.uint8)


def resize_shortest_side(image: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize so that the shorter side is ``size`` (tensorpack ``ResizeShortestEdge``)."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    new_h, new_w = (size, int(w * scale + 0.5)) if h < w else (int(h * scale + 0.5), size)
    return _resize(image, max(new_h, size), max(new_w, size))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


def val_transform(image: np.ndarray, image_size: int) -> np.ndarray:
    """fb.resnet.torch evaluation: shortest side to ``round(image_size*256/224)``, centre crop."""
    return center_crop(resize_shortest_side(image, int(round(image_size * VAL_RESIZE_RATIO))),
                       image_size)


def random_size_crop(image: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """GoogLeNet / fb.resnet.torch random-size crop (8%-100% of the area, aspect 3/4-4/3, 10 tries,
    sides swapped with probability 1/2), resized to ``image_size``; falls back to the val transform."""
    h, w = image.shape[:2]
    for _ in range(10):
        area = rng.uniform(0.08, 1.0) * h * w
        aspect = rng.uniform(0.75, 1.333)
        cw, ch = int(np.sqrt(area * aspect) + 0.5), int(np.sqrt(area / aspect) + 0.5)
        if rng.uniform() < 0.5:
            cw, ch = ch, cw
        if 0 < ch <= h and 0 < cw <= w:
            top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            return _resize(image[top:top + ch, left:left + cw], image_size, image_size)
    return center_crop(resize_shortest_side(image, image_size), image_size)


def _brightness(x, rng):
    return x * rng.uniform(0.6, 1.4)


def _contrast(x, rng):
    mean = x.mean(axis=(0, 1), keepdims=True)
    r = rng.uniform(0.6, 1.4)
    return x * r + mean * (1.0 - r)


def _saturation(x, rng):
    v = 1.0 + rng.uniform(-0.4, 0.4)
    grey = x @ GREY_WEIGHTS
    return x * v + (grey * (1.0 - v))[..., None]


def _lighting(x, rng):
    alpha = rng.standard_normal(3).astype(np.float32) * LIGHTING_STD
    return x + LIGHTING_EIGVEC @ (alpha * LIGHTING_EIGVAL)


COLOR_JITTER = (_brightness, _contrast, _saturation, _lighting)


def train_transform(image: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """fb.resnet.torch training augmentation (see the module docstring); uint8 (S, S, 3)."""
    x = random_size_crop(image, image_size, rng).astype(np.float32)
    for k in rng.permutation(len(COLOR_JITTER)):
        x = COLOR_JITTER[k](x, rng)
    if rng.uniform() < 0.5:
        x = x[:, ::-1]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class _Decoder:
    """Worker-side map function: ``[record, label, seed] -> [uint8 image, label]``.

    ``record`` is a file path, or an LMDB key whose value is ``[encoded bytes, label]`` (the LMDB
    environment is opened once per process, after the fork).
    """

    def __init__(self, image_size: int, training: bool, lmdb_path: Optional[str] = None):
        self.image_size, self.training, self.lmdb_path = image_size, training, lmdb_path
        self._env, self._pid = None, None

    def _read(self, record, label):
        """``(path or encoded bytes, label)``; LMDB records carry their own label."""
        if self.lmdb_path is None:
            return record, label
        from tensorpack.utils.serialize import loads

        if self._env is None or self._pid != os.getpid():
            lmdb = _require_lmdb()
            self._env = lmdb.open(self.lmdb_path, subdir=os.path.isdir(self.lmdb_path),
                                  readonly=True, lock=False, readahead=True, map_size=1 << 40,
                                  max_readers=100)
            self._pid = os.getpid()
        with self._env.begin() as txn:
            encoded, label = loads(txn.get(record))
        return encoded, int(label)

    def __call__(self, dp):
        record, label, seed = dp
        encoded, label = self._read(record, label)
        image = _decode(encoded)
        if self.training:
            image = train_transform(image, self.image_size, np.random.default_rng(seed))
        else:
            image = val_transform(image, self.image_size)
        return [image, np.int32(label)]


# ------------------------------------------------------------------------------------------ LMDB


def lmdb_path(data_dir: str, split: str) -> str:
    base, _ = parse_split(split, dataset="imagenet", allow_slicing=False)
    return os.path.join(data_dir, f"ILSVRC-{SPLIT_DIRS[base]}.lmdb")


def write_lmdb(data_dir: str, split: str, output: Optional[str] = None) -> str:
    """Serialises ``split`` of the JPEG folders into one LMDB file with tensorpack's
    ``LMDBSerializer`` (the layout tensorpack's ImageNet docs recommend: encoded JPEG bytes + label,
    decoded and augmented in the workers); writes ``synsets.txt`` beside it if missing.

    Returns the LMDB path (default ``data_dir/ILSVRC-train.lmdb`` / ``ILSVRC-val.lmdb``).
    """
    dataflow = _require_tensorpack()
    _require_lmdb()
    records, synsets = list_images(data_dir, split)
    output = output or lmdb_path(data_dir, split)
    if os.path.exists(output):
        raise ValueError(f"LMDB output already exists; remove it or pick another path. "
                         f"Received: output={output!r}.")

    def encoded(dp):
        path, label = dp
        with open(path, "rb") as f:
            return [np.frombuffer(f.read(), np.uint8), np.int32(label)]

    df = dataflow.MapData(dataflow.DataFromList([list(r) for r in records], shuffle=False), encoded)
    dataflow.LMDBSerializer.save(df, output)
    synsets_file = os.path.join(os.path.dirname(os.path.abspath(output)), "synsets.txt")
    if not os.path.isfile(synsets_file):
        with open(synsets_file, "w") as f:
            f.write("\n".join(synsets) + "\n")
    return output


def _lmdb_records(data_dir: str, split: str) -> Tuple[str, List[Tuple[bytes, int]], List[str]]:
    path = lmdb_path(data_dir, split)
    if not os.path.exists(path):
        raise _not_prepared(data_dir, f"lmdb=True but {path} does not exist (write it with "
                                      f"tfadv.data.imagenet.write_lmdb or --imagenet_lmdb)")
    lmdb = _require_lmdb()
    from tensorpack.utils.serialize import loads

    synsets = read_synsets(data_dir)
    try:
        env = lmdb.open(path, subdir=os.path.isdir(path), readonly=True, lock=False)
    except lmdb.Error as e:  # py-lmdb opens an environment once per process
        raise ValueError(f"The LMDB is already open in this process ({e}): a training pipeline "
                         f"decoding in the main process (num_workers=0) holds it for its life; "
                         f"reuse that pipeline or decode in worker processes. Received: "
                         f"{path!r}.") from None
    with env.begin() as txn:
        keys = txn.get(b"__keys__")
        if keys is None:
            raise _not_prepared(data_dir, f"{path} has no __keys__ entry (not written by "
                                          f"tensorpack's LMDBSerializer)")
        keys = loads(keys)
    env.close()
    # Labels are read by the workers with the image; -1 here marks "from the record".
    return path, [(k, -1) for k in keys], synsets


# ----------------------------------------------------------------------------------- the source


def _check_options(image_size, shard_index, num_shards, num_workers):
    for name, value, low in (("image_size", image_size, 8), ("num_shards", num_shards, 1),
                             ("shard_index", shard_index, 0), ("num_workers", num_workers, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}. Received: {name}={value!r}.")
    if shard_index >= num_shards:
        raise ValueError(f"shard_index must be in [0, num_shards). Received: "
                         f"shard_index={shard_index!r}, num_shards={num_shards!r}.")


class _EpochRecords:
    """A tensorpack DataFlow over this shard's records: ``[record, label, seed]``, reshuffled every
    pass (training) with a per-pass RNG derived from ``seed``; fixed order otherwise."""

    def __init__(self, records, *, shuffle: bool, seed: Optional[int], shard_index: int):
        self._records, self._shuffle = records, shuffle
        self._seed, self._shard_index, self._epoch = seed, shard_index, 0

    def __len__(self):
        return len(self._records)

    def reset_state(self):
        pass

    def __iter__(self):
        entropy = None if self._seed is None else [self._seed, self._shard_index, self._epoch]
        rng = np.random.default_rng(entropy)
        self._epoch += 1
        order = rng.permutation(len(self._records)) if self._shuffle else range(len(self._records))
        seeds = rng.integers(0, 2**63 - 1, size=len(self._records))
        for i in order:
            record, label = self._records[i]
            yield [record, label, int(seeds[i])]


def _slice_records(records, split: str):
    """A slice (``train[-1000:]``) of a fixed ``RandomState(0)`` permutation of the records (train
    records are sorted by class: a plain tail would be the last classes), kept in record order."""
    (picked,) = slice_arrays(split, (np.random.RandomState(0).permutation(len(records)),),
                             dataset="imagenet")
    return [records[i] for i in np.sort(picked)]


def _default_workers() -> int:
    return min(16, os.cpu_count() or 1)


def imagenet_source(split: str, *, data_dir: Optional[str], training: bool,
                    image_size: int = DEFAULT_IMAGE_SIZE, shard_index: int = 0, num_shards: int = 1,
                    num_workers: Optional[int] = None, lmdb: bool = False,
                    seed: Optional[int] = None) -> Source:
    """ILSVRC12 ``split`` as a :class:`Source` of uint8 ``(image_size, image_size, 3)`` images.

    Args:
        split: ``train`` or ``test`` (ILSVRC's val folder), or an integer slice of one
            (``train[:-1000]``, ``train[-1000:]``) of a fixed seeded permutation of its records
            (:func:`_slice_records`), so that a slice holds every class.
        data_dir: the ILSVRC12 root (see the module docstring for the layout).
        training: fb.resnet training augmentation + reshuffling every pass (else the val
            transform, fixed order).
        image_size: output side (224 in the paper; tests use 32). The val resize side scales with
            it (256/224).
        shard_index, num_shards: this input pipeline's shard (one per worker host), split off
            the sorted record list before anything is decoded: ``records[shard_index::num_shards]``
            (evaluation: disjoint, covering). Training shards all have ``floor(N / num_shards)``
            records (the last ``N % num_shards``, at most ``num_shards - 1``, are in none), so
            every worker's pass is the same number of steps and each image is read by exactly
            one worker once per epoch; :func:`tfadv.data.load` takes the same prefix per shard
            in evaluation (``Source.split_examples`` is ``N``).
        num_workers: decoding/augmenting processes for training (default ``min(16, cpus)``; 0:
            in the calling thread, fully deterministic with ``seed``). Evaluation always decodes
            in order in the calling thread.
        lmdb: read ``data_dir/ILSVRC-<train|val>.lmdb`` (written by :func:`write_lmdb`).
        seed: seeds the per-pass shuffles and the per-image augmentation seeds.
    """
    dataflow = _require_tensorpack()
    num_workers = _default_workers() if num_workers is None else num_workers
    _check_options(image_size, shard_index, num_shards, num_workers)
    if data_dir is None:
        raise _not_prepared(data_dir, "no data directory was given (pass --data_dir=ILSVRC12 root)")
    data_dir = os.path.expanduser(data_dir)
    base, full = parse_split(split, dataset="imagenet")
    if lmdb:
        path, records, synsets = _lmdb_records(data_dir, base)
    else:
        path = None
        records, synsets = list_images(data_dir, base)
    if full != base:
        records = _slice_records(records, split)
    split_examples = len(records)
    if training:  # equal shards: the workers' passes must have the same number of steps
        records = records[:len(records) - len(records) % num_shards]
    records = records[shard_index::num_shards]
    if not records:
        raise ValueError(f"Shard {shard_index} of {num_shards} is empty: the split has fewer "
                         f"records than shards. Received: num_shards={num_shards!r}.")
    decoder = _Decoder(image_size, training, path)
    records_flow = _EpochRecords(records, shuffle=training, seed=seed, shard_index=shard_index)
    if not training:
        flow = dataflow.MapData(records_flow, decoder)
    elif num_workers > 0:  # non-strict: an endless stream over RepeatedData(epochs)
        flow = dataflow.MultiProcessMapData(records_flow, num_proc=num_workers, map_func=decoder,
                                            buffer_size=min(200, len(records)), strict=False)
    else:
        flow = dataflow.MapData(dataflow.RepeatedData(records_flow, -1), decoder)
    state = {"iterator": None}
    lock = threading.Lock()

    def stream():
        # Started on first read (worker processes fork then), shared by every pass, so that a
        # pass abandoned half way (take(), an interrupted fit) leaves nothing queued behind.
        with lock:
            if state["iterator"] is None:
                flow.reset_state()
                state["iterator"] = iter(flow)
        return state["iterator"]

    def generate():
        if not training:  # a fresh, fixed-order pass every time
            flow.reset_state()
            for image, label in flow:
                yield image, label
            return
        iterator = stream()
        for _ in range(len(records)):
            with lock:
                image, label = next(iterator)
            yield image, label

    ds = tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((image_size, image_size, 3), tf.uint8), tf.TensorSpec((), tf.int32)))
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(records)))
    return Source(ds, num_classes=len(synsets), image_shape=(image_size, image_size, 3),
                  num_examples=len(records), split_examples=split_examples)


def load(split: str = "train", *, data_dir: Optional[str], batch_size: int = 32,
         pixel_range="[-1,1]", training: Optional[bool] = None, seed: Optional[int] = None,
         image_size: int = DEFAULT_IMAGE_SIZE, shard_index: int = 0, num_shards: int = 1,
         num_workers: Optional[int] = None, lmdb: bool = False, limit: Optional[int] = None,
         drop_remainder: bool = False):
    """ImageNet with its options: ``(dataset, DatasetInfo)`` like :func:`tfadv.data.load`.

    The same pipeline as ``tfadv.data.load("imagenet", ...)`` minus that function's generic
    ``tf.data`` shuffle buffer (the dataflow already reshuffles the file list every pass; a
    10,000-image buffer of 224x224 images would hold 1.5 GB): ``take(limit)`` → batch → pixel range
    (``[-1,1]``: ``2*(x/255-0.5)``) → prefetch.
    """
    from tfadv import ranges
    from tfadv.data.core import DatasetInfo, _check_positive_int, _take_shard

    rng = ranges.get_range(pixel_range)
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(limit, "limit", allow_none=True)
    base, _ = parse_split(split, dataset="imagenet")
    training = base == "train" if training is None else bool(training)
    source = imagenet_source(split, data_dir=data_dir, training=training, image_size=image_size,
                             shard_index=shard_index, num_shards=num_shards,
                             num_workers=num_workers, lmdb=lmdb, seed=seed)
    ds, shard_examples = _take_shard(source, limit, (shard_index, num_shards))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda x, y: (rng.from_uint8(x), y), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True).prefetch(tf.data.AUTOTUNE)
    n = source.num_examples if limit is None else min(limit, source.num_examples)
    n = n if shard_examples is None else shard_examples
    return ds, DatasetInfo(name="imagenet", split=split.strip(), num_classes=source.num_classes,
                           image_shape=source.image_shape, num_examples=n, pixel_range=rng)
