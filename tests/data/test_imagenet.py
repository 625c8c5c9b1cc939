"""tfadv.data.imagenet: the tensorpack ILSVRC12 pipeline on a tiny directory of real JPEGs."""

import collections
import hashlib
import os
import sys

import numpy as np
import pytest

from tfadv import data
from tfadv.data import imagenet
from tests.data.imagenet_testing import class_colour, write_tiny_ilsvrc12

SIZE = 32
NUM_CLASSES, PER_CLASS = 3, 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ilsvrc12")
    synsets = write_tiny_ilsvrc12(root, num_classes=NUM_CLASSES, images_per_class=PER_CLASS)
    return str(root), synsets


def batches(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def digest(image):
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_registered():
    assert "imagenet" in data.names()


def test_train_pipeline_in_worker_processes(tiny):
    root, _ = tiny
    ds, info = imagenet.load("train", data_dir=root, batch_size=5, image_size=SIZE, seed=0,
                             num_workers=2)
    assert info.num_classes == NUM_CLASSES and info.image_shape == (SIZE, SIZE, 3)
    assert info.num_examples == NUM_CLASSES * PER_CLASS and str(info.pixel_range) == "[-1,1]"
    first, second = batches(ds), batches(ds)
    for x, y in (first, second):  # every pass is one shard's worth of the stream of epochs
        assert x.shape == (NUM_CLASSES * PER_CLASS, SIZE, SIZE, 3) and x.dtype == np.float32
        assert y.dtype == np.int32 and set(y.tolist()) <= set(range(NUM_CLASSES))
        assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.5 and x.max() > 0.5
    # Augmentation (random crop, colour jitter, flip) differs between epochs.
    assert {digest(v) for v in first[0]} != {digest(v) for v in second[0]}


def test_abandoned_training_pass_does_not_break_the_next(tiny):
    root, _ = tiny
    ds, _ = imagenet.load("train", data_dir=root, batch_size=5, image_size=SIZE, seed=0,
                          num_workers=2)
    next(iter(ds))  # a pass stopped after one batch (e.g. take(), an interrupted fit)
    for _ in range(2):
        assert len(batches(ds)[1]) == NUM_CLASSES * PER_CLASS


def test_labels_follow_synset_order_and_colours(tiny):
    root, synsets = tiny
    assert synsets == sorted(synsets) and imagenet.read_synsets(root) == synsets
    ds, info = data.load("imagenet", "test", batch_size=4, pixel_range="[0,1]", data_dir=root)
    x, y = batches(ds)
    assert x.shape == (NUM_CLASSES * PER_CLASS, imagenet.DEFAULT_IMAGE_SIZE,
                       imagenet.DEFAULT_IMAGE_SIZE, 3)
    np.testing.assert_array_equal(y, np.repeat(np.arange(NUM_CLASSES), PER_CLASS))
    for image, label in zip(x, y):  # each class was written in its own colour
        np.testing.assert_allclose(image.mean(axis=(0, 1)) * 255, class_colour(label), atol=8)


def test_val_centre_crop_is_deterministic_and_hand_checked(tiny):
    root, _ = tiny
    ds, _ = imagenet.load("test", data_dir=root, batch_size=5, image_size=SIZE, pixel_range="[0,1]")
    first, second = batches(ds), batches(ds)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    # 40x48 -> shortest side round(32*256/224) = 37 -> 37x44 -> centre 32x32 at (2, 6).
    records, _ = imagenet.list_images(root, "test")
    decoded = imagenet._decode(records[0][0])
    resized = imagenet.resize_shortest_side(decoded, 37)
    assert resized.shape == (37, 44, 3)
    np.testing.assert_array_equal(np.rint(first[0][0] * 255).astype(np.uint8), resized[2:34, 6:38])
    assert imagenet.val_transform(np.zeros((300, 500, 3), np.uint8), 224).shape == (224, 224, 3)
    assert imagenet.resize_shortest_side(np.zeros((300, 500, 3), np.uint8), 256).shape[:2] == (256, 427)


def test_train_transform_is_seeded_and_in_range():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    a = imagenet.train_transform(image, SIZE, np.random.default_rng(7))
    b = imagenet.train_transform(image, SIZE, np.random.default_rng(7))
    c = imagenet.train_transform(image, SIZE, np.random.default_rng(8))
    assert a.shape == (SIZE, SIZE, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_seeded_in_process_pipeline_is_reproducible(tiny):
    root, _ = tiny
    runs = []
    for _ in range(2):
        ds, _ = imagenet.load("train", data_dir=root, batch_size=12, image_size=SIZE, seed=3,
                              num_workers=0)
        runs.append([batches(ds) for _ in range(2)])  # two epochs per run
    for epoch in range(2):
        np.testing.assert_array_equal(runs[0][epoch][0], runs[1][epoch][0])
        np.testing.assert_array_equal(runs[0][epoch][1], runs[1][epoch][1])
        # In process, pass k is exactly epoch k: every image once, reshuffled.
        counts = collections.Counter(runs[0][epoch][1].tolist())
        assert counts == {k: PER_CLASS for k in range(NUM_CLASSES)}
    assert not np.array_equal(runs[0][0][1], runs[0][1][1])


def test_shards_are_disjoint_and_cover_the_split(tiny):
    root, _ = tiny
    seen = []
    for index in range(3):
        ds, info = imagenet.load("test", data_dir=root, batch_size=8, image_size=SIZE,
                                 shard_index=index, num_shards=3)
        assert info.num_examples == 4
        seen += [digest(v) for v in batches(ds)[0]]
    full = batches(imagenet.load("test", data_dir=root, batch_size=8, image_size=SIZE)[0])[0]
    assert len(set(seen)) == len(seen) == NUM_CLASSES * PER_CLASS
    assert set(seen) == {digest(v) for v in full}


def test_flat_val_with_label_file(tmp_path):
    synsets = write_tiny_ilsvrc12(tmp_path, num_classes=2, images_per_class=2, val_layout="flat",
                                  synsets_file=True)
    records, found = imagenet.list_images(str(tmp_path), "test")
    assert found == synsets and sorted(label for _, label in records) == [0, 0, 1, 1]
    ds, info = imagenet.load("test", data_dir=str(tmp_path), batch_size=4, image_size=SIZE,
                             pixel_range="[0,1]")
    x, y = batches(ds)
    for image, label in zip(x, y):
        np.testing.assert_allclose(image.mean(axis=(0, 1)) * 255, class_colour(label), atol=8)


def test_lmdb_round_trip(tmp_path):
    pytest.importorskip("lmdb")
    write_tiny_ilsvrc12(tmp_path, num_classes=2, images_per_class=3)
    root = str(tmp_path)
    for split in ("train", "test"):
        path = imagenet.write_lmdb(root, split)
        assert path == imagenet.lmdb_path(root, split) and os.path.exists(path)
    with pytest.raises(ValueError, match="already exists"):
        imagenet.write_lmdb(root, "test")
    kwargs = dict(data_dir=root, batch_size=6, image_size=SIZE)
    from_files = batches(imagenet.load("test", **kwargs)[0])
    from_lmdb = batches(imagenet.load("test", lmdb=True, **kwargs)[0])
    np.testing.assert_array_equal(from_files[0], from_lmdb[0])
    np.testing.assert_array_equal(from_files[1], from_lmdb[1])
    # With worker processes the stream is non-strict: an image near the pass boundary may come
    # from the next epoch (module docstring), so only the shapes and the label set are fixed.
    x, y = batches(imagenet.load("train", lmdb=True, seed=0, num_workers=2, **kwargs)[0])
    assert x.shape == (6, SIZE, SIZE, 3) and set(y.tolist()) <= {0, 1}
    # In the main process a training pass is exactly one epoch of the LMDB records ...
    x, y = batches(imagenet.load("train", lmdb=True, seed=0, num_workers=0, **kwargs)[0])
    assert x.shape == (6, SIZE, SIZE, 3) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    # ... and that pipeline holds the environment, which py-lmdb opens once per process.
    with pytest.raises(ValueError, match="already open in this process"):
        imagenet.load("train", lmdb=True, seed=0, num_workers=0, **kwargs)


def test_lmdb_missing_is_a_clear_error(tiny):
    root, _ = tiny
    with pytest.raises(data.DatasetNotPreparedError, match="ILSVRC-val.lmdb"):
        imagenet.load("test", data_dir=root, lmdb=True)


@pytest.mark.parametrize("breakage,message", [
    ("missing", "does not exist"),
    ("no_train", "no train/ folder"),
    ("one_class", "at least 2"),
    ("no_val", "no val/ folder"),
    ("stray_val_class", "not in the synset list"),
    ("flat_val_without_labels", "no val.txt"),
    ("bad_val_label", "unknown class"),
    ("empty_train", "holds no images"),
])
def test_malformed_directories(tmp_path, breakage, message):
    root = tmp_path / "ilsvrc"
    if breakage != "missing":
        write_tiny_ilsvrc12(root, num_classes=2, images_per_class=1,
                            val_layout="flat" if breakage.endswith("labels") or breakage ==
                            "bad_val_label" else "folders")
    if breakage == "no_train":
        os.rename(root / "train", root / "training")
    elif breakage == "one_class":
        os.rename(root / "train", root / "old")
        os.makedirs(root / "train" / "n00000001")
    elif breakage == "no_val":
        os.rename(root / "val", root / "validation")
    elif breakage == "stray_val_class":
        os.makedirs(root / "val" / "n12345678")
    elif breakage == "flat_val_without_labels":
        os.remove(root / "val.txt")
    elif breakage == "bad_val_label":
        (root / "val.txt").write_text("n01440764_val_0.JPEG n99999999\n")
    elif breakage == "empty_train":
        for wnid in os.listdir(root / "train"):
            for name in os.listdir(root / "train" / wnid):
                os.remove(root / "train" / wnid / name)
    split = "train" if breakage in ("empty_train", "one_class") else "test"
    with pytest.raises(data.DatasetNotPreparedError, match=message) as e:
        data.load("imagenet", split, data_dir=str(root))
    text = str(e.value)
    assert str(root) in text and "train/<wnid>/*.JPEG" in text and "Received" in text


@pytest.mark.parametrize("kwargs,name", [
    (dict(image_size=4), "image_size"), (dict(num_shards=0), "num_shards"),
    (dict(shard_index=2, num_shards=2), "shard_index"), (dict(num_workers=-1), "num_workers"),
])
def test_bad_options(tiny, kwargs, name):
    with pytest.raises(ValueError, match=f"{name}.*Received"):
        imagenet.load("train", data_dir=tiny[0], **kwargs)


def test_bad_split(tiny):
    with pytest.raises(ValueError, match="Received"):
        imagenet.load("validation", data_dir=tiny[0])


def test_missing_tensorpack_names_the_extra(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorpack", None)
    with pytest.raises(ImportError, match=r"\[imagenet\]"):
        imagenet.load("test", data_dir=tiny[0])


def test_missing_lmdb_names_the_extra(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(ImportError, match=r'pip install "tfadv\[imagenet\]"'):
        imagenet.write_lmdb(tiny[0], "test", output=os.path.join(tiny[0], "never.lmdb"))


def test_val_order_is_ilsvrc_file_order_across_class_folders(tmp_path):
    from PIL import Image

    for n, wnid in enumerate(["n02000000", "n01000000", "n02000000", "n01000000"], 1):
        os.makedirs(tmp_path / "train" / wnid, exist_ok=True)
        os.makedirs(tmp_path / "val" / wnid, exist_ok=True)
        image = Image.fromarray(np.full((8, 8, 3), 50 * n, np.uint8))
        image.save(tmp_path / "train" / wnid / f"{wnid}_{n}.JPEG")
        image.save(tmp_path / "val" / wnid / f"ILSVRC2012_val_{n:08d}.JPEG")
    records, _ = imagenet.list_images(str(tmp_path), "test")
    # limit=N then samples every class instead of the first classes of the synset list.
    assert [label for _, label in records] == [1, 0, 1, 0]
    assert [os.path.basename(p) for p, _ in records] == [
        f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 5)]


def test_missing_lmdb_package_is_a_clear_error(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(ImportError, match="pip install lmdb"):
        imagenet.write_lmdb(tiny[0], "test", output=os.path.join(tiny[0], "unused.lmdb"))
