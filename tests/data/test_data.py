"""Tests for tfadv.data: tfds loaders (mocked), digits, npz, augmentation, errors."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfadv import data, ranges
from tfadv.data import augment, sources
from tests.testing import SHARED_MNIST, TestCase

TFDS = {  # registry name -> (tfds name, image shape, num classes)
    "mnist": ("mnist", (28, 28, 1), 10),
    "cifar10": ("cifar10", (32, 32, 3), 10),
    "cifar100": ("cifar100", (32, 32, 3), 100),
    "svhn": ("svhn_cropped", (32, 32, 3), 10),
}
NUM_MOCK = 20


def as_numpy(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def write_npz(path, x_train, y_train, x_test, y_test, **extra):
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, **extra)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


def random_npz(tmp_path, n_train=30, n_test=10, shape=(6, 5), seed=0, name="small.npz"):
    rng = np.random.default_rng(seed)
    return write_npz(
        tmp_path / name,
        rng.integers(0, 256, size=(n_train,) + shape, dtype=np.uint8),
        rng.integers(0, 10, size=n_train).astype(np.uint8),
        rng.integers(0, 256, size=(n_test,) + shape, dtype=np.uint8),
        rng.integers(0, 10, size=n_test).astype(np.int64),
    )


# ----------------------------------------------------------------------------------- registry


def test_names():
    assert set(data.names()) == {"mnist", "cifar10", "cifar100", "svhn", "digits", "npz",
                                 "imagenet"}


@pytest.mark.parametrize("bad", ["imagenet1k", "cifar", "foo:bar"])
def test_unknown_dataset(bad):
    with pytest.raises(ValueError, match="Received") as e:
        data.load(bad)
    assert "Expected one of" in str(e.value) and bad in str(e.value)


@pytest.mark.parametrize("name,split", [("digits", "validation"), ("digits", "train[:10%]"),
                                        ("svhn", "extra"), ("mnist", "val")])
def test_unknown_split(name, split):
    with pytest.raises(ValueError, match="Received") as e:
        data.load(name, split)
    assert repr(split) in str(e.value)


def test_unknown_pixel_range():
    with pytest.raises(ValueError, match="Received"):
        data.load("digits", pixel_range="[0,255]")


def test_npz_without_path():
    with pytest.raises(ValueError, match="npz:PATH"):
        data.load("npz")


@pytest.mark.parametrize("kwargs", [dict(batch_size=0), dict(limit=-1), dict(augment="rotate"),
                                    dict(shuffle_buffer=0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        data.load("digits", "train", **kwargs)


# --------------------------------------------------------------------------- tfds (mocked)


@pytest.mark.parametrize("name", sorted(TFDS))
def test_tfds_loader(name):
    tfds_name, shape, num_classes = TFDS[name]
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        ds, info = data.load(name, "train", batch_size=8, seed=0)
        assert info == data.DatasetInfo(name, "train", num_classes, shape, NUM_MOCK,
                                        ranges.get_range("[0,1]"))
        batches = [(x.numpy(), y.numpy()) for x, y in ds]
        assert [len(x) for x, _ in batches] == [8, 8, 4]
        x, y = batches[0]
        assert x.shape == (8,) + shape and x.dtype == np.float32 and y.dtype == np.int32
        assert ds.element_spec[0].shape.as_list() == [None, *shape]
        images, labels = as_numpy(ds)
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert labels.min() >= 0 and labels.max() < num_classes

        # Eval pipeline in [-1,1]: exactly 2*(x/255-0.5) of the raw uint8 images, same order,
        # deterministic across iterations.
        raw = tfds.load(tfds_name, split="test", as_supervised=True, download=False)
        raw_x, raw_y = map(np.stack, zip(*[(a.numpy(), b.numpy()) for a, b in raw]))
        ds, info = data.load(name, "test", batch_size=8, pixel_range="[-1,1]")
        assert info.pixel_range == ranges.get_range("[-1,1]") and info.split == "test"
        first, second = as_numpy(ds), as_numpy(ds)
        np.testing.assert_array_equal(first[0], second[0])
        np.testing.assert_array_equal(first[1], second[1])
        np.testing.assert_array_equal(first[1], raw_y)
        np.testing.assert_allclose(first[0], 2 * (raw_x.astype(np.float64) / 255 - 0.5),
                                   rtol=0, atol=1e-6)
        assert first[0].min() >= -1.0 and first[0].max() <= 1.0


def test_tfds_training_pipeline_is_shuffled():
    with tfds.testing.mock_data(num_examples=NUM_MOCK):
        ds, _ = data.load("mnist", "train", batch_size=NUM_MOCK, seed=3)
        epoch1, epoch2 = as_numpy(ds)[0], as_numpy(ds)[0]
        eval_x = as_numpy(data.load("mnist", "train", batch_size=NUM_MOCK, training=False)[0])[0]
        again = as_numpy(data.load("mnist", "train", batch_size=NUM_MOCK, seed=3)[0])[0]
        other = as_numpy(data.load("mnist", "train", batch_size=NUM_MOCK, seed=4)[0])[0]

    def key(x):  # Order-independent fingerprint of each image.
        return [v.tobytes() for v in x]

    assert sorted(key(epoch1)) == sorted(key(eval_x))  # Same examples (MNIST: no augmentation).
    assert key(epoch1) != key(eval_x)
    assert key(epoch1) != key(epoch2)  # Reshuffled each iteration.
    np.testing.assert_array_equal(epoch1, again)  # Seeded.
    assert key(other) != key(epoch1)


def test_tfds_training_uses_default_augmentation():
    with tfds.testing.mock_data(num_examples=8):
        train = as_numpy(data.load("cifar10", "train", batch_size=8, seed=0)[0])
        plain = as_numpy(data.load("cifar10", "train", batch_size=8, seed=0, augment=False)[0])
    assert train[0].shape == (8, 32, 32, 3)
    assert train[0].min() >= 0.0 and train[0].max() <= 1.0
    np.testing.assert_array_equal(train[1], plain[1])  # Same shuffle, different pixels.
    assert not np.array_equal(train[0], plain[0])


def test_tfds_not_prepared(tmp_path):
    empty = tmp_path / "tfds"
    empty.mkdir()
    with pytest.raises(data.DatasetNotPreparedError) as e:
        data.load("cifar10", "test", data_dir=str(empty))
    message = str(e.value)
    assert isinstance(e.value, ValueError)
    for part in ("--data_dir", "npz:", "Received", str(empty), "cifar10"):
        assert part in message


# ------------------------------------------------------------------------------ augmentation


def half_bright(size=32):
    """Left half white, right half black: a flip swaps the halves' means."""
    image = np.zeros((size, size, 3), np.uint8)
    image[:, : size // 2] = 255
    return image


def half_means(images):
    images = np.asarray(images, np.float64)
    w = images.shape[-2] // 2
    return images[..., :w, :].mean(axis=(-3, -2, -1)), images[..., w:, :].mean(axis=(-3, -2, -1))


class AugmentTest(TestCase):
    def test_defaults(self):
        self.assertIs(augment.resolve("cifar10", None), augment.crop_flip)
        self.assertIs(augment.resolve("cifar100", True), augment.crop_flip)
        self.assertIs(augment.resolve("svhn", None), augment.crop)
        for name in ("mnist", "digits", "npz"):
            self.assertIsNone(augment.resolve(name, None))
        self.assertIsNone(augment.resolve("cifar10", False))

    def test_crop_keeps_shape_and_range_and_shifts(self):
        image = tf.constant(np.random.default_rng(0).integers(0, 256, (32, 32, 3)), tf.uint8)
        changed = 0
        for i in range(16):
            for fn in (augment.crop, augment.crop_flip):
                out = fn(image, tf.constant([7, i], tf.int64))
                self.assertEqual(out.shape, (32, 32, 3))
                self.assertEqual(out.dtype, tf.uint8)
                changed += int(not np.array_equal(out.numpy(), image.numpy()))
        self.assertGreater(changed, 0)

    def test_crop_never_flips_crop_flip_sometimes(self):
        image = tf.constant(half_bright())
        crop_lr, flip_lr = [], []
        for i in range(32):
            seed = tf.constant([1, i], tf.int64)
            crop_lr.append(half_means(augment.crop(image, seed).numpy()))
            flip_lr.append(half_means(augment.crop_flip(image, seed).numpy()))
        # A shift of at most 4 pixels each way leaves >= 12 of the left half's 16 columns and 28
        # of its 32 rows white, and at most 4 white columns in the right half.
        for left, right in crop_lr:
            self.assertGreaterEqual(left, 255 * (12 / 16) * (28 / 32))
            self.assertLessEqual(right, 255 * 4 / 16)
        self.assertTrue(any(left < right for left, right in flip_lr))
        self.assertTrue(any(left > right for left, right in flip_lr))

    def test_pipeline_augmentation_seeded(self):
        path = write_npz(os.path.join(self.get_temp_dir(), "halves.npz"),
                         np.stack([half_bright()] * 16), np.arange(16) % 10,
                         np.stack([half_bright()] * 2), np.zeros(2, np.int64))
        kwargs = dict(batch_size=16, seed=5, pixel_range="[-1,1]")
        ds, _ = data.load("npz:" + path, augment="crop", **kwargs)
        x1, x2 = as_numpy(ds)[0], as_numpy(ds)[0]
        left, right = half_means(x1)
        self.assertTrue(np.all(left > right))  # SVHN-style crop: never flipped.
        self.assertFalse(np.array_equal(x1, x2))  # New crops each epoch.
        again = as_numpy(data.load("npz:" + path, augment="crop", **kwargs)[0])[0]
        self.assertAllEqual(x1, again)  # Deterministic given the seed.
        self.assertGreaterEqual(x1.min(), -1.0)
        self.assertLessEqual(x1.max(), 1.0)
        flipped = as_numpy(data.load("npz:" + path, augment="crop_flip", **kwargs)[0])[0]
        left, right = half_means(flipped)
        self.assertTrue(np.any(left < right))
        # Eval pipelines ignore augmentation.
        test_x = as_numpy(data.load("npz:" + path, "test", augment="crop_flip", **kwargs)[0])[0]
        self.assertAllClose(test_x, 2 * (np.stack([half_bright()] * 2) / 255 - 0.5))


# ------------------------------------------------------------------------------------ digits


class DigitsTest(TestCase):
    def test_digits(self):
        train_ds, train = data.load("digits", "train", batch_size=2000, training=False)
        test_ds, test = data.load("digits", "test", batch_size=2000, pixel_range="[-1,1]")
        self.assertEqual(train.num_examples + test.num_examples, 1797)
        self.assertEqual((train.num_examples, test.num_examples), (1438, 359))
        self.assertEqual(train.image_shape, (8, 8, 1))
        self.assertEqual(train.num_classes, 10)
        x, y = as_numpy(train_ds)
        self.assertEqual(x.shape, (1438, 8, 8, 1))
        self.assertEqual(x.max(), 1.0)  # 16 -> 255 -> top of the range.
        self.assertEqual(x.min(), 0.0)
        tx, ty = as_numpy(test_ds)
        self.assertEqual(tx.max(), 1.0)
        self.assertEqual(tx.min(), -1.0)
        self.assertEqual(sorted(set(ty.tolist())), list(range(10)))  # Stratified.
        # Deterministic split: recomputing from scratch gives the same arrays.
        sources.digits_arrays.cache_clear()
        again = sources.digits_arrays()
        self.assertAllEqual(again["test"][1], ty)
        self.assertAllEqual(again["train"][0][..., 0], np.rint(x[..., 0] * 255))

    def test_batching_and_limit(self):
        ds, info = data.load("digits", "train", batch_size=100, drop_remainder=True, seed=0)
        sizes = [int(b.shape[0]) for b, _ in ds]
        self.assertEqual(sizes, [100] * 14)
        ds, info = data.load("digits", "train", batch_size=64, limit=100, seed=0)
        self.assertEqual(info.num_examples, 100)
        _, y = as_numpy(ds)
        _, first = as_numpy(data.load("digits", "train", batch_size=100, limit=100,
                                      training=False)[0])
        self.assertEqual(sorted(y.tolist()), sorted(first.tolist()))  # The first 100, shuffled.
        self.assertEqual(data.info("digits", "test").num_examples, 359)


# --------------------------------------------------------------------------------------- npz


def test_npz_round_trip(tmp_path):
    path = random_npz(tmp_path)
    raw = np.load(path)
    ds, info = data.load("npz:" + path, "train", batch_size=8, training=False)
    assert info == data.DatasetInfo("npz:" + path, "train", 10, (6, 5, 1), 30,
                                    ranges.get_range("[0,1]"))
    x, y = as_numpy(ds)
    assert x.shape == (30, 6, 5, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(np.rint(x[..., 0] * 255).astype(np.uint8), raw["x_train"])
    np.testing.assert_array_equal(y, raw["y_train"])
    ds, info = data.load("npz:" + path, "test", batch_size=4, pixel_range="[-1,1]")
    x, y = as_numpy(ds)
    assert info.num_examples == 10 and x.shape == (10, 6, 5, 1)
    np.testing.assert_allclose(x[..., 0], 2 * (raw["x_test"] / 255 - 0.5), atol=1e-6)


def test_npz_known_values_and_layouts(tmp_path):
    # (N,H,W,C) images, Keras CIFAR-style (N,1) labels, whole-number float images, 15 classes.
    x = np.array([0, 51, 128, 255], np.float32).reshape(4, 1, 1, 1) * np.ones((4, 2, 2, 3))
    y = np.array([[0], [14], [3], [7]], np.int32)
    path = write_npz(tmp_path / "f.npz", x, y, x, y)
    ds, info = data.load("npz:" + path, "test", batch_size=4, pixel_range="[-1,1]")
    assert info.image_shape == (2, 2, 3) and info.num_classes == 15
    images, labels = as_numpy(ds)
    np.testing.assert_allclose(images[:, 0, 0, 0], [-1.0, -0.6, 2 * (128 / 255 - 0.5), 1.0],
                               atol=1e-7)
    np.testing.assert_array_equal(labels, [0, 14, 3, 7])


def test_npz_real_file_if_present():
    path = SHARED_MNIST
    if not os.path.exists(path):
        pytest.skip("shared mnist_subset.npz not present")
    info = data.info("npz:" + path, "test")
    assert (info.num_examples, info.image_shape, info.num_classes) == (10000, (28, 28, 1), 10)


def test_npz_missing_file(tmp_path):
    missing = str(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="Received") as e:
        data.load("npz:" + missing)
    assert missing in str(e.value)


def test_npz_missing_keys(tmp_path):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "k.npz")
    np.savez(path, x_train=rng.integers(0, 256, (4, 3, 3), dtype=np.uint8),
             y_train=np.zeros(4, np.int64), images=np.zeros(2))
    with pytest.raises(ValueError, match="Received") as e:
        data.load("npz:" + path)
    message = str(e.value)
    assert "x_test" in message and "y_test" in message and "images" in message


def test_npz_float_unit_images(tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (4, 3, 3)).astype(np.float32)
    path = write_npz(tmp_path / "f.npz", x, np.zeros(4, np.int64), x, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="Received") as e:
        data.load("npz:" + path)
    assert "[0,1]" in str(e.value) and "float32" in str(e.value)


def test_npz_negative_labels(tmp_path):
    x = np.zeros((4, 3, 3), np.uint8)
    path = write_npz(tmp_path / "n.npz", x, np.array([0, 1, -3, 2]), x, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="Received") as e:
        data.load("npz:" + path, "test")  # Labels of both splits are checked.
    assert "-3" in str(e.value)


def test_npz_length_mismatch(tmp_path):
    x = np.zeros((5, 3, 3), np.uint8)
    path = write_npz(tmp_path / "l.npz", x, np.zeros(4, np.int64), x, np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="Received") as e:
        data.load("npz:" + path, "train")
    assert "len(x_train)=5" in str(e.value) and "len(y_train)=4" in str(e.value)


def test_npz_out_of_range_and_float_labels(tmp_path):
    x = np.full((2, 3, 3), 300, np.int32)
    path = write_npz(tmp_path / "r.npz", x, np.zeros(2, np.int64), x, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="max=300"):
        data.load("npz:" + path)
    x = np.zeros((2, 3, 3), np.uint8)
    path = write_npz(tmp_path / "y.npz", x, np.zeros(2, np.float32), x, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="float32"):
        data.load("npz:" + path)


def test_unknown_source_option_names_the_dataset_options():
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['image_size'\].*Received"):
        data.load("digits", "test", image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        data.info("imagenet", "test", data_dir="/nonexistent", image_sizes=32)
