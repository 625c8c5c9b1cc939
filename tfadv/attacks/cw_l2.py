"""Carlini-Wagner L2 attack (Carlini & Wagner, "Towards Evaluating the Robustness of Neural
Networks", IEEE S&P 2017, sec. V.A), as in the authors' release (nn_robust_attacks/l2_attack.py).

Change of variables onto the pixel range [a, b] (sec. V.A "Box constraints", eq. for w):

    x'(w) = (b − a)/2 · tanh(w + arctanh(ŝ)) + (a + b)/2,   ŝ = 0.999999·(2x − a − b)/(b − a)

and, for a constant c, minimise with Adam (lr 0.01) over w, starting at w = 0:

    ‖x'(w) − x‖₂² + c · f(x'(w)),    f(x') = max(Z(x')_y − max_{k≠y} Z(x')_k, −κ)   (objective f₆)

over ``binary_search_steps`` rounds: c starts at ``initial_const``; after a round, examples that
were fooled at some iteration get ``upper = min(upper, c)`` and c = (lower + upper)/2; the others get
``lower = max(lower, c)`` and c = (lower + upper)/2 if an upper bound exists, else c·10. Over all
rounds and iterations the fooled point of smallest L2 distance is kept per example; an example never
fooled is returned unchanged. ``abort_early`` stops a round when the total loss has not decreased by
0.01 % over the last tenth of the iterations (the release's rule).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from tfadv import ranges as ranges_lib
from tfadv.attacks.base import Attack
from tfadv.attacks.model_fn import as_model_fn, inference_fn
from tfadv.attacks.checks import check_int, check_radius, expand_to
from tfadv.attacks.registry import ATTACKS

_NO_BOUND = 1e10  # "no upper bound yet" marker of the release


class CarliniWagnerL2(Attack):
    """The C&W L2 attack with binary search over c (Carlini & Wagner 2017).

    Args:
        norm: ``l2`` only (accepted so that ensembles can pass their norm).
        eps: optional L2 radius in input units; a success with ‖δ‖₂ > eps counts as a failure and
            its clean image is returned (``None``: return the minimal-L2 success, whatever its size).
        confidence: κ of objective f₆ (0 in the paper's main experiments).
        learning_rate: Adam step size (0.01 in the release).
        binary_search_steps: rounds of the search over c (9 in the release).
        max_iterations: Adam steps per round (the release's default is 10,000; cleverhans and ours
            use 1,000 — the paper reports that 1,000 with early abort suffice).
        initial_const: first c (1e-3 as in the release).
        abort_early: stop a round once the loss stops decreasing (the release's rule).
        pixel_range: the box [a, b] of the change of variables.
        training: call a Keras model in training mode (default inference mode).

    Graph-safe: the rounds and the Adam iterations are ``tf.while_loop``s; an eager call compiles
    the attack once with ``tf.function``.
    """

    name = "cw_l2"
    graph_safe = True

    def __init__(self, *, eps: Optional[float] = None, norm: str = "l2", confidence: float = 0.0,
                 learning_rate: float = 0.01, binary_search_steps: int = 9,
                 max_iterations: int = 1000, initial_const: float = 1e-3,
                 abort_early: bool = True, pixel_range="[0,1]", training: bool = False,
                 name: Optional[str] = None):
        self.pixel_range = ranges_lib.get_range(pixel_range)
        if norm != "l2":
            raise ValueError(f"cw_l2 is an L2 attack (use cw_linf for Linf). Received: norm={norm!r}.")
        self.norm = norm
        self.eps = check_radius(eps, "eps", "l2", self.pixel_range, allow_none=True)
        self.confidence = self._non_negative(confidence, "confidence")
        self.learning_rate = check_radius(learning_rate, "learning_rate", "l2", self.pixel_range)
        self.binary_search_steps = check_int(binary_search_steps, "binary_search_steps", 1)
        self.max_iterations = check_int(max_iterations, "max_iterations", 1)
        self.initial_const = check_radius(initial_const, "initial_const", "l2", self.pixel_range)
        self.abort_early = bool(abort_early)
        self.training = bool(training)
        if name is not None:
            self.name = name

    @staticmethod
    def _non_negative(value, what):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be a number >= 0. Received: {value!r}.") from None
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{what} must be a finite number >= 0. Received: {value!r}.")
        return v

    def reproducible_per_call(self) -> bool:
        """Deterministic: no random draws."""
        return True

    def model_calls_per_example(self) -> int:
        """Upper bound (no early abort): one gradient evaluation per Adam step, plus the clean
        forward pass."""
        return self.binary_search_steps * self.max_iterations + 1

    def get_config(self) -> dict:
        return {"name": self.name, "eps": self.eps, "confidence": self.confidence,
                "learning_rate": self.learning_rate,
                "binary_search_steps": self.binary_search_steps,
                "max_iterations": self.max_iterations, "initial_const": self.initial_const,
                "abort_early": self.abort_early, "pixel_range": str(self.pixel_range),
                "training": self.training}

    def __call__(self, model_fn, x, y, **kwargs):
        if kwargs:
            raise ValueError(f"cw_l2 takes no call options. Received: {sorted(kwargs)}.")
        return self.checked_call(model_fn, x, y, self._attack, training=self.training)

    # ----------------------------------------------------------------------------------------
    def _attack(self, raw_model, x, y):
        model_fn = as_model_fn(raw_model, self.training)
        low, high = self.pixel_range.low, self.pixel_range.high
        half, mid = (high - low) / 2.0, (high + low) / 2.0
        w0 = tf.atanh(tf.clip_by_value((x - mid) / half, -1.0, 1.0) * 0.999999)
        kappa = tf.constant(self.confidence, tf.float32)
        logits_clean = inference_fn(raw_model)(x)
        num_classes = tf.shape(logits_clean)[-1]
        onehot = tf.one_hot(y, num_classes, dtype=tf.float32)
        axes = list(range(1, x.shape.rank))  # static, so per-example shapes stay known
        lr, beta1, beta2, adam_eps = self.learning_rate, 0.9, 0.999, 1e-8
        check_every = max(self.max_iterations // 10, 1)
        batch = tf.shape(y)[0]

        def image(w):
            return tf.tanh(w + w0) * half + mid

        def margin(logits):
            """Z_y − max_{k≠y} Z_k (f₆ before the max with −κ)."""
            z_y = tf.reduce_sum(onehot * logits, axis=-1)
            other = tf.reduce_max(logits - onehot * 1e9, axis=-1)
            return z_y - other

        def one_round(const, best_l2, best_x):
            """Adam on w from 0 for ``max_iterations`` steps with constant c (per example)."""

            def body(t, w, m, v, prev, stop, fooled, best_l2, best_x):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(w)
                    x_new = image(w)
                    logits = model_fn(x_new)
                    l2 = tf.reduce_sum(tf.square(x_new - x), axis=axes)
                    f = tf.maximum(margin(logits), -kappa)
                    loss = tf.reduce_sum(l2 + const * f)
                grad = tape.gradient(loss, w)
                # Bookkeeping on this iterate (its logits): success with confidence κ (release).
                success = margin(logits) + kappa < 0.0
                fooled = tf.logical_or(fooled, success)
                improved = tf.logical_and(success, l2 < best_l2)
                best_l2 = tf.where(improved, l2, best_l2)
                best_x = tf.where(expand_to(improved, x), x_new, best_x)
                # Adam (tf.compat.v1.train.AdamOptimizer's update, as used by the release).
                t1 = tf.cast(t + 1, tf.float32)
                m = beta1 * m + (1.0 - beta1) * grad
                v = beta2 * v + (1.0 - beta2) * tf.square(grad)
                lr_t = lr * tf.sqrt(1.0 - tf.pow(beta2, t1)) / (1.0 - tf.pow(beta1, t1))
                w = w - lr_t * m / (tf.sqrt(v) + adam_eps)
                if self.abort_early:
                    checkpoint = tf.equal(tf.math.floormod(t, check_every), 0)
                    stop = tf.logical_and(checkpoint, loss > prev * 0.9999)
                    prev = tf.where(checkpoint, loss, prev)
                return t + 1, w, m, v, prev, stop, fooled, best_l2, best_x

            zeros = tf.zeros_like(x)
            init = (tf.constant(0), zeros, zeros, zeros, tf.constant(1e6, tf.float32),
                    tf.constant(False), tf.zeros([batch], tf.bool), best_l2, best_x)
            out = tf.while_loop(
                lambda t, *s: tf.logical_and(t < self.max_iterations, tf.logical_not(s[4])),
                body, init, maximum_iterations=self.max_iterations)
            return out[6], out[7], out[8]

        def search_body(step, const, lower, upper, best_l2, best_x):
            fooled, best_l2, best_x = one_round(const, best_l2, best_x)
            upper = tf.where(fooled, tf.minimum(upper, const), upper)
            lower = tf.where(fooled, lower, tf.maximum(lower, const))
            has_upper = upper < _NO_BOUND * 0.1
            const = tf.where(has_upper, (lower + upper) / 2.0, const * 10.0)
            return step + 1, const, lower, upper, best_l2, best_x

        init = (tf.constant(0), tf.fill([batch], self.initial_const),
                tf.zeros([batch]), tf.fill([batch], _NO_BOUND),
                tf.fill([batch], np.float32(_NO_BOUND)), x)
        _, _, _, _, best_l2, best_x = tf.while_loop(
            lambda step, *_: step < self.binary_search_steps, search_body, init,
            maximum_iterations=self.binary_search_steps)
        # Already misclassified: the tanh round trip (w = 0) would return x up to ~1e-7; return x.
        misclassified = tf.not_equal(tf.argmax(logits_clean, axis=-1, output_type=tf.int32), y)
        best_x = tf.where(expand_to(misclassified, x), x, best_x)
        if self.eps is not None:
            # Distances are measured to the true x; successes beyond eps are failures.
            norm = tf.sqrt(tf.reduce_sum(tf.square(best_x - x), axis=axes))
            best_x = tf.where(expand_to(norm <= self.eps, x), best_x, x)
        return tf.stop_gradient(tf.clip_by_value(best_x, low, high))


@ATTACKS.register("cw_l2", "carlini_wagner_l2")
def cw_l2(**params) -> CarliniWagnerL2:
    """Carlini & Wagner's L2 attack (S&P 2017): Adam lr 0.01, 9 binary-search steps from c=1e-3."""
    return CarliniWagnerL2(**params)
