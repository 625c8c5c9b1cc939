"""First-Order Stationary Condition (FOSC) of an adversarial example (Wang et al., ICML 2019).

For the inner maximisation ``max_{x ∈ X} f(x)`` over the Linf ball ``X = {x : ‖x − x⁰‖∞ ≤ ε}``,
the FOSC of a point ``xᵏ`` is the Frank-Wolfe gap (equation under (4) of the paper)::

    c(xᵏ) = max_{x ∈ X} ⟨x − xᵏ, ∇ₓf(xᵏ)⟩ = ε‖∇ₓf(xᵏ)‖₁ − ⟨xᵏ − x⁰, ∇ₓf(xᵏ)⟩

It is non-negative for every ``xᵏ`` in the ball and zero exactly at first-order stationary points
(an interior point with zero gradient, or a boundary vertex aligned with the gradient's sign).
The set ``X`` is the ball alone, as in the paper: the pixel-range box is not part of it.
"""

from __future__ import annotations

import tensorflow as tf


def fosc(grad, x_adv, x_nat, eps):
    """Per-example FOSC ``eps·‖g‖₁ − ⟨x_adv − x_nat, g⟩`` (Linf ball of radius ``eps`` around x_nat).

    Args:
        grad: gradient of the maximised loss at ``x_adv``, shape (B, ...).
        x_adv: the point being assessed, shape (B, ...).
        x_nat: the centre of the ball (the natural example, as in the paper), shape (B, ...).
        eps: radius in input units: a scalar or a per-example vector of shape (B,).

    Returns:
        float32 tensor of shape (B,).
    """
    g = tf.convert_to_tensor(grad, tf.float32)
    x_adv = tf.convert_to_tensor(x_adv, tf.float32)
    x_nat = tf.convert_to_tensor(x_nat, tf.float32)
    if g.shape.rank is not None and g.shape.rank < 1:
        raise ValueError(f"fosc needs a batch of gradients (B, ...). Received shape: {g.shape}.")
    if g.shape.is_fully_defined() and (x_adv.shape != g.shape or x_nat.shape != g.shape):
        raise ValueError("grad, x_adv and x_nat must have the same shape. Received: "
                         f"grad {g.shape}, x_adv {x_adv.shape}, x_nat {x_nat.shape}.")
    eps = tf.convert_to_tensor(eps, tf.float32)
    if eps.shape.rank not in (None, 0, 1):
        raise ValueError(f"eps must be a scalar or a (B,) vector. Received shape: {eps.shape}.")
    batch = tf.shape(g)[0]
    g = tf.reshape(g, [batch, -1])
    delta = tf.reshape(x_adv - x_nat, [batch, -1])
    return eps * tf.reduce_sum(tf.abs(g), axis=1) - tf.reduce_sum(delta * g, axis=1)
