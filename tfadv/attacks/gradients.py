"""The one pass every gradient attack repeats: per-example logits, objective and ∇ₓ Σᵢ objectiveᵢ.

On a CPU, one forward+backward of a small convolutional network does not keep every core busy: on
the 2-core machine of issue 8 a CIFAR ResNet-20 at batch 128 ran 1.1-1.35x faster when the same
batch was cut into 4-8 sub-batches whose passes the TensorFlow executor runs side by side
(BUILD_NOTES.md, "Concurrent sub-batches"). With BatchNorm in inference mode every example's logits
(and therefore its input gradient, since the attack objectives are sums of per-example terms) are
independent of the rest of the batch, so the split changes no value, only the order of floating-
point work inside the kernels. Where a GPU or TPU is visible the batch is never split: one large
kernel launch is what an accelerator wants.

``sub_batches``: ``None`` picks the number automatically (:func:`auto_sub_batches`); an integer
fixes it (1 = never split). Training-mode models (BatchNorm batch statistics) are never split.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfadv import losses as losses_lib

#: Upper bound on the automatic number of concurrent sub-batches (each is one more traced copy of
#: the model's forward/backward in the attack's graph).
MAX_SUB_BATCHES = 8
#: More sub-batches than inter-op threads: on the 2-core machine 4 sub-batches of a batch of 128
#: beat 2 (PGD-10 on ResNet-20: 1.16-1.33x one pass vs 1.08-1.21x); 8 were no faster than 4
#: (1.22-1.33x) and trace twice the copies (BUILD_NOTES issue 8).
SUB_BATCHES_PER_THREAD = 2
#: A sub-batch never has fewer examples than this ...
MIN_SUB_BATCH = 16
#: ... nor fewer input values than this (16 CIFAR images): smaller passes, e.g. 8x8 digits or a
#: LeNet-5 on MNIST, gained nothing from the split and paid more kernel launches.
MIN_SUB_BATCH_VALUES = 16 * 32 * 32 * 3


def _inter_op_threads() -> int:
    """TensorFlow's inter-op pool size: the configured value, else ``TF_NUM_INTEROP_THREADS``, else
    the CPUs this process may run on (TensorFlow's own default)."""
    configured = tf.config.threading.get_inter_op_parallelism_threads()
    if configured > 0:
        return configured
    env = os.environ.get("TF_NUM_INTEROP_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Environment variable fixing the automatic choice for a whole process (e.g. ``1``: never split).
ENV_VAR = "TFADV_SUB_BATCHES"


def _from_environment() -> Optional[int]:
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{ENV_VAR} must be an integer >= 1 (unset: automatic). "
                         f"Received: {value!r}.")
    return int(value)


def auto_sub_batches() -> int:
    """The ``TFADV_SUB_BATCHES`` environment variable where set; else 1 where a GPU/TPU is
    visible or TensorFlow runs one op at a time (one inter-op thread); otherwise
    ``SUB_BATCHES_PER_THREAD`` per inter-op thread, at most :data:`MAX_SUB_BATCHES`, shared among
    the replicas of a ``tf.distribute`` strategy."""
    fixed = _from_environment()
    if fixed is not None:
        return fixed
    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return 1
    threads = _inter_op_threads()
    if threads <= 1:
        return 1
    count = min(SUB_BATCHES_PER_THREAD * threads, MAX_SUB_BATCHES)
    context = tf.distribute.get_replica_context()
    if context is not None:
        count //= max(1, context.num_replicas_in_sync)
    return int(max(count, 1))


def check_sub_batches(value) -> Optional[int]:
    """Validates a ``sub_batches`` argument: None (automatic) or an integer >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"sub_batches must be None (automatic) or an integer >= 1. "
                         f"Received: {value!r}.")
    return int(value)


def resolve_sub_batches(sub_batches: Optional[int], model_fn) -> int:
    """How many sub-batches a pass of ``model_fn`` is split into: 1 for a training-mode model
    (BatchNorm statistics couple the examples), else ``sub_batches`` or the automatic choice."""
    if getattr(model_fn, "training", False):
        return 1
    return auto_sub_batches() if sub_batches is None else sub_batches


def minimum_size(example_shape) -> int:
    """The fewest examples a sub-batch may have for inputs of ``example_shape`` (the shape of
    one example; unknown dimensions count as 1): :data:`MIN_SUB_BATCH` examples and at least
    :data:`MIN_SUB_BATCH_VALUES` input values."""
    values = 1
    for dim in example_shape:
        values *= int(dim) if dim is not None else 1
    return max(MIN_SUB_BATCH, -(-MIN_SUB_BATCH_VALUES // max(values, 1)))


def ce_objective(logits, labels):
    """Per-example softmax cross-entropy as a positional objective for :func:`input_gradient`."""
    return losses_lib.ce(logits=logits, labels=labels)


def _pass(model_fn, objective, x, args):
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        # Only x is watched: the model's variable reads are never differentiated here (a default
        # tape records them too: a larger traced graph, BUILD_NOTES issue 8).
        tape.watch(x)
        logits = model_fn(x)
        values = objective(logits, *args)
        total = tf.reduce_sum(values)
    return logits, values, tape.gradient(total, x)


def input_gradient(model_fn: Callable, objective: Callable, x: tf.Tensor,
                   args: Sequence[Optional[tf.Tensor]] = (), *, sub_batches: int = 1,
                   min_size: Optional[int] = None):
    """Returns ``(logits, values, grad)``: ``logits = model_fn(x)``, the per-example
    ``values = objective(logits, *args)`` and ``grad = ∇ₓ Σᵢ valuesᵢ``.

    ``args`` are per-example tensors (or None) sliced alongside ``x``. With ``sub_batches = S > 1``
    the batch of n examples is cut into ``c = clip(n // min_size, 1, S)`` contiguous sub-batches
    of near-equal size (``min_size`` None: :func:`minimum_size` of one example's shape; c is
    computed in the graph when the batch size is dynamic, so a batch that shrinks, e.g. under
    early-stop compaction, uses fewer of the S traced branches); their passes have no data
    dependence on one another and run concurrently. The caller guarantees per-example
    independence (inference-mode BatchNorm, see :func:`resolve_sub_batches`).
    """
    if sub_batches <= 1:
        return _pass(model_fn, objective, x, args)
    if min_size is None:
        min_size = minimum_size(x.shape[1:])
    static_n = x.shape[0]
    if static_n is not None:
        # Batch size known when traced: fixed slices, no conditionals in the graph.
        used = int(min(max(static_n // min_size, 1), sub_batches))
        sizes = [static_n // used + (1 if j < static_n % used else 0) for j in range(used)]
        outputs, offset = [], 0
        for size in sizes:
            outputs.append(_pass(model_fn, objective, x[offset:offset + size],
                                 [_slice(a, offset, size) for a in args]))
            offset += size
        return _concat(outputs)
    # Batch size known only at run time (a shape-relaxed trace, early-stop compaction): S traced
    # branches, the unused ones skipped by a conditional.
    n = tf.shape(x)[0]
    used = tf.clip_by_value(n // min_size, 1, sub_batches)
    base, extra = n // used, n % used
    outputs = []
    offset = tf.constant(0)
    for j in range(sub_batches):
        size = tf.where(j < used, base + tf.cast(j < extra, tf.int32), 0)
        xj = x[offset:offset + size]
        argsj = [_slice(a, offset, size) for a in args]
        if j == 0:
            outputs.append(_pass(model_fn, objective, xj, argsj))
        else:
            outputs.append(tf.cond(size > 0, _branch(model_fn, objective, xj, argsj),
                                   _empty_like(outputs[0])))
        offset = offset + size
    return _concat(outputs)


def _slice(t, offset, size):
    return None if t is None else t[offset:offset + size]


def _concat(outputs):
    """Joins the sub-batches' (logits, values, grad) along the batch axis."""
    return tuple(tf.concat([out[k] for out in outputs], 0) for k in range(3))


def _branch(model_fn, objective, x, args):
    def run():
        return _pass(model_fn, objective, x, args)
    return run


def _empty_like(first):
    """A branch returning zero-row tensors shaped like ``first``'s (logits, values, grad)."""
    def empty():
        return tuple(tf.zeros(tf.concat([[0], tf.shape(t)[1:]], 0), t.dtype) for t in first)
    return empty
