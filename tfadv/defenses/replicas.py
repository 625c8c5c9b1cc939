"""What a defense's ``train_step`` does across the replicas of a strategy: each replica's share of
the global batch (its batch-mean loss is weighted by it) and the BatchNorm moving statistics
averaged over the replicas after the update (:class:`tfadv.defenses.base.AdversarialModel`)."""

from __future__ import annotations

import keras
import tensorflow as tf


def global_batch_share(y, replicas: int):
    """(examples in this replica's slice, its fraction of the global batch); (n, 1) alone."""
    local_n = tf.shape(y)[0]
    if replicas == 1:
        return local_n, tf.constant(1.0)
    global_n = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, tf.cast(local_n, tf.float32))
    return local_n, tf.cast(local_n, tf.float32) / tf.maximum(global_n, 1.0)


def sync_moving_statistics(network: keras.Model, local_n) -> None:
    """Sets every float non-trainable variable of ``network`` (BatchNorm moving mean/variance)
    to its average over the replicas weighted by their examples (``local_n`` in this replica's
    slice). Keras assigns them per replica with no aggregation, so without this the mirrored
    copies drift apart and a checkpoint keeps only replica 0's. The moving averages are linear, so
    this equals one update with the replicas' example-weighted batch statistics."""
    variables = [v for v in network.non_trainable_variables
                 if "float" in str(getattr(v, "dtype", ""))]
    if not variables:
        return
    ctx = tf.distribute.get_replica_context()
    weight = tf.cast(local_n, tf.float32)
    values = [tf.where(weight > 0, tf.cast(v.value, tf.float32) * weight, 0.0)
              for v in variables]
    summed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [weight] + values)
    for v, total in zip(variables, summed[1:]):
        v.assign(tf.cast(total / tf.maximum(summed[0], 1.0), v.dtype))


def shift_weights(perturbation, sign: float) -> None:
    """Adds ``sign · v`` to each variable of ``perturbation`` (``[(variable, v), ...]``, the same v
    on every replica: :meth:`AdversarialModel.weight_perturbation`). The variables are mirrored:
    the update goes through the strategy's cross-replica ``update`` of each one (as an optimizer
    applies its step), so every copy moves by the same v."""
    if not perturbation:
        return
    variables = [v.value if isinstance(v, keras.Variable) else v for v, _ in perturbation]
    deltas = [tf.cast(sign * d, var.dtype) for var, (_, d) in zip(variables, perturbation)]

    def update(strategy, variables, deltas):
        for var, delta in zip(variables, deltas):
            strategy.extended.update(var, lambda v, d: v.assign_add(d), args=(delta,), group=False)

    tf.distribute.get_replica_context().merge_call(update, args=(variables, deltas))
