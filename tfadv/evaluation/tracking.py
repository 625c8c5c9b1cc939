"""Robustness against training wall time: a Keras callback for ``fit()`` (issue 20, time to
robustness).

Every ``every`` optimizer steps (and when training ends) :class:`RobustnessTracker` evaluates the
network on a fixed slice of images under its attack specs (each spec's attack called on the model
in inference mode as the runner calls it, compiled once per attack object and reused at every
check; accuracy = the model's prediction on the attack's output) and records the accuracies against the
*training* seconds so far: the wall time of ``fit()`` less the time of its own checks and of
Keras' validation passes, so that how often one measures does not change the clock. With a
``budget_seconds`` it stops training once that many training seconds have passed (checked after
every batch; the step under way completes).

The records go to ``path`` (JSON, written atomically after every check):
``{"attacks": [...], "num_examples": n, "records": [{"step", "epoch", "train_seconds",
"accuracy": {label: %}}, ...]}``. A resumed run keeps the records up to the step it resumes at and
continues the clock from the last of them; later records of the killed run are dropped (they
belong to steps that are trained again).
"""

from __future__ import annotations

import os
import time
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from tfadv import atomic
from tfadv.attacks import model_fn as model_fn_lib


# "wall": elapsed time; "cpu": CPU seconds of this process, all its threads (time.process_time),
# which other processes on a shared machine barely change.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class TrainingClock(keras.callbacks.Callback):
    """Training seconds of a ``fit()``: its time less Keras' validation passes and whatever a
    subclass excludes, on ``clock`` (``"wall"`` or ``"cpu"``: :data:`CLOCKS`); with
    ``budget_seconds``, training stops once that many have passed (checked after every batch; the
    step under way completes).  ``offset``: seconds of earlier runs that this one resumes."""

    def __init__(self, budget_seconds: Optional[float] = None, clock: str = "wall"):
        super().__init__()
        if budget_seconds is not None and not float(budget_seconds) > 0:
            raise ValueError("budget_seconds must be a positive number of seconds or None. "
                             f"Received: budget_seconds={budget_seconds!r}.")
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {sorted(CLOCKS)}. Received: clock={clock!r}.")
        self.budget_seconds = None if budget_seconds is None else float(budget_seconds)
        self.clock = clock
        self._now = CLOCKS[clock]
        self.offset = 0.0
        self._start = None
        self._excluded = 0.0
        self._test_start = None

    def train_seconds(self) -> float:
        return self.offset + self._now() - self._start - self._excluded

    def on_train_begin(self, logs=None):
        self._start, self._excluded = self._now(), 0.0

    def on_test_begin(self, logs=None):
        self._test_start = self._now()

    def on_test_end(self, logs=None):
        if self._test_start is not None:
            self._excluded += self._now() - self._test_start
            self._test_start = None

    def on_train_batch_end(self, batch, logs=None):
        if self.budget_seconds is not None and self.train_seconds() >= self.budget_seconds:
            if not self.model.stop_training:
                print(f"Time budget reached: {self.train_seconds():.1f} training seconds "
                      f"(--time_budget={self.budget_seconds:g}); training stops.", flush=True)
            self.model.stop_training = True


