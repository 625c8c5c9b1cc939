"""Adversarial labels of Bilateral Adversarial Training (BAT sec. 4.1, appendix A/B) and label smoothing.

The label half of BAT's saddle point (eq. 10-11): perturb the one-hot label y within an L_inf ball of
radius eps_y on the probability simplex so that the loss grows. The gradient of the cross-entropy with
respect to the label is ∇_{y_k} L = v_k = -log p_k (eq. 13), p the clean prediction; the closed-form
heuristics below take one projected step along it:

* ``main`` (eq. 14): y'_k = eps_y/(n-1) · (v_k - v_MC + γ) / (Σ_{k≠c} v_k/(n-1) - v_MC + γ), k ≠ c,
  with the largest eps_y keeping y'_c ≥ β·max_{k≠c} y'_k (eq. 16), i.e. eq. (18); eps_y then lies in
  (1/(1+β), 1/(1+β/(n-1))] (eq. 21).
* ``sup`` (eq. 26): y'_k = eps_y · v_k / Σ_{k≠c} v_k, with eps_y of eq. (28).
* ``top_k`` (appendix B, R-MC-LA9): only the k non-true classes with the largest v_k (smallest
  probability) receive mass; sums, n-1, v_MC/v_LL (main) and v_max (sup) are over those k classes.

In every case y'_c = 1 - eps_y, the labels are non-negative and sum to one. v is computed from the
logits with gradients stopped: the labels are data for the training step, not part of its graph.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

VARIANTS = ("main", "sup")


def _check_number(value, what, *, low, low_inclusive, high=None, high_inclusive=True):
    """Validates a Python number (tensors pass through unchecked: they may be traced)."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number. Received: {value!r}.") from None
    ok = np.isfinite(v) and (v >= low if low_inclusive else v > low)
    if high is not None:
        ok = ok and (v <= high if high_inclusive else v < high)
    if not ok:
        lo = "[" if low_inclusive else "("
        hi = ("]" if high_inclusive else ")") if high is not None else ")"
        raise ValueError(f"{what} must be in {lo}{low:g}, {high if high is not None else 'inf'}{hi}. "
                         f"Received: {value!r}.")
    return v


def _check_logits_labels(logits, labels):
    logits = tf.convert_to_tensor(logits)
    if not logits.dtype.is_floating:
        logits = tf.cast(logits, tf.float32)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    if logits.shape.rank != 2:
        raise ValueError(f"logits must have shape (batch, num_classes). Received shape: {logits.shape}.")
    if labels.shape.rank != 1:
        raise ValueError(f"labels must be integer classes of shape (batch,). Received shape: "
                         f"{labels.shape}.")
    num_classes = logits.shape[-1]
    if num_classes is not None and num_classes < 2:
        raise ValueError(f"Adversarial labels need at least 2 classes. Received: {num_classes}.")
    return logits, labels, num_classes


def label_smoothing(labels, num_classes: int, eps_y):
    """Label smoothing as an adversarial label (BAT eq. 15): y'_c = 1 - eps_y, y'_k = eps_y/(n-1).

    Args:
        labels: integer classes, shape (B,).
        num_classes: n.
        eps_y: label budget in [0, 1] (Table 5's R-MC-LS uses 0.5); a scalar or a (B,) tensor.

    Returns:
        float32 soft labels of shape (B, n).
    """
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2. Received: {num_classes!r}.")
    num_classes = int(num_classes)
    eps_y = _check_number(eps_y, "eps_y", low=0.0, low_inclusive=True, high=1.0)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    if labels.shape.rank != 1:
        raise ValueError(f"labels must be integer classes of shape (batch,). Received shape: "
                         f"{labels.shape}.")
    eps_y = tf.cast(eps_y, tf.float32)
    if eps_y.shape.rank == 1:
        eps_y = eps_y[:, None]
    one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)
    return one_hot * (1.0 - eps_y) + (1.0 - one_hot) * eps_y / (num_classes - 1)


def _top_k_mask(v, others, k):
    """1 on the k non-true classes with the largest v (smallest probability), else 0."""
    masked = tf.where(others > 0.5, v, tf.fill(tf.shape(v), tf.constant(-np.inf, v.dtype)))
    _, idx = tf.math.top_k(masked, k=k)
    return tf.reduce_max(tf.one_hot(idx, tf.shape(v)[-1], dtype=v.dtype), axis=1) * others


