"""Callbacks and run metadata: what makes a run reproducible from its log directory alone.

Beside the run's metadata and learning rate: :class:`ProgressLogger` (progress lines inside long
epochs, for a log file), :class:`GeneratorCheckpoint` (L2L-DA's generator saved with the run) and
:class:`FoscRecorder` / :class:`FoscLogger` (the FOSC of every training example of an epoch,
recorded inside a compiled ``train_step`` and logged as the FOSC paper's Figures 3/5), and
:class:`CatastrophicOverfittingGuard` (Fast AT's early stop on the PGD accuracy of a training
mini-batch).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from typing import Callable, Dict, Optional

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


class ProgressLogger(keras.callbacks.Callback):
    """A progress line every ``every`` seconds inside an epoch and its validation, for a log file.

    ``fit(verbose=2)`` writes one line at the end of each epoch only, and its progress bar
    (``verbose=1``) is for a terminal; in the log of a run whose epoch takes an hour this adds::

        Epoch 3/200: step 120/390, 475ms/step, elapsed 57s, eta 128s - loss: 1.2345 - adv_acc: 0.45
        Epoch 3/200: validation step 4, 2s/step, elapsed 8s

    The metrics are the epoch's running values (as Keras logs them). The first line comes ``every``
    seconds after the epoch (or its validation) starts; nothing is written for shorter ones.
    ``stream`` defaults to ``sys.stdout`` (where Keras writes); ``clock`` returns seconds.
    """

    def __init__(self, stream=None, *, every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        if not isinstance(every, (int, float)) or isinstance(every, bool) or not every > 0:
            raise ValueError(f"every must be a positive number of seconds. Received: {every!r}.")
        self.stream, self.every, self.clock = stream, float(every), clock
        self._epoch = None
        self._start = self._last = 0.0

    def _restart(self):
        self._start = self._last = self.clock()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)
        self._restart()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = None  # an evaluate() after fit() is not part of an epoch

    def on_test_begin(self, logs=None):
        self._restart()

    def on_train_batch_end(self, batch, logs=None):
        self._maybe_write("step", batch, self.params.get("steps"), logs)

    def on_test_batch_end(self, batch, logs=None):
        # During fit() the params are fit's, so a validation total is not known.
        self._maybe_write("validation step" if self._epoch is not None else "step", batch,
                          None if self._epoch is not None else self.params.get("steps"), logs)

    def _maybe_write(self, what, batch, total, logs):
        now = self.clock()
        if now - self._last < self.every:
            return
        self._last = now
        done, elapsed = int(batch) + 1, now - self._start
        per_step = elapsed / done
        prefix = "" if self._epoch is None else \
            f"Epoch {self._epoch + 1}/{self.params.get('epochs', '?')}: "
        text = f"{prefix}{what} {done}" + (f"/{total}" if total else "")
        text += f", {_duration(per_step)}/step, elapsed {elapsed:.0f}s"
        if total:
            text += f", eta {max(total - done, 0) * per_step:.0f}s"
        for name, value in (logs or {}).items():
            value = np.asarray(value)
            if value.size == 1 and np.issubdtype(value.dtype, np.number):
                text += f" - {name}: {float(value):.4f}"
        stream = self.stream if self.stream is not None else sys.stdout
        stream.write(text + "\n")
        stream.flush()


def _duration(seconds: float) -> str:
    """``12s``, ``450ms`` or ``80us`` (as Keras' progress bar writes a step's time)."""
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


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


#: Accuracy differences below this are float rounding, not a fall (a guard batch would need more
#: than 10⁶ examples for one to matter).
FALL_TOLERANCE = 1e-6


class CatastrophicOverfittingGuard(keras.callbacks.Callback):
    """Fast AT's early stop (Wong, Rice & Kolter, ICLR 2020; the release's ``--early-stop``):
    after every epoch, the PGD accuracy of the network on one fixed training mini-batch; when it
    falls by more than ``drop`` (absolute) below the previous check, the network's weights of
    the previous good check are restored and training stops.

    Args:
        batch: ``(images, labels)``, the fixed mini-batch (input units, in the attack's range).
        attack: the PGD that measures it (the release: 5 steps of 2/255 at ε = 8/255, 1 restart).
        drop: the largest tolerated fall of the accuracy (the release's 0.2).
        reference: what the fall is measured from: ``previous``, the last check (the release's; a
            collapse within one epoch), or ``best``, the best check so far, whose weights are then
            the ones restored (also a collapse spread over several epochs; ours).

    The defense (``tfadv.defenses.fast``) lists it in ``required_callbacks`` when given a batch.
    Each epoch's value is logged as ``guard_pgd_acc``; ``stopped_epoch`` is the 0-based epoch of the
    collapse (``None`` while none happened) and ``restored_acc`` the accuracy of the weights kept.
    """

    REFERENCES = ("previous", "best")

    def __init__(self, batch, attack, drop: float = 0.2, reference: str = "previous"):
        super().__init__()
        if not 0 < float(drop) <= 1:
            raise ValueError(f"drop must be an accuracy fall in (0, 1]. Received: drop={drop!r}.")
        if reference not in self.REFERENCES:
            raise ValueError(f"reference must be one of {self.REFERENCES}. "
                             f"Received: reference={reference!r}.")
        self.reference = reference
        images, labels = batch
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError("The guard needs a non-empty batch of as many labels as images. "
                             f"Received: {len(images)} images, {len(labels)} labels.")
        self.images = tf.constant(images, tf.float32)
        self.labels = tf.constant(labels, tf.int32)
        self.attack = attack
        self.drop = float(drop)
        self._reset()

    def _reset(self):
        self.previous_acc = 0.0  # the release starts from prev_robust_acc = 0
        self.good_weights = None
        self.stopped_epoch = None
        self.restored_acc = None

    def pgd_accuracy(self) -> float:
        """PGD accuracy of the network (inference mode) on the fixed batch."""
        x_adv = self.attack(self.model.model_fn(False), self.images, self.labels)
        logits = self.model.network(x_adv, training=False)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return float(tf.reduce_mean(tf.cast(tf.equal(predicted, self.labels), tf.float32)))

    def on_train_begin(self, logs=None):
        self._reset()
        self.good_weights = self.model.network.get_weights()

    def on_epoch_end(self, epoch, logs=None):
        acc = self.pgd_accuracy()
        if logs is not None:
            logs["guard_pgd_acc"] = acc
        # "More than drop", up to float rounding: on a batch of 100, 0.33 -> 0.13 is a fall of
        # exactly 0.2 (20 images) although 0.33 - 0.13 rounds to 0.2000000179 in float32.
        if self.previous_acc - acc > self.drop + FALL_TOLERANCE:
            self.model.network.set_weights(self.good_weights)
            self.stopped_epoch, self.restored_acc = epoch, self.previous_acc
            self.model.stop_training = True
            print(f"Catastrophic overfitting at epoch {epoch + 1}: PGD accuracy on the guard batch "
                  f"fell from {self.previous_acc:.4f} ({self.reference} check) to {acc:.4f} "
                  f"(more than {self.drop:g}); restored the weights of that check and stopped "
                  f"training.", flush=True)
            return
        if self.reference == "previous" or acc >= self.previous_acc:
            self.previous_acc = acc
            self.good_weights = self.model.network.get_weights()
