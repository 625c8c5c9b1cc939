"""DeepFool (Moosavi-Dezfooli, Fawzi and Frossard, CVPR 2016), L2 and Linf.

DeepFool is a minimal-norm attack: it linearises the classifier around the current point and jumps
to the nearest linearised decision boundary, repeatedly (Algorithm 2, multi-class). At iterate xᵢ,
for each candidate class k among the top classes of the clean logits (k ≠ y):

    w'_k = ∇f_k(xᵢ) − ∇f_y(xᵢ),   f'_k = f_k(xᵢ) − f_y(xᵢ)
    l̂ = argmin_k |f'_k| / ‖w'_k‖_q                          (q the dual norm of p)
    rᵢ = |f'_l̂| / ‖w'_l̂‖_q^q · |w'_l̂|^{q−1} ⊙ sign(w'_l̂)      (sec. 3.3, eq. 11)

which is ``|f'|/‖w'‖₂² · w'`` for p = 2 (q = 2) and ``|f'|/‖w'‖₁ · sign(w')`` for p = ∞ (q = 1).
The point is ``x + (1 + overshoot)·Σᵢ rᵢ`` (overshoot 0.02), clipped to the pixel range, and the
loop stops for an example as soon as its prediction is no longer y (or after ``max_iter``).

As in the authors' release and Foolbox, ``1e-4`` is added to the step length |f'|/‖w'‖_q (and
``1e-8`` to the norms) for numerical stability. With ``eps`` given, the final point is projected
onto the eps-ball (and clipped to the range), so an example counts as fooled only if DeepFool
fooled it within eps.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tfadv import ranges as ranges_lib
from tfadv.attacks import steps as steps_lib
from tfadv.attacks.checks import check_int, check_radius, expand_to
from tfadv.attacks.base import Attack
from tfadv.attacks.model_fn import as_model_fn, inference_fn
from tfadv.attacks.registry import ATTACKS

DEEPFOOL_NORMS = ("linf", "l2")


class DeepFool(Attack):
    """Multi-class DeepFool (Moosavi-Dezfooli et al. 2016, Algorithm 2), L2 or Linf (sec. 3.3).

    Args:
        norm: ``l2`` or ``linf`` (the Linf variant steps with the dual ℓ1 norm, sec. 3.3).
        eps: optional radius in input units; the final point is projected onto the eps-ball.
            ``None`` returns the unconstrained minimal perturbation (clipped to the range).
        overshoot: η, the final perturbation is (1 + η)·r (0.02 in the paper).
        max_iter: iterations at most (50, as the authors' release).
        candidates: the top-``candidates`` classes of the clean logits are considered (10 as in the
            release; the true class is always one of them and the other ``candidates - 1`` are
            the highest-scoring others).
        pixel_range: images are clipped to it at every iterate.
        training: call a Keras model in training mode (default inference mode).

    Examples already misclassified are returned unchanged. Runs under ``tf.function`` (a
    ``tf.while_loop`` that stops when every example is fooled); an eager call compiles it once.
    """

    name = "deepfool"
    graph_safe = True

    def __init__(self, *, norm: str = "l2", eps: Optional[float] = None, overshoot: float = 0.02,
                 max_iter: int = 50, candidates: int = 10, pixel_range="[0,1]",
                 training: bool = False, name: Optional[str] = None):
        self.pixel_range = ranges_lib.get_range(pixel_range)
        if norm not in DEEPFOOL_NORMS:
            raise ValueError(f"DeepFool norm must be one of {DEEPFOOL_NORMS}. Received: {norm!r}.")
        self.norm = norm
        self._ball = steps_lib.get(norm)
        self.eps = check_radius(eps, "eps", norm, self.pixel_range, allow_none=True)
        try:
            self.overshoot = float(overshoot)
        except (TypeError, ValueError):
            raise ValueError(f"overshoot must be a number >= 0. Received: {overshoot!r}.") from None
        if not np.isfinite(self.overshoot) or self.overshoot < 0:
            raise ValueError(f"overshoot must be a finite number >= 0. Received: {overshoot!r}.")
        self.max_iter = check_int(max_iter, "max_iter", 1)
        self.candidates = check_int(candidates, "candidates", 2)
        self.training = bool(training)
        if name is not None:
            self.name = name

    def reproducible_per_call(self) -> bool:
        """Deterministic: no random draws."""
        return True

    def model_calls_per_example(self) -> int:
        """Upper bound: per iteration the ``candidates - 1`` gradients (one forward/backward pass
        over that many replicas of each example), plus the clean forward pass."""
        return self.max_iter * (self.candidates - 1) + 1

    def get_config(self) -> dict:
        return {"name": self.name, "norm": self.norm, "eps": self.eps, "overshoot": self.overshoot,
                "max_iter": self.max_iter, "candidates": self.candidates,
                "pixel_range": str(self.pixel_range), "training": self.training}

    def __call__(self, model_fn, x, y, **kwargs):
        if kwargs:
            raise ValueError(f"DeepFool takes no call options. Received: {sorted(kwargs)}.")
        return self.checked_call(model_fn, x, y, self._attack, training=self.training)

    def _clip(self, x):
        return tf.clip_by_value(x, self.pixel_range.low, self.pixel_range.high)

    def _attack(self, raw_model, x, y):
        model_fn = as_model_fn(raw_model, self.training)
        logits_clean = inference_fn(raw_model)(x)
        num_classes = logits_clean.shape[-1]
        if num_classes is None:
            raise ValueError("DeepFool needs a static number of classes (logits' last dimension). "
                             f"Received logits shape: {logits_clean.shape}.")
        k = min(self.candidates, int(num_classes)) - 1  # other classes considered
        if k < 1:
            raise ValueError(f"DeepFool needs at least 2 classes. Received: {num_classes}.")
        onehot = tf.one_hot(y, int(num_classes), dtype=logits_clean.dtype)
        # The highest-scoring classes other than y (Algorithm 2 runs over the top classes).
        _, others = tf.math.top_k(logits_clean - 1e9 * onehot, k=k)  # (B, k)
        batch_idx = tf.range(tf.shape(y)[0])
        dual_l1 = self.norm == "linf"
        overshoot = 1.0 + self.overshoot

        def body(i, x_cur, r_tot, active):
            # All k gradients in one backward pass: x is replicated k times (B·k images, the same
            # batch statistics), replica j differentiates f'_j = z_{others_j} − z_y.
            x_rep = tf.repeat(x_cur, k, axis=0)  # (B·k, ...), replicas of an example adjacent
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x_rep)
                logits_rep = tf.reshape(model_fn(x_rep), [-1, k, int(num_classes)])
                z_y = tf.gather(logits_rep, y, axis=2, batch_dims=1)  # (B, k)
                z_k = tf.reduce_sum(tf.one_hot(others, int(num_classes), dtype=logits_rep.dtype)
                                    * logits_rep, axis=-1)  # (B, k): replica j, class others_j
                diffs = z_k - z_y  # f'_k
                total = tf.reduce_sum(diffs)
            grad_rep = tape.gradient(total, x_rep)
            grads = tf.reshape(grad_rep, tf.concat([[-1, k], tf.shape(x)[1:]], 0))  # w'_k
            logits = logits_rep[:, 0, :]
            active = tf.logical_and(
                active, tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y))
            flat = tf.reshape(grads, [tf.shape(grads)[0], k, -1])
            if dual_l1:
                norms = tf.reduce_sum(tf.abs(flat), axis=-1)
            else:
                norms = tf.sqrt(tf.reduce_sum(tf.square(flat), axis=-1))
            dist = tf.abs(diffs) / (norms + 1e-8)  # distance to each linearised boundary
            best = tf.argmin(dist, axis=1, output_type=tf.int32)
            sel = tf.stack([batch_idx, best], axis=1)
            step_len = tf.gather_nd(dist, sel) + 1e-4
            w = tf.gather_nd(grads, sel)
            if dual_l1:
                r = expand_to(step_len, x) * tf.sign(w)
            else:
                r = expand_to(step_len / (tf.gather_nd(norms, sel) + 1e-8), x) * w
            mask = expand_to(active, x)
            r_tot = tf.where(mask, r_tot + r, r_tot)
            x_cur = tf.where(mask, self._clip(x + overshoot * r_tot), x_cur)
            return i + 1, x_cur, r_tot, active

        active0 = tf.equal(tf.argmax(logits_clean, axis=-1, output_type=tf.int32), y)
        _, x_adv, _, _ = tf.while_loop(
            lambda i, _x, _r, active: tf.logical_and(i < self.max_iter, tf.reduce_any(active)),
            body, (tf.constant(0), x, tf.zeros_like(x), active0),
            maximum_iterations=self.max_iter)
        if self.eps is not None:
            x_adv = self._ball.project(x_adv, x, self.eps)
        return tf.stop_gradient(self._clip(x_adv))


@ATTACKS.register("deepfool")
def deepfool(**params) -> DeepFool:
    """DeepFool (Moosavi-Dezfooli et al., CVPR 2016); ``norm='l2'`` or ``'linf'``, overshoot 0.02."""
    return DeepFool(**params)