def adversarial_labels(logits, labels, *, beta, gamma: float = 0.01, variant: str = "main",
                       top_k: Optional[int] = None, return_eps: bool = False):
    """BAT adversarial labels y' from clean logits (eq. 14 + 18, or eq. 26 + 28; appendix B top-k).

    Args:
        logits: clean logits (B, n) (BAT: computed with BatchNorm in inference mode); gradients are
            stopped.
        labels: true classes c, shape (B,).
        beta: multiplier β of eq. (16)/(27) (> 0): y'_c ≥ β·max_{k≠c} y'_k. The paper uses 9 for
            CIFAR-10/SVHN, 11 for CIFAR-100, 100 on ImageNet.
        gamma: γ of eq. (14) (> 0), the share floor of the MC class (``main`` only).
        variant: ``main`` (eq. 14 with eq. 18) or ``sup`` (appendix A: eq. 26 with eq. 28).
        top_k: restrict the mass to the k non-true classes with the largest v_k (appendix B,
            R-MC-LA9 uses k=9 with ``sup``); None or n-1 uses all non-true classes.
        return_eps: also return eps_y (B,).

    Returns:
        float32 soft labels (B, n), non-negative, rows summing to one; with ``return_eps`` the pair
        ``(soft_labels, eps_y)``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant. Expected one of {VARIANTS}. Received: {variant!r}.")
    beta = _check_number(beta, "beta", low=0.0, low_inclusive=False)
    gamma = _check_number(gamma, "gamma", low=0.0, low_inclusive=False)
    logits, labels, num_classes = _check_logits_labels(logits, labels)
    if top_k is not None:
        if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
            raise ValueError(f"top_k must be a positive integer or None. Received: {top_k!r}.")
        if num_classes is not None and top_k > num_classes - 1:
            raise ValueError(f"top_k must be at most num_classes - 1 = {num_classes - 1}. "
                             f"Received: {top_k!r}.")
        top_k = int(top_k)
    logits = tf.cast(tf.stop_gradient(logits), tf.float32)
    n = tf.shape(logits)[-1]
    # v_k = -log p_k (eq. 13), stable through log_softmax; v_k >= 0.
    v = -tf.nn.log_softmax(logits, axis=-1)
    one_hot = tf.one_hot(labels, n, dtype=tf.float32)
    member = 1.0 - one_hot  # the classes that receive mass
    if top_k is not None and (num_classes is None or top_k < num_classes - 1):
        member = _top_k_mask(v, member, top_k)
    count = tf.reduce_sum(member, axis=-1, keepdims=True)  # n-1, or k
    big = tf.constant(np.finfo(np.float32).max, tf.float32)
    v_sum = tf.reduce_sum(v * member, axis=-1, keepdims=True)
    v_ll = tf.reduce_max(tf.where(member > 0.5, v, -big), axis=-1, keepdims=True)  # v_LL = max
    if variant == "main":
        v_mc = tf.reduce_min(tf.where(member > 0.5, v, big), axis=-1, keepdims=True)  # v_MC = min
        gap = (v - v_mc) * member  # v_k - v_MC ≥ 0; exactly 0 when the gradients are equal
        # Σ v_k/(n-1) - v_MC + γ, written as mean(v_k - v_MC) + γ so that equal non-true gradients
        # give exactly label smoothing (eq. 15) in floating point; ≥ γ > 0.
        denom = tf.reduce_sum(gap, axis=-1, keepdims=True) / count + gamma
        share = (gap + gamma) / denom * member  # second factor of eq. (14); sums to n-1
        eps_y = 1.0 / (1.0 + beta / count * (v_ll - v_mc + gamma) / denom)  # eq. (18)
        others = eps_y / count * share  # eq. (14)
    else:
        v_sum = tf.maximum(v_sum, tf.constant(np.finfo(np.float32).tiny, tf.float32))
        eps_y = 1.0 / (1.0 + beta * v_ll / v_sum)  # eq. (28)
        others = eps_y * v * member / v_sum  # eq. (26)
    soft = others + one_hot * (1.0 - eps_y)
    eps_y = tf.squeeze(eps_y, axis=-1)
    return (soft, eps_y) if return_eps else soft


def true_class_mass(soft_labels, labels):
    """Per-example soft-label mass on the true class, y'_c = 1 - eps_y (for TensorBoard)."""
    soft_labels = tf.convert_to_tensor(soft_labels)
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(soft_labels)[-1], dtype=soft_labels.dtype)
    return tf.reduce_sum(soft_labels * one_hot, axis=-1)
