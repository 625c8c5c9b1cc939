"""Checkpoints a run can be rebuilt from: atomic weight files plus the run's network config.

Layout of a log directory::

    LOGDIR/run_config.json          model name/kwargs, classes, input shape, pixel range, dataset
    LOGDIR/run_metadata.json        flags, git hash, seed, versions (tfadv.callbacks)
    LOGDIR/checkpoints/ckpt-0003.weights.h5, checkpoint.json (latest epoch)
    LOGDIR/backup/state-0003.weights.h5, state.json   the resumable training state (ResumeCheckpoint)
    LOGDIR/savedmodel/              export at the end of training
"""

from __future__ import annotations

import glob
import json
import numbers
import os
import re
from typing import Optional

import keras
import numpy as np

from tfadv import atomic
from tfadv import identity as identity_lib

RUN_CONFIG = "run_config.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_INDEX = "checkpoint.json"
_CKPT_RE = re.compile(r"ckpt-(\d+)\.weights\.h5$")


def write_run_config(logdir: str, *, model: str, num_classes: int, input_shape, pixel_range: str,
                     dataset: str, model_kwargs: Optional[dict] = None) -> dict:
    config = {"model": model, "model_kwargs": model_kwargs or {}, "num_classes": int(num_classes),
              "input_shape": [int(d) for d in input_shape], "pixel_range": str(pixel_range),
              "dataset": dataset}
    atomic.write_json(os.path.join(logdir, RUN_CONFIG), config)
    return config


def read_run_config(logdir: str) -> dict:
    return atomic.read_json(
        os.path.join(logdir, RUN_CONFIG),
        missing=f"No {RUN_CONFIG} in the run directory, so the network cannot be rebuilt. "
                f"Received: {logdir!r}.")


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the *network's* weights after every ``every`` epochs, atomically, keeping ``keep``,
    and always the final weights when training ends (whatever ``every``), so that a run
    directory resolves to the weights its SavedModel is exported from. Place it after
    :class:`ResumeCheckpoint`: a resumed run's epoch is the one that callback restored."""

    def __init__(self, logdir: str, network: keras.Model, *, every: int = 1, keep: int = 3):
        super().__init__()
        self.directory = os.path.join(logdir, CHECKPOINT_DIR)
        self.network = network
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"every (epochs between checkpoints) must be an integer >= 1. "
                             f"Received: every={every!r}.")
        self.every = every
        self.keep = max(int(keep), 1)
        self.epoch = 0

    def on_train_begin(self, logs=None):
        # fit() starts at the epoch ResumeCheckpoint restored (0 for a fresh run).
        self.epoch = int(getattr(self.model, "_initial_epoch", None) or 0)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch + 1
        if self.epoch % self.every == 0:
            self._save()

    def on_train_end(self, logs=None):
        if self.epoch and latest_epoch(self.directory) != self.epoch:
            self._save()

    def _save(self):
        latest = save(self.directory, self.network, self.epoch)
        # The newest ``keep`` by epoch, never the file checkpoint.json now names.
        older = [p for p in list_checkpoints(self.directory) if p != latest]
        for old in older[:max(len(older) - (self.keep - 1), 0)]:
            os.remove(old)


BACKUP_DIR = "backup"
BACKUP_INDEX = "state.json"
_STATE_RE = re.compile(r"state-(\d+)\.weights\.h5$")


