"""The optimizer of a training run and its learning-rate schedule: SGD (momentum) or Adam, a
piecewise-constant LR whose boundaries are in epochs, Goyal et al.'s linear scaling rule with a
linear warm-up (BAT ImageNet, following the tensorpack ImageNet code), or one triangular cycle
over the whole run (``lr_schedule="cyclic"``: Fast AT, Wong et al. 2020).

The functions read a resolved run configuration (``tfadv.config.TrainConfig``: ``lr``,
``lr_boundaries``, ``lr_decay``, ``lr_scaling``, ``lr_warmup_epochs``, ``lr_schedule``,
``lr_peak_fraction``, ``epochs``, ``batch_size``, ``optimizer``, ``momentum``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

LR_SCALINGS = ("none", "linear")
LR_SCHEDULES = ("piecewise", "cyclic")
REFERENCE_BATCH = 256  # Goyal et al.'s linear scaling rule, as the tensorpack ImageNet code uses it


def base_lr(cfg) -> float:
    """The LR after the scaling rule: ``lr x global_batch / 256`` for ``lr_scaling="linear"``
    (Goyal et al. sec. 2.1, the tensorpack ImageNet code's ``BASE_LR``), else ``lr``."""
    if cfg.lr_scaling == "linear":
        return cfg.lr * cfg.batch_size / REFERENCE_BATCH
    return cfg.lr


@keras.saving.register_keras_serializable(package="tfadv")
class WarmupPiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-constant LR (``values[i]`` while ``step <= boundaries[i]``, as
    PiecewiseConstantDecay) preceded by a linear warm-up from ``warmup_from`` to ``values[0]`` over
    the first ``warmup_steps`` updates (Goyal et al. sec. 2.2: the tensorpack code's step-based
    linear interpolation from 0.1 to BASE_LR over 5 epochs)."""

    def __init__(self, boundaries, values, warmup_steps: int = 0, warmup_from: float = 0.0):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"values needs one more entry than boundaries. Received: "
                             f"boundaries={boundaries!r}, values={values!r}.")
        self.boundaries = [int(b) for b in boundaries]
        self.values = [float(v) for v in values]
        self.warmup_steps = int(warmup_steps)
        self.warmup_from = float(warmup_from)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.values[0], tf.float32)
        for boundary, value in zip(self.boundaries, self.values[1:]):
            lr = tf.where(step > boundary, tf.constant(value, tf.float32), lr)
        if self.warmup_steps > 0:
            ramp = self.warmup_from + (self.values[0] - self.warmup_from) * step / self.warmup_steps
            lr = tf.where(step < self.warmup_steps, ramp, lr)
        return lr

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values,
                "warmup_steps": self.warmup_steps, "warmup_from": self.warmup_from}


@keras.saving.register_keras_serializable(package="tfadv")
class CyclicLR(keras.optimizers.schedules.LearningRateSchedule):
    """One triangular cycle over the run (Smith 2017, as Fast AT's release steps PyTorch's
    ``CyclicLR(base_lr=0, max_lr, step_size_up, step_size_down)`` once per batch): the LR of the
    update made after ``step`` updates rises linearly from 0 at step 0 to ``max_lr`` at
    ``peak_step`` and falls linearly to 0 at ``total_steps`` (0 from there on)."""

    def __init__(self, max_lr: float, total_steps: int, peak_step: int):
        if not max_lr > 0 or max_lr == float("inf"):
            raise ValueError(f"max_lr must be a finite number > 0. Received: max_lr={max_lr!r}.")
        if not 0 < int(peak_step) < int(total_steps):
            raise ValueError("The cycle needs 0 < peak_step < total_steps (at least two updates). "
                             f"Received: peak_step={peak_step!r}, total_steps={total_steps!r}.")
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.peak_step = int(peak_step)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        up = self.max_lr * step / self.peak_step
        down = self.max_lr * (self.total_steps - step) / (self.total_steps - self.peak_step)
        return tf.maximum(tf.where(step <= self.peak_step, up, down), 0.0)

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps,
                "peak_step": self.peak_step}


def cyclic_lr(cfg, steps_per_epoch: int) -> CyclicLR:
    """The cycle of a run: peak ``base_lr(cfg)`` after ``lr_peak_fraction`` of its
    ``epochs x steps_per_epoch`` updates (Fast AT's CIFAR release: 0.2 at half of training)."""
    total = int(cfg.epochs) * int(steps_per_epoch)
    peak = min(max(int(round(cfg.lr_peak_fraction * total)), 1), total - 1)
    return CyclicLR(base_lr(cfg), total_steps=total, peak_step=peak)


def make_optimizer(cfg, steps_per_epoch: int):
    """SGD (momentum) or Adam with a piecewise-constant LR whose boundaries are given in epochs,
    scaled and warmed up per ``cfg.lr_scaling`` (warm-up only when the scaled LR exceeds ``lr``,
    as the tensorpack code's ``if BASE_LR > 0.1``); ``cfg.lr_schedule="cyclic"`` is one triangular
    cycle peaking at that LR instead (:func:`cyclic_lr`; boundaries and warm-up do not apply)."""
    lr = base_lr(cfg)
    warmup = 0
    if cfg.lr_scaling == "linear" and lr > cfg.lr:
        warmup = int(round(cfg.lr_warmup_epochs * steps_per_epoch))
    # The step counter is the number of updates already made, so epoch b's first update has step
    # b*steps_per_epoch: values[i] is kept while step <= b*steps_per_epoch - 1.
    boundaries = [b * steps_per_epoch - 1 for b in cfg.lr_boundaries]
    values = [lr * cfg.lr_decay ** i for i in range(len(cfg.lr_boundaries) + 1)]
    if cfg.lr_schedule == "cyclic":
        lr = cyclic_lr(cfg, steps_per_epoch)
    elif warmup:
        lr = WarmupPiecewiseConstant(boundaries, values, warmup_steps=warmup, warmup_from=cfg.lr)
    elif cfg.lr_boundaries:
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    raise ValueError(f"Unknown optimizer. Expected sgd or adam. Received: {cfg.optimizer!r}.")
