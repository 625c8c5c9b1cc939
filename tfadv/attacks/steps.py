"""Threat-model geometry: random starts, ascent steps and projections for Linf and L2 balls.

Each step object is stateless and graph-safe; the attack loop in :mod:`tfadv.attacks.core` calls
``random_init`` once, then ``step`` and ``project`` every iteration (BAT eq. 3 and eq. 4).
"""

from __future__ import annotations

import tensorflow as tf

from tfadv.registry import Registry

STEPS = Registry("norm")

RANDOM_STARTS = ("uniform", "uniform_unclipped", "gaussian", "none")


def _per_example_norm(t, ord_: str):
    axes = tf.range(1, tf.rank(t))
    if ord_ == "l2":
        return tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes, keepdims=True))
    return tf.reduce_max(tf.abs(t), axis=axes, keepdims=True)


class _Step:
    name = ""

    def random_init(self, x, eps, kind: str, *, gaussian_std: float = 1e-3, seed=None):
        """Starting point x⁰ of a run.

        ``uniform``: x + δ with δ uniform in the eps-ball (Madry; BAT eq. 3); the attack clips it
        to the pixel range before the first gradient.
        ``uniform_unclipped``: the same x + δ, left outside the range for the first gradient (Fast
        AT's MNIST release; the first step's projection brings it back).
        ``gaussian``: x + σ·N(0, I) with σ=0.001 (TRADES' release; not clipped before the first step).
        ``none``: x itself (FGSM, deterministic PGD).
        """
        if kind == "none":
            return x
        if kind == "gaussian":
            return x + gaussian_std * tf.random.normal(tf.shape(x), dtype=x.dtype, seed=seed)
        if kind in ("uniform", "uniform_unclipped"):
            return x + self._uniform_ball(x, eps, seed)
        raise ValueError(f"Unknown random start. Expected one of {RANDOM_STARTS}. Received: {kind!r}.")

    def norm(self, delta):
        """Per-example norm of ``delta`` (shape (B,))."""
        return tf.reshape(_per_example_norm(delta, self.name), [-1])


@STEPS.register("linf", "inf")
class LinfStep(_Step):
    """Linf ball: signed-gradient ascent x + a·sign(∇) and clipping of x - x_nat to [-eps, eps]."""

    name = "linf"

    def _uniform_ball(self, x, eps, seed):
        return tf.random.uniform(tf.shape(x), -eps, eps, dtype=x.dtype, seed=seed)

    def step(self, x, grad, step_size):
        return x + step_size * tf.sign(grad)

    def project(self, x_adv, x_nat, eps):
        return x_nat + tf.clip_by_value(x_adv - x_nat, -eps, eps)


@STEPS.register("l2")
class L2Step(_Step):
    """L2 ball: normalised-gradient ascent x + a·∇/‖∇‖₂ and radial projection onto ‖x - x_nat‖₂ ≤ eps."""

    name = "l2"

    def _uniform_ball(self, x, eps, seed):
        # Uniform in the L2 ball: Gaussian direction, radius eps * U^(1/d).
        direction = tf.random.normal(tf.shape(x), dtype=x.dtype, seed=seed)
        direction = direction / tf.maximum(_per_example_norm(direction, "l2"), 1e-12)
        dim = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), x.dtype)
        batch_shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
        u = tf.random.uniform(batch_shape, dtype=x.dtype, seed=None if seed is None else seed + 1)
        return direction * eps * tf.pow(u, 1.0 / dim)

    def step(self, x, grad, step_size):
        return x + step_size * grad / tf.maximum(_per_example_norm(grad, "l2"), 1e-12)

    def project(self, x_adv, x_nat, eps):
        delta = x_adv - x_nat
        norm = _per_example_norm(delta, "l2")
        factor = tf.minimum(1.0, eps / tf.maximum(norm, 1e-12))
        return x_nat + delta * factor


def get(norm: str) -> _Step:
    """Returns the step object for ``linf`` or ``l2``."""
    return STEPS.get(norm)
