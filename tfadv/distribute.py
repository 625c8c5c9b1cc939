"""The tf.distribute strategy named by the scripts' flags."""

from __future__ import annotations

import tensorflow as tf


def strategy_from_flags(num_gpus: int = 0) -> tf.distribute.Strategy:
    """``num_gpus=0``: the default strategy (one device); ``N>=1``: MirroredStrategy over N GPUs."""
    if num_gpus is None or int(num_gpus) != num_gpus or num_gpus < 0:
        raise ValueError(f"num_gpus must be a non-negative integer. Received: {num_gpus!r}.")
    if num_gpus == 0:
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < num_gpus:
        raise ValueError(f"--num_gpus={num_gpus} but only {len(gpus)} GPU(s) are visible "
                         f"({[d.name for d in gpus]}). Received: num_gpus={num_gpus}.")
    return tf.distribute.MirroredStrategy([d.name for d in gpus[:num_gpus]])
