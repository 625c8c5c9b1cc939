"""Issue 16 sec. 4, training inputs: bad data or flags stop ``scripts/train_*.py`` before the first
step (nothing written, the error names the value), and validation during training reads a held-out
slice of the training split, not the test split, unless asked for."""

import json
import os

import numpy as np
import pytest

from tests import testing

TRAIN_MADRY = os.path.join(testing.REPO_ROOT, "scripts", "train_madry.py")
TINY = ["--epochs=1", "--train_limit=64", "--eval_limit=32", "--val_limit=16", "--batch_size=32",
        "--num_steps=1", "--eval_attacks=clean"]


def train_madry(tmp_path, *args, check=False):
    """Runs train_madry.py with tiny settings into ``tmp_path/run``; returns (proc, logdir)."""
    logdir = str(tmp_path / "run")
    proc = testing.run_python(script=TRAIN_MADRY, check=check,
                              args=[*TINY, *args, f"--logdir={logdir}"])
    return proc, logdir


def assert_refused_before_training(tmp_path, args, received):
    proc, logdir = train_madry(tmp_path, *args)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert received in output, output[-3000:]
    assert "Training took" not in output and not os.path.exists(logdir), output[-3000:]


def digits_like_npz(tmp_path, **override):
    """A tiny Keras-layout npz of 8x8 images (the digits preset), with ``override`` arrays."""
    rng = np.random.RandomState(0)
    arrays = dict(x_train=rng.randint(0, 256, (40, 8, 8)).astype(np.uint8),
                  y_train=np.arange(40) % 10,
                  x_test=rng.randint(0, 256, (10, 8, 8)).astype(np.uint8), y_test=np.arange(10))
    arrays.update(override)
    path = str(tmp_path / "data.npz")
    np.savez(path, **arrays)
    return f"--dataset=npz:{path}"


def test_test_label_outside_the_training_classes_is_refused(tmp_path):
    dataset = digits_like_npz(tmp_path, y_test=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12]))
    assert_refused_before_training(tmp_path, [dataset], "Received: y_test label(s) [12]")


def test_zero_length_arrays_are_refused(tmp_path):
    dataset = digits_like_npz(tmp_path, x_train=np.zeros((0, 8, 8), np.uint8),
                              y_train=np.zeros((0,), np.int64))
    assert_refused_before_training(tmp_path, [dataset], "Received: x_train shape (0, 8, 8, 1)")


def test_train_test_image_shape_mismatch_is_refused(tmp_path):
    dataset = digits_like_npz(tmp_path, x_test=np.zeros((10, 28, 28), np.uint8))
    assert_refused_before_training(tmp_path, [dataset],
                                   "Received: x_train (8, 8, 1), x_test (28, 28, 1)")


def test_bad_eval_attacks_are_refused_before_training(tmp_path):
    assert_refused_before_training(tmp_path, ["--eval_attacks=clean,pgdd-20"], "'pgdd-20'")


def test_eval_limit_zero_is_refused(tmp_path):
    assert_refused_before_training(tmp_path, ["--eval_limit=0"], "Received: 0.")


@pytest.mark.parametrize("lr", ["0", "-0.001"])
def test_non_positive_lr_is_refused(tmp_path, lr):
    assert_refused_before_training(tmp_path, [f"--lr={lr}"], f"Received: {float(lr)!r}.")


def test_checkpoint_every_zero_is_refused_not_changed(tmp_path):
    assert_refused_before_training(tmp_path, ["--checkpoint_every=0"], "Received: 0.")


def test_atomic_checkpoint_refuses_every_zero(tmp_path):
    from tfadv import checkpoints

    with pytest.raises(ValueError, match=r"Received: every=0\."):
        checkpoints.AtomicCheckpoint(str(tmp_path), testing.tiny_cnn(), every=0)


def test_validation_is_a_held_out_training_slice_by_default(tmp_path):
    from tfadv import data

    proc, logdir = train_madry(tmp_path, check=True)
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        validation = json.load(f)["validation"]
    assert validation == {"source": "heldout", "train_split": "train[:-16]",
                          "split": "train[-16:]", "limit": None, "num_examples": 16,
                          "capped_from": None}
    assert "Validation: 16 held-out training images (train[-16:]" in proc.stdout, proc.stdout
    # The slices partition the training split: validation images are never trained on.
    full, head, tail = (data.load("digits", split, batch_size=2000, training=False)[0]
                        for split in ("train", "train[:-16]", "train[-16:]"))
    (full_x, full_y), (head_x, _), (tail_x, tail_y) = (next(iter(ds)) for ds in (full, head, tail))
    np.testing.assert_array_equal(np.concatenate([head_x, tail_x]), full_x)
    np.testing.assert_array_equal(tail_y, full_y[-16:])


def test_test_split_validation_only_when_asked_and_reported(tmp_path):
    proc, logdir = train_madry(tmp_path, "--val_split=test", check=True)
    with open(os.path.join(logdir, "run_metadata.json")) as f:
        meta = json.load(f)
    assert meta["validation"]["source"] == "test" and meta["validation"]["split"] == "test"
    assert meta["validation"]["num_examples"] == 16 and meta["config"]["val_split"] == "test"
    assert "Validation: 16 images of the TEST split" in proc.stdout, proc.stdout