class ResumeCheckpoint(keras.callbacks.Callback):
    """Makes a run resumable: after every epoch the whole training state (the defense model's
    weights, the optimizer's variables — its step counter, hence the LR schedule, and momenta —
    and the model's scalar ``tf.Variable`` schedules) is written atomically to
    ``LOGDIR/backup``; a new ``fit()`` on the same directory starts from the epoch after the last
    completed one (Keras ``BackupAndRestore``'s contract, with atomic files).

    The weights file is renamed into place before ``state.json`` names it and older files are
    removed only afterwards, so a kill at any moment leaves a consistent (weights, epoch) pair.
    The backup is kept when training ends: re-running a finished run skips to its export and
    evaluation.
    """

    def __init__(self, logdir: str):
        super().__init__()
        self.directory = os.path.join(logdir, BACKUP_DIR)
        self.resumed_epoch = 0

    def discard(self):
        """Removes the backup (a fresh start: ``--noresume``)."""
        for path in glob.glob(os.path.join(self.directory, "state-*.weights.h5")) + \
                [os.path.join(self.directory, BACKUP_INDEX)]:
            if os.path.exists(path):
                os.remove(path)

    def state(self) -> Optional[dict]:
        """The last completed epoch's record, or None when there is no backup."""
        path = os.path.join(self.directory, BACKUP_INDEX)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            int(state["epoch"]), str(state["weights"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"Corrupt resume state ({type(e).__name__}: {e}); delete it or pass "
                             f"--noresume. Received: {path!r}.") from None
        return state

    def _schedule_variables(self):
        import tensorflow as tf

        return {name: value for name, value in sorted(vars(self.model).items())
                if isinstance(value, tf.Variable) and value.shape.rank == 0}

    def _ensure_built(self):
        # A defense's variables all live in its (built) network, its optimizer and its metrics;
        # Keras leaves some subclassed models unmarked, and then refuses to save or load them.
        if not self.model.built:
            self.model.built = True

    def on_train_begin(self, logs=None):
        self._ensure_built()
        state = self.state()
        if state is None:
            return
        weights = os.path.join(self.directory, state["weights"])
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(weights)
        except Exception as e:  # missing/corrupt file or a different architecture
            raise ValueError(f"Could not restore the training state ({type(e).__name__}: {e}); "
                             f"pass --noresume to start afresh. Received: {weights!r}.") from None
        for name, variable in self._schedule_variables().items():
            if name in state.get("variables", {}):
                variable.assign(np.asarray(state["variables"][name]).astype(variable.dtype.as_numpy_dtype))
        self.resumed_epoch = int(state["epoch"])
        # fit() reads this after on_train_begin (Keras' BackupAndRestore does the same).
        self.model._initial_epoch = self.resumed_epoch

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        self._ensure_built()
        name = f"state-{epoch + 1:04d}.weights.h5"
        with atomic.atomic_path(os.path.join(self.directory, name)) as tmp:
            self.model.save_weights(tmp)
        variables = {k: v.numpy().item() for k, v in self._schedule_variables().items()}
        atomic.write_json(os.path.join(self.directory, BACKUP_INDEX),
                          {"epoch": int(epoch + 1), "weights": name, "variables": variables})
        for old in glob.glob(os.path.join(self.directory, "state-*.weights.h5")):
            if os.path.basename(old) != name and _STATE_RE.search(old):
                os.remove(old)


def save(directory: str, network: keras.Model, epoch: int) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"ckpt-{epoch:04d}.weights.h5")
    with atomic.atomic_path(path) as tmp:
        network.save_weights(tmp)
    atomic.write_json(os.path.join(directory, CHECKPOINT_INDEX),
                      {"latest": os.path.basename(path), "epoch": int(epoch)})
    return path


def list_checkpoints(directory: str):
    files = [p for p in glob.glob(os.path.join(directory, "ckpt-*.weights.h5")) if _CKPT_RE.search(p)]
    return sorted(files, key=lambda p: int(_CKPT_RE.search(p).group(1)))


