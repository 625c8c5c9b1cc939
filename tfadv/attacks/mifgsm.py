"""Variants of the one iterative attack: MI-FGSM (momentum) and C&W∞ (PGD on the CW margin).

``mifgsm`` — Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018, Algorithm 1:

    g₀ = 0;   g_{t+1} = μ·g_t + ∇ₓJ(x_t, y) / ‖∇ₓJ(x_t, y)‖₁          (eq. 6, per example)
    x_{t+1} = clip_range(project_eps(x_t + α·sign(g_{t+1})))          (eq. 7), α = eps / T

with μ = 1.0 and T = 10 by default. The L2 version (Dong et al. sec. 3.4) steps along
g_{t+1}/‖g_{t+1}‖₂ instead of sign(g_{t+1}); both come from the same step objects as PGD.

``cw_linf`` — the C&W∞ attack of the FOSC paper (Wang et al., ICML 2019, sec. 5.1): "L∞ version of
C&W optimized by PGD for 30 steps", i.e. PGD ascending the CW margin loss.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tfadv.attacks import gradients as gradients_lib
from tfadv.attacks.core import IterativeAttack, StepState
from tfadv.attacks.registry import ATTACKS


def _l1_normalise(grad):
    """∇ / ‖∇‖₁ per example (Dong et al. eq. 6); an all-zero gradient stays zero."""
    axes = tf.range(1, tf.rank(grad))
    l1 = tf.reduce_sum(tf.abs(grad), axis=axes, keepdims=True)
    return grad / tf.maximum(l1, 1e-12)


class MomentumIterativeAttack(IterativeAttack):
    """MI-FGSM: the iterative attack with an accumulated, L1-normalised gradient (Dong et al. 2018).

    It is :class:`~tfadv.attacks.core.IterativeAttack` (same losses, targets, restarts, projection,
    range clipping, early stop and validation) with one more piece of loop state, the momentum
    ``g``; only the run loop is replaced, because the pluggable step objects are stateless.

    Args:
        eps: radius of the ball in input units.
        num_steps: T iterations (10 in the paper).
        step_size: α; default ``eps / T`` as in the paper, so that T steps reach the ball's surface.
        decay: μ, the momentum decay factor (1.0 in the paper; 0 gives I-FGSM).
        norm: ``linf`` (sign step) or ``l2`` (g/‖g‖₂ step, sec. 3.4 of the paper).
        random_start: ``none`` as in the paper; ``uniform``/``gaussian`` as in IterativeAttack.
        loss, target, restarts, pixel_range, training, kappa, early_stop, seed: as IterativeAttack.
    """

    name = "mifgsm"

    def __init__(self, *, eps: float, num_steps: int = 10, step_size: Optional[float] = None,
                 decay: float = 1.0, norm: str = "linf", random_start: str = "none",
                 loss: str = "ce", target: Optional[str] = None, restarts: int = 1,
                 pixel_range="[0,1]", training: bool = False, kappa: float = 50.0,
                 early_stop: bool = False, seed: Optional[int] = None, name: Optional[str] = None):
        super().__init__(eps=eps, step_size=step_size, num_steps=num_steps, norm=norm,
                         random_start=random_start, loss=loss, target=target, restarts=restarts,
                         pixel_range=pixel_range, training=training, kappa=kappa,
                         early_stop=early_stop, seed=seed, name=name)
        if step_size is None:
            self.step_size = self.eps / max(self.num_steps, 1)
        try:
            decay_value = float(decay)
        except (TypeError, ValueError):
            raise ValueError(f"decay (the momentum factor μ) must be a number >= 0. "
                             f"Received: {decay!r}.") from None
        if not decay_value >= 0.0 or decay_value == float("inf"):
            raise ValueError(f"decay (the momentum factor μ) must be a finite number >= 0. "
                             f"Received: {decay!r}.")
        self.decay = decay_value

    def get_config(self) -> dict:
        config = super().get_config()
        config["decay"] = self.decay
        return config

    def _run(self, model_fn, x, y, targets, logits_clean, seed, active0, eps_scale=None):
        """One run: start point, then T momentum steps (Dong et al. Algorithm 1)."""
        step = self._step
        x_adv, eps, step_size = self._start(x, seed, active0, eps_scale)
        if targets is None:
            targets = y
        decay = tf.constant(self.decay, x.dtype)

        def body(i, x_adv, momentum, active):
            logits, _, grad = gradients_lib.input_gradient(
                model_fn, self._objective, x_adv, (y, targets, logits_clean))
            if self.early_stop:
                active = tf.logical_and(active, tf.logical_not(self._success(logits, y, targets)))
            if self.stop_fn is not None:
                state = StepState(step=i, x_adv=x_adv, x_nat=x, grad=grad, logits=logits,
                                  labels=y, eps=eps)
                active = tf.logical_and(active, tf.logical_not(self.stop_fn(state)))
            momentum = decay * momentum + _l1_normalise(grad)
            x_new = self._clip(step.project(step.step(x_adv, momentum, step_size), x, eps))
            x_adv = tf.where(self._expand(active, x), x_new, x_adv)
            return i + 1, x_adv, momentum, active

        if self.num_steps > 0:
            _, x_adv, _, _ = tf.while_loop(
                lambda i, *_: i < self.num_steps, body,
                (tf.constant(0), x_adv, tf.zeros_like(x), active0),
                maximum_iterations=self.num_steps)
        return self._clip(x_adv)


@ATTACKS.register("mifgsm", "mi_fgsm", "mim")
def mifgsm(**params) -> MomentumIterativeAttack:
    """Momentum iterative FGSM (Dong et al., CVPR 2018): μ=1, T=10, α=eps/T, no random start."""
    params.setdefault("name", "mifgsm")
    return MomentumIterativeAttack(**params)


@ATTACKS.register("cw_linf", "cw_inf")
def cw_linf(*, eps, num_steps: int = 30, step_size: Optional[float] = None, kappa: float = 50.0,
            **params) -> IterativeAttack:
    """C&W∞ (FOSC paper, Wang et al. 2019, sec. 5.1): PGD on the CW margin for 30 steps.

    The margin is Madry et al.'s ``-relu(z_y - max_{k≠y} z_k + κ)`` with κ=50 (their release);
    the step size defaults to eps/4, the PGD step of the FOSC paper's training and surrogate
    models ("10-step PGD attack with a random start and step size ε/4"), with a uniform random
    start. All other options are IterativeAttack's; the loss is fixed to ``cw``.
    """
    if "loss" in params and params["loss"] != "cw":
        raise ValueError(f"cw_linf is PGD on the CW margin; use 'pgd' for other losses. "
                         f"Received: loss={params['loss']!r}.")
    params.pop("loss", None)
    params.setdefault("name", "cw_linf")
    if step_size is None:
        try:
            step_size = float(eps) / 4.0
        except (TypeError, ValueError):
            raise ValueError(f"eps must be a number in input units. Received: {eps!r}.") from None
    return IterativeAttack(eps=eps, num_steps=num_steps, step_size=step_size, loss="cw",
                           kappa=kappa, **params)
