"""First-Order Stationary Condition (FOSC) of an adversarial example (Wang et al., ICML 2019).

For the inner maximisation ``max_{x ∈ X} f(x)`` over the Linf ball ``X = {x : ‖x − x⁰‖∞ ≤ ε}``,
the FOSC of a point ``xᵏ`` is the Frank-Wolfe gap (eq. 4 and its closed form)::

    c(xᵏ) = max_{x ∈ X} ⟨x − xᵏ, ∇ₓf(xᵏ)⟩ = ε‖∇ₓf(xᵏ)‖₁ − ⟨xᵏ − x⁰, ∇ₓf(xᵏ)⟩

It is non-negative for every ``xᵏ`` in the ball and zero exactly at first-order stationary points
(an interior point with zero gradient, or a boundary vertex aligned with the gradient's sign).
The set ``X`` is the ball alone, as in the paper: the pixel-range box is not part of it. For an
L2 ball the same derivation gives ``ε‖g‖₂ − ⟨xᵏ − x⁰, g⟩`` (the dual norm; footnote 1 of the paper:
"our algorithms and theory apply to other norms").

**x⁰.** The paper's x⁰ is the natural example. The authors' release
(``YisenWang/dynamic_adv_training``, ``pgd_attack.py``) subtracts the *random-start point* instead
(``original_batch_x`` is copied after the uniform start); :func:`fosc_of_state` with
``reference="start"`` reproduces that. That variant is not a Frank-Wolfe gap of the ball (it can be
negative: ``xᵏ − x_start`` reaches 2ε), which is why the paper's definition is the default.

Also here: :func:`fosc_of_state` (the FOSC a per-example stop criterion sees) and
:func:`fosc_and_loss` (FOSC and CE of a batch under a model). The per-epoch record of the training
examples' FOSC is :class:`tfadv.callbacks.FoscRecorder` / :class:`tfadv.callbacks.FoscLogger`.
"""

from __future__ import annotations

import tensorflow as tf

from tfadv.attacks import gradients as gradients_lib

NORMS = ("linf", "l2")
REFERENCES = ("natural", "start")


def fosc(grad, x_adv, x_nat, eps, *, norm: str = "linf"):
    """Per-example FOSC ``eps·‖g‖₁ − ⟨x_adv − x_nat, g⟩`` (Linf ball of radius ``eps`` around x_nat;
    ``norm="l2"``: ``eps·‖g‖₂ − ⟨x_adv − x_nat, g⟩``).

    Args:
        grad: gradient of the maximised loss at ``x_adv``, shape (B, ...).
        x_adv: the point being assessed, shape (B, ...).
        x_nat: the centre of the ball (the natural example, as in the paper), shape (B, ...).
        eps: radius in input units: a scalar or a per-example vector of shape (B,).
        norm: ``linf`` (the paper) or ``l2``.

    Returns:
        float32 tensor of shape (B,).
    """
    if norm not in NORMS:
        raise ValueError(f"Unknown norm. Expected one of {NORMS}. Received: {norm!r}.")
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
    dual = (tf.reduce_sum(tf.abs(g), axis=1) if norm == "linf"
            else tf.sqrt(tf.reduce_sum(tf.square(g), axis=1)))
    return eps * dual - tf.reduce_sum(delta * g, axis=1)


def check_reference(reference: str) -> str:
    if reference not in REFERENCES:
        raise ValueError(f"Unknown FOSC reference point x0. Expected one of {REFERENCES} ('natural': "
                         f"the paper; 'start': the release's random-start point). "
                         f"Received: {reference!r}.")
    return reference


def fosc_of_state(state, *, reference: str = "natural", norm: str = "linf"):
    """FOSC of the iterate a per-example stop criterion sees (``tfadv.attacks.StepState``).

    ``reference="natural"`` centres the ball's inner product at the clean image (the paper);
    ``"start"`` at the run's random-start point (the release).
    """
    check_reference(reference)
    center = state.x_nat
    if reference == "start":
        if state.x_start is None:
            raise ValueError("reference='start' needs the attack's start point (StepState.x_start). "
                             "Received: x_start=None.")
        center = state.x_start
    return fosc(state.grad, state.x_adv, center, state.eps, norm=norm)


def fosc_and_loss(model_fn, x_adv, x_nat, y, eps, *, norm: str = "linf"):
    """(FOSC, per-example CE, logits) at ``x_adv`` from one forward/backward of ``model_fn``, with
    g = ∇ₓ CE(f(x_adv), y) (the per-example loss the paper's PGD maximises)."""
    x_adv = tf.convert_to_tensor(x_adv, tf.float32)
    logits, ce, grad = gradients_lib.input_gradient(model_fn, gradients_lib.ce_objective, x_adv,
                                                    (y,))
    return fosc(grad, x_adv, x_nat, eps, norm=norm), ce, logits


__all__ = ["NORMS", "REFERENCES", "check_reference", "fosc", "fosc_and_loss", "fosc_of_state"]
