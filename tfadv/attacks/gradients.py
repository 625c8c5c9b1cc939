"""The one pass every gradient attack repeats: per-example logits, objective and ∇ₓ Σᵢ objectiveᵢ.

The PGD core, MI-FGSM, APGD, FOSC, the L2L-DA generator and the diagnostics all take their input
gradients from :func:`input_gradient`, so that there is one place that decides how a
forward/backward is recorded.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import tensorflow as tf

from tfadv import losses as losses_lib


def ce_objective(logits, labels):
    """Per-example softmax cross-entropy as a positional objective for :func:`input_gradient`."""
    return losses_lib.ce(logits=logits, labels=labels)


def input_gradient(model_fn: Callable, objective: Callable, x: tf.Tensor,
                   args: Sequence[Optional[tf.Tensor]] = ()):
    """Returns ``(logits, values, grad)``: ``logits = model_fn(x)``, the per-example
    ``values = objective(logits, *args)`` and ``grad = ∇ₓ Σᵢ valuesᵢ``.

    ``args`` are passed to ``objective`` after the logits as they are (per-example tensors or
    None).
    """
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        # Only x is watched: the model's variable reads are never differentiated here (a default
        # tape records them too: a larger traced graph, BUILD_NOTES issue 8).
        tape.watch(x)
        logits = model_fn(x)
        values = objective(logits, *args)
        total = tf.reduce_sum(values)
    return logits, values, tape.gradient(total, x)
