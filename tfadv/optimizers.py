"""The optimizer of a training run and its learning-rate schedule: SGD (momentum) or Adam, a
piecewise-constant LR whose boundaries are in epochs, and Goyal et al.'s linear scaling rule with a
linear warm-up (BAT ImageNet, following the tensorpack ImageNet code).

The functions read a resolved run configuration (``tfadv.config.TrainConfig``: ``lr``,
``lr_boundaries``, ``lr_decay``, ``lr_scaling``, ``lr_warmup_epochs``, ``batch_size``,
``optimizer``, ``momentum``).
"""

from __future__ import annotations

import keras
import tensorflow as tf

LR_SCALINGS = ("none", "linear")
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


def make_optimizer(cfg, steps_per_epoch: int):
    """SGD (momentum) or Adam with a piecewise-constant LR whose boundaries are given in epochs,
    scaled and warmed up per ``cfg.lr_scaling`` (warm-up only when the scaled LR exceeds ``lr``,
    as the tensorpack code's ``if BASE_LR > 0.1``)."""
    lr = base_lr(cfg)
    warmup = 0
    if cfg.lr_scaling == "linear" and lr > cfg.lr:
        warmup = int(round(cfg.lr_warmup_epochs * steps_per_epoch))
    # The step counter is the number of updates already made, so epoch b's first update has step
    # b*steps_per_epoch: values[i] is kept while step <= b*steps_per_epoch - 1.
    boundaries = [b * steps_per_epoch - 1 for b in cfg.lr_boundaries]
    values = [lr * cfg.lr_decay ** i for i in range(len(cfg.lr_boundaries) + 1)]
    if warmup:
        lr = WarmupPiecewiseConstant(boundaries, values, warmup_steps=warmup, warmup_from=cfg.lr)
    elif cfg.lr_boundaries:
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    raise ValueError(f"Unknown optimizer. Expected sgd or adam. Received: {cfg.optimizer!r}.")