def latest_checkpoint(directory: str) -> Optional[str]:
    """The weights file ``checkpoint.json`` names (it must exist); without an index (checkpoints
    written by hand) the highest-numbered ``ckpt-*.weights.h5``; None when there is none."""
    index = os.path.join(directory, CHECKPOINT_INDEX)
    if not os.path.isfile(index):
        found = list_checkpoints(directory)
        return found[-1] if found else None
    try:
        with open(index, encoding="utf-8") as f:
            latest = str(json.load(f)["latest"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"Corrupt {CHECKPOINT_INDEX} ({type(e).__name__}: {e}). "
                         f"Received: {index!r}.") from None
    weights = os.path.join(directory, os.path.basename(latest))
    if not os.path.isfile(weights):
        raise ValueError(f"{CHECKPOINT_INDEX} names the latest checkpoint {latest!r}, which is "
                         f"missing, so this run directory has no final weights to load. "
                         f"Received: {index!r}.")
    return weights


def checkpoint_identity(logdir: str) -> Optional[dict]:
    """Which checkpoint a run directory resolves to (:func:`resolve`): ``{"checkpoint": file
    name, "epoch": the epoch checkpoint.json records (None without one), "weights": the file's
    SHA-256}``; None when the run has no checkpoint. What ``LOGDIR/model.keras`` records it was
    saved from (:func:`tfadv.export.save_keras`), so that loading can tell whether it still is the
    run's final network without trusting file times."""
    directory = os.path.join(logdir, CHECKPOINT_DIR)
    if not os.path.isdir(directory) or latest_checkpoint(directory) is None:
        return None
    weights, _ = resolve(logdir)
    return {"checkpoint": os.path.basename(weights), "epoch": latest_epoch(directory),
            "weights": identity_lib.of_file(weights)}


def latest_epoch(directory: str) -> Optional[int]:
    """The epoch ``checkpoint.json`` records, or None when there is no (readable) index."""
    try:
        with open(os.path.join(directory, CHECKPOINT_INDEX), encoding="utf-8") as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_final(logdir: str, epoch: Optional[int], path: str) -> None:
    """Refuses a run directory whose training got further than its latest checkpoint: its
    checkpoint would stand for a model the run no longer has (nor exported)."""
    try:
        with open(os.path.join(logdir, BACKUP_DIR, BACKUP_INDEX), encoding="utf-8") as f:
            trained = int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if epoch is not None and trained > epoch:
        raise ValueError(f"The run trained to epoch {trained} ({BACKUP_DIR}/{BACKUP_INDEX}) but its "
                         f"latest checkpoint is epoch {epoch}: its final weights were never "
                         f"checkpointed (killed before it finished, or written before final "
                         f"checkpoints were kept). Re-run its training command to finish it, or "
                         f"name a .weights.h5 file. Received: {path!r}.")


def resolve(path: str):
    """Returns (weights_file, logdir) for a log directory, its checkpoints/ folder or a weights file.

    A directory resolves to the checkpoint its ``checkpoint.json`` names (:func:`latest_checkpoint`).
    """
    if os.path.isfile(path):
        directory = os.path.dirname(os.path.abspath(path))
        logdir = os.path.dirname(directory) if os.path.basename(directory) == CHECKPOINT_DIR else directory
        return path, logdir
    if os.path.isdir(path):
        directory = path if os.path.basename(os.path.normpath(path)) == CHECKPOINT_DIR else os.path.join(path, CHECKPOINT_DIR)
        found = latest_checkpoint(directory)
        if found:
            logdir = os.path.dirname(os.path.abspath(directory))
            _check_final(logdir, latest_epoch(directory), path)
            return found, logdir
    raise ValueError(f"No checkpoint found: expected a run directory with {CHECKPOINT_DIR}/ckpt-*.weights.h5 "
                     f"or a .weights.h5 file. Received: {path!r}.")


def load_into(network: keras.Model, path: str) -> str:
    """Loads the checkpoint at ``path`` (run dir, checkpoints/ or file) into ``network``."""
    weights, _ = resolve(path)
    try:
        network.load_weights(weights)
    except Exception as e:  # truncated/corrupt HDF5 or a mismatching architecture
        raise ValueError(f"Could not load the checkpoint ({type(e).__name__}: {e}). "
                         f"Received: {weights!r}.") from None
    return weights


def restore_network(path: str):
    """Rebuilds the network of a run from its run_config.json and loads a checkpoint into it.

    Returns ``(network, run_config, weights_file)``.
    """
    from tfadv import models  # the architecture registry

    weights, logdir = resolve(path)
    config = read_run_config(logdir)
    network = models.build(config["model"], num_classes=config["num_classes"],
                           input_shape=tuple(config["input_shape"]), **config.get("model_kwargs", {}))
    load_into(network, weights)
    return network, config, weights
