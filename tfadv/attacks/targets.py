"""Target-class selection for targeted attacks (BAT sec. 4.1: most confusing / least likely / random)."""

from __future__ import annotations

import tensorflow as tf

from tfadv.registry import Registry

TARGETS = Registry("target")


def _mask_true(logits, labels, fill):
    is_true = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(logits)[-1]) > 0.5
    return tf.where(is_true, tf.cast(fill, logits.dtype), logits)


@TARGETS.register("mc", "most_confusing")
def most_confusing(*, logits, labels, seed=None):
    """argmax_{k≠y} z_k of the clean logits (BAT's MC target: the true class masked out)."""
    return tf.argmax(_mask_true(logits, labels, -1e30), axis=-1, output_type=tf.int32)


@TARGETS.register("ll", "least_likely")
def least_likely(*, logits, labels, seed=None):
    """argmin_k z_k of the clean logits, never the true class (LL target of Kurakin et al.)."""
    return tf.argmin(_mask_true(logits, labels, 1e30), axis=-1, output_type=tf.int32)


@TARGETS.register("random")
def random_other(*, logits, labels, seed=None):
    """A class drawn uniformly from the K-1 classes other than the true one."""
    num_classes = tf.shape(logits)[-1]
    offset = tf.random.uniform(tf.shape(labels), 1, num_classes, dtype=tf.int32, seed=seed)
    return tf.math.floormod(tf.cast(labels, tf.int32) + offset, num_classes)


def select(kind: str, *, logits, labels, seed=None):
    """Target classes of kind ``mc``, ``ll`` or ``random`` from clean logits."""
    return TARGETS.lookup(kind)(logits=logits, labels=labels, seed=seed)
