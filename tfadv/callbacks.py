"""Callbacks and run metadata: what makes a run reproducible from its log directory alone.

Beside the run's metadata and learning rate: :class:`GeneratorCheckpoint` (L2L-DA's generator saved
with the run) and :class:`FoscRecorder` / :class:`FoscLogger` (the FOSC of every training example
of an epoch, recorded inside a compiled ``train_step`` and logged as the FOSC paper's Figures 3/5).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from tfadv import atomic
from tfadv.attacks import l2lda_generator
from tfadv.evaluation import plots

RUN_METADATA = "run_metadata.json"
FOSC_PLOT_TITLE = "FOSC of the training adversarial examples"


def git_state(repo_dir: Optional[str] = None) -> dict:
    """The git commit of the code that ran and whether the work tree had local changes."""
    repo_dir = repo_dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = run("rev-parse", "HEAD")
    return {"commit": commit or "unknown", "dirty": bool(run("status", "--porcelain")) if commit else None}


def write_run_metadata(logdir: str, *, flags: dict, seed: Optional[int], extra: Optional[dict] = None) -> dict:
    """Writes flags, git hash, seed, command line and library versions to LOGDIR/run_metadata.json."""
    meta = {
        "flags": flags,
        "seed": seed,
        "git": git_state(),
        "argv": sys.argv,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "versions": {"python": platform.python_version(), "tensorflow": tf.__version__,
                     "keras": keras.__version__},
    }
    meta.update(extra or {})
    atomic.write_json(os.path.join(logdir, RUN_METADATA), meta)
    return meta


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs (so TensorBoard plots it).

    Place it before ``keras.callbacks.TensorBoard`` in the callback list.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class GeneratorCheckpoint(keras.callbacks.Callback):
    """Saves L2L-DA's generator under ``LOGDIR/generator/`` after every ``every`` epochs
    (:func:`tfadv.attacks.l2lda_generator.save_generator`; the shared AtomicCheckpoint saves only
    the classifier)."""

    def __init__(self, directory: str, generator: keras.Model, *, every: int = 1):
        super().__init__()
        self.directory = directory
        self.generator = generator
        self.every = max(int(every), 1)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            l2lda_generator.save_generator(self.generator, self.directory, epoch=epoch + 1)


class FoscRecorder:
    """Keeps the FOSC of the training examples of the current epoch in a ring buffer of
    ``capacity`` values (the last ``capacity`` examples when an epoch has more), so that a compiled
    ``train_step`` can record them and a callback can read them at the end of the epoch.

    Under a multi-replica strategy each replica keeps its own buffer and the first replica's is read
    (a subsample of the epoch's examples).
    """

    def __init__(self, capacity: int = 65536):
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be a positive integer. Received: {capacity!r}.")
        self.capacity = int(capacity)
        sync = dict(synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA, trainable=False)
        self.values = tf.Variable(tf.zeros([self.capacity], tf.float32), name="fosc_values", **sync)
        self.count = tf.Variable(tf.constant(0, tf.int64), name="fosc_count", **sync)

    def record(self, values):
        values = tf.reshape(tf.cast(values, tf.float32), [-1])
        n = tf.shape(values, out_type=tf.int64)[0]
        index = (self.count + tf.range(n, dtype=tf.int64)) % self.capacity
        # assign (not scatter_nd_update): the per-replica (ON_READ) variables of a distribution
        # strategy support only whole assignments in replica context.
        self.values.assign(tf.tensor_scatter_nd_update(self.values, index[:, None], values))
        self.count.assign_add(n)

    def reset(self):
        self.count.assign(0)

    def read(self) -> np.ndarray:
        n = int(min(int(self.count.numpy()), self.capacity))
        return np.array(self.values.numpy()[:n])


class FoscLogger(keras.callbacks.Callback):
    """Logs the FOSC distribution of the training examples every epoch (Figures 3 and 5):

    * ``tf.summary.histogram("fosc_distribution", ...)`` into ``LOGDIR/tensorboard/train`` (beside Keras'
      TensorBoard scalars of the same run), step = epoch;
    * ``LOGDIR/fosc/epoch_NNNN.npy`` with the values (as the release saves ``*_fosc.npy``);
    * ``LOGDIR/fosc.png``: the distributions at up to six epochs
      (:func:`tfadv.evaluation.plots.epoch_distributions`).

    ``recorder`` is the defense's :class:`FoscRecorder`; it is reset at the start of every epoch.
    """

    def __init__(self, recorder: FoscRecorder, logdir: str, *, plot: bool = True):
        super().__init__()
        self.recorder = recorder
        self.logdir = logdir
        self.plot = plot
        self.history: Dict[int, np.ndarray] = {}
        self._writer = None

    def on_epoch_begin(self, epoch, logs=None):
        self.recorder.reset()

    def on_epoch_end(self, epoch, logs=None):
        values = self.recorder.read()
        self.history[int(epoch)] = values
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.logdir, "tensorboard",
                                                                      "train"))
        if values.size:
            with self._writer.as_default():
                tf.summary.histogram("fosc_distribution", values, step=int(epoch))
            self._writer.flush()
        out = os.path.join(self.logdir, "fosc")
        os.makedirs(out, exist_ok=True)
        with atomic.atomic_path(os.path.join(out, f"epoch_{int(epoch):04d}.npy")) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, values)
        if self.plot:
            plots.epoch_distributions(self.history, os.path.join(self.logdir, "fosc.png"),
                                      title=FOSC_PLOT_TITLE, xlabel="FOSC")

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
