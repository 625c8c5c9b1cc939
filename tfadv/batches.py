"""Zero-size batches never reach a model.

An empty batch arises wherever examples are selected at run time: an attack run on the points no
earlier run has fooled (none left), a replica's slice of a small last batch, an evaluation batch
with nothing left to attack. TensorFlow's oneDNN kernels (on by default on CPUs with AVX-512)
fail on such a batch (``ReluGrad must have the same size and shape``), so code that may see one
skips the work instead: :func:`if_nonempty` runs a computation only on a batch with examples and
otherwise returns its caller's empty result, with the same structure and dtypes.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def if_nonempty(batch, run: Callable, empty: Callable):
    """``run()`` where ``batch`` (a tensor whose first axis is the batch) has examples, else
    ``empty()`` (which must not call a model).

    Decided on the host where the batch size is static (eagerly, or a fixed-shape trace), else in
    the graph with ``tf.cond``; ``run`` and ``empty`` must then return tensors of the same structure
    and dtypes. Results and gradients of a non-empty batch are those of ``run()``.
    """
    batch = tf.convert_to_tensor(batch)
    if batch.shape.rank == 0:  # not a batch: left to ``run`` to report
        return run()
    size = batch.shape[0] if batch.shape.rank is not None else None
    if size is not None:
        return run() if size > 0 else empty()
    return tf.cond(tf.shape(batch)[0] > 0, run, empty)