class RobustnessTracker(TrainingClock):
    """Accuracy under ``specs`` on ``(images, labels)`` against training seconds.

    Args:
        images, labels: the fixed slice (input units, in ``pixel_range``), evaluated whole at
            every check in batches of ``batch_size``.
        specs: ordered mapping label -> attack spec (as :func:`tfadv.evaluation.parse_list`
            returns), built once and reused at every check.
        pixel_range: the images' range.
        every: optimizer steps between checks (>= 1).
        budget_seconds: stop training after this many training seconds (None: no budget).
        path: where the records are written (None: kept in ``records`` only).
        clock: ``"wall"`` or ``"cpu"`` (:data:`CLOCKS`).
    """

    def __init__(self, images, labels, specs: Dict[str, object], *, pixel_range, every: int,
                 budget_seconds: Optional[float] = None, path: Optional[str] = None,
                 batch_size: int = 100, clock: str = "wall"):
        super().__init__(budget_seconds, clock)
        if int(every) < 1:
            raise ValueError(f"every must be a number of steps >= 1. Received: every={every!r}.")
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError("The tracker needs a non-empty slice with one label per image. "
                             f"Received: {len(images)} images, {len(labels)} labels.")
        if not specs:
            raise ValueError(f"The tracker needs at least one attack spec. Received: {specs!r}.")
        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels, np.int64)
        self.specs = dict(specs)
        self.pixel_range = pixel_range
        self.every = int(every)
        self.path = path
        self.batch_size = int(batch_size)
        self.records = []
        self._epoch = 0
        self._last_step = None
        self._model_fn = None

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        step = self._step()  # after ResumeCheckpoint restored the optimizer's step counter
        self.records = self._resumed_records(step)
        self.offset = self.records[-1]["train_seconds"] if self.records else 0.0
        self._last_step = self.records[-1]["step"] if self.records else None
        if not self.records:
            self._check()  # the starting point: 0 training seconds

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        # A check each time the step passes a multiple of ``every`` (a step may advance the
        # optimizer by several iterations: Free AT's replays).
        step = self._step()
        if self._last_step is None or step // self.every > self._last_step // self.every:
            self._check()
        super().on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        if self._last_step != self._step():
            self._check()

    # ------------------------------------------------------------------------------ checks
    def _check(self):
        began = self._now()
        seconds = self.train_seconds()
        if self._model_fn is None:
            self._model_fn = model_fn_lib.as_model_fn(getattr(self.model, "network", self.model))
        accuracy = {}
        for label, spec in self.specs.items():
            attack = getattr(spec, "attack", spec)
            correct = 0
            for i in range(0, len(self.images), self.batch_size):
                x = tf.constant(self.images[i:i + self.batch_size])
                y = tf.constant(self.labels[i:i + self.batch_size], tf.int32)
                # Each attack object keeps its compiled function per model (Attack.compiled):
                # traced at the first check only.
                x_adv = attack(self._model_fn, x, y)
                predicted = tf.argmax(self._model_fn(x_adv), axis=-1, output_type=tf.int32)
                correct += int(tf.reduce_sum(tf.cast(tf.equal(predicted, y), tf.int32)))
            accuracy[label] = round(100.0 * correct / len(self.images), 4)
        step = self._step()
        self.records.append({"step": step, "epoch": self._epoch,
                             "train_seconds": round(seconds, 3), "accuracy": accuracy})
        self._last_step = step
        if self.path:
            atomic.write_json(self.path, {"attacks": list(self.specs), "clock": self.clock,
                                          "num_examples": int(len(self.images)),
                                          "records": self.records})
        self._excluded += self._now() - began

    def _resumed_records(self, step: int):
        if not self.path or not os.path.exists(self.path) or step == 0:
            return []
        previous = atomic.read_json(self.path, missing="the robustness-over-time log")
        if previous.get("attacks") != list(self.specs) or \
                previous.get("num_examples") != int(len(self.images)) or \
                previous.get("clock", "wall") != self.clock:
            raise ValueError(
                f"{self.path} was written by a tracker of other attacks, another slice or another "
                "clock; a resumed run would mix two curves. Move it aside or start a new run. "
                f"Received: attacks={previous.get('attacks')}, "
                f"num_examples={previous.get('num_examples')}, clock={previous.get('clock')} "
                f"(this run: attacks={list(self.specs)}, num_examples={len(self.images)}, "
                f"clock={self.clock}).")
        return [r for r in previous.get("records", []) if r["step"] <= step]


def time_to_reach(records, label: str, level: float) -> Optional[float]:
    """The training seconds of the first record whose accuracy under ``label`` is at least
    ``level`` (%), or None when no record reaches it."""
    for record in records:
        if record["accuracy"][label] >= level:
            return float(record["train_seconds"])
    return None
