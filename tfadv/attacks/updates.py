"""How the one attack loop turns an input gradient into the direction of its step.

The loop of :mod:`tfadv.attacks.core` carries an update's state through its ``tf.while_loop``
(per example, so that early-stop compaction gathers and scatters it with the images):

    state⁰ = update.init_state(x)
    each step:  direction, stateᵗ⁺¹ = update.next_state(stateᵗ, ∇ₓ)
                xᵗ⁺¹ = clip_range(project_ball(step(xᵗ, direction)))

``GradientUpdate`` (PGD, FGSM, C&W∞) steps along the gradient itself and carries no state.
``MomentumUpdate`` is MI-FGSM (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR
2018, eq. 6): g₀ = 0, g_{t+1} = μ·g_t + ∇ₓJ / ‖∇ₓJ‖₁ per example, and the step follows g_{t+1}
(the sign of it for Linf, eq. 7; g/‖g‖₂ for L2, sec. 3.4).
"""

from __future__ import annotations

import tensorflow as tf


class GradientUpdate:
    """The plain gradient: the direction is ∇ₓ itself; no state."""

    def init_state(self, x):
        return ()

    def next_state(self, state, grad):
        return grad, state


def l1_normalise(grad):
    """∇ / ‖∇‖₁ per example (Dong et al. eq. 6); an all-zero gradient stays zero."""
    axes = tf.range(1, tf.rank(grad))
    l1 = tf.reduce_sum(tf.abs(grad), axis=axes, keepdims=True)
    return grad / tf.maximum(l1, 1e-12)


class MomentumUpdate:
    """MI-FGSM's accumulated gradient g (Dong et al. eq. 6) with decay factor μ = ``decay``."""

    def __init__(self, decay: float):
        self.decay = float(decay)

    def init_state(self, x):
        return tf.zeros_like(x)

    def next_state(self, momentum, grad):
        momentum = tf.constant(self.decay, grad.dtype) * momentum + l1_normalise(grad)
        return momentum, momentum
