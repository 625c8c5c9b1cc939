"""Distributed evaluation: every model pass of an attack split over the replicas of a strategy.

``evaluate(..., distribute=strategy)`` hands the attacks a :class:`ShardedModelFn` instead of the
model. The attack itself (its random starts, step sizes, projections, AutoAttack's and Square's
host-side bookkeeping) runs unchanged on the whole attack batch; each *model
evaluation* it asks for, forward and input gradient, is split into consecutive slices of
``ceil(n / replicas)`` examples, one per replica of a ``tf.distribute`` strategy over the devices
of this process (MirroredStrategy over GPUs or logical CPUs), and the replicas' logits and
gradients are concatenated back in example order. A strategy spanning several workers is refused:
several hosts split an evaluation by whole batches (:mod:`tfadv.evaluation.workers`).

Why the model passes and not the attack: an attack's randomness is drawn for its batch (a random
start of shape ``[n, ...]``, Square's windows for the points still unfooled, AutoAttack's members
on the points still robust); a replica attacking only its slice would draw other numbers. Here the
attack sees exactly the tensors it sees on one device, so the same seeds give the same
per-example results, for every attack, and the state of a resumable run does not depend on the
device layout. The cost is a synchronisation per model pass; the model's
forward and backward passes, the work of an attack, are what is divided.

Examples are independent in the model (inference mode: BatchNorm uses its moving statistics), so
the logits of a slice are the rows of the logits of the batch. A replica whose slice is empty (a
batch of fewer examples than replicas) never runs the model on it (:mod:`tfadv.batches`).
"""

from __future__ import annotations

import tensorflow as tf

from tfadv import batches
from tfadv import distribute as distribute_lib


def shard(model_fn, distribute):
    """What the attacks of an evaluation run against: ``model_fn`` itself without a strategy (or
    under the default one), else a :class:`ShardedModelFn` over ``distribute``'s replicas.

    A strategy spanning several workers is refused: gathering the slices across workers inside an
    attack's loop needs its collectives in one order in every worker, and independent model calls
    of one iteration (e.g. PGD's) were paired out of order between two workers on localhost
    ("Shape mismatch in the collective instance"). Several hosts split an evaluation by whole
    batches instead (:mod:`tfadv.evaluation.workers`).
    """
    if distribute is None:
        return model_fn
    if not isinstance(distribute, tf.distribute.Strategy):
        raise ValueError(f"distribute must be None (the current device) or a "
                         f"tf.distribute.Strategy. Received: distribute={distribute!r}.")
    if distribute is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return model_fn  # the default strategy: one device, nothing to split
    if distribute_lib.is_multi_worker(distribute):
        raise ValueError(
            "Distributed evaluation splits the model passes over the replicas of one process "
            "(MirroredStrategy over GPUs or logical CPUs); a strategy spanning several workers "
            "is refused here: several hosts split an evaluation by whole batches instead "
            "(tfadv.evaluation.workers.evaluate_on_workers; eval_robustness.py "
            f"--strategy=multi_worker). Received: distribute={type(distribute).__name__} over "
            f"{distribute.cluster_resolver.cluster_spec().as_dict()}.")
    return ShardedModelFn(model_fn, distribute)


class ShardedModelFn:
    """``model_fn`` (inference-mode logits callable) whose calls and input gradients are split over
    the replicas of ``strategy`` and gathered in example order.

    Differentiable with respect to its input only (``tf.GradientTape`` on ``x``, as every attack
    takes its gradients): the gradient pass runs each replica's slice forward again under its own
    tape, so one forward and backward cost one extra forward.
    """

    def __init__(self, model_fn, strategy: tf.distribute.Strategy):
        if not callable(model_fn):
            raise ValueError(f"model_fn must map images to logits. Received: {model_fn!r}.")
        self.model_fn = model_fn
        self.strategy = strategy
        self.replicas = int(strategy.num_replicas_in_sync)
        # Compiled once per input shape family: an eager attack (AutoAttack, Square, FAB) calls the
        # model from Python, and an eager strategy.run is slow.
        self._forward_fn = tf.function(self._forward, reduce_retracing=True)
        self._gradient_fn = tf.function(self._input_gradient, reduce_retracing=True)

    def __call__(self, x):
        x = tf.convert_to_tensor(x)
        # Inside a traced attack the passes are traced into its graph; an eager caller gets the
        # compiled ones.
        eager = tf.executing_eagerly()
        forward = self._forward_fn if eager else self._forward
        gradient = self._gradient_fn if eager else self._input_gradient

        @tf.custom_gradient
        def sharded(images):
            logits = forward(images)

            def grad(upstream, variables=None):
                # Only the input is differentiated; the model's variables are constants here.
                return gradient(images, upstream), [None] * len(variables or ())

            return logits, grad

        return sharded(x)

    # ------------------------------------------------------------------------------ replicas
    def _sizes(self, x):
        size = tf.shape(x)[0]
        return size, (size + self.replicas - 1) // self.replicas

    def _slices(self, *tensors):
        """Per-replica values: replica ``r`` holds rows ``[r·k, (r+1)·k)`` (clipped) of each
        tensor, ``k = ceil(n / replicas)``, as ``experimental_distribute_dataset`` splits a batch."""
        size, part = self._sizes(tensors[0])

        def value_fn(context):
            start = tf.minimum(context.replica_id_in_sync_group * part, size)
            end = tf.minimum(start + part, size)
            pieces = tuple(t[start:end] for t in tensors)
            return pieces if len(pieces) > 1 else pieces[0]

        return self.strategy.experimental_distribute_values_from_function(value_fn)

    def _gather(self, per_replica):
        """The replicas' rows, concatenated in replica order: the batch's rows in order."""
        return tf.concat(self.strategy.experimental_local_results(per_replica), axis=0)

    def _forward(self, x):
        def replica_fn(images):
            # An empty slice: the rows of one blank image's logits, none of them (no model call on
            # a zero-size batch).
            return batches.if_nonempty(
                images, lambda: self.model_fn(images),
                lambda: self.model_fn(tf.zeros(tf.concat([[1], tf.shape(images)[1:]], 0),
                                               images.dtype))[:0])

        return self._gather(self.strategy.run(replica_fn, args=(self._slices(x),)))

    def _input_gradient(self, x, upstream):
        def replica_fn(pieces):
            images, cotangent = pieces

            def vjp():
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(images)
                    logits = self.model_fn(images)
                return tape.gradient(logits, images, output_gradients=cotangent)

            return batches.if_nonempty(images, vjp, lambda: tf.zeros_like(images))

        return self._gather(self.strategy.run(replica_fn, args=(self._slices(x, upstream),)))
