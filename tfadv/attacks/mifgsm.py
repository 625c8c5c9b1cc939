"""MI-FGSM — Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018, Algorithm 1:

    g₀ = 0;   g_{t+1} = μ·g_t + ∇ₓJ(x_t, y) / ‖∇ₓJ(x_t, y)‖₁          (eq. 6, per example)
    x_{t+1} = clip_range(project_eps(x_t + α·sign(g_{t+1})))          (eq. 7), α = eps / T

with μ = 1.0 and T = 10 by default. The L2 version (Dong et al. sec. 3.4) steps along
g_{t+1}/‖g_{t+1}‖₂ instead of sign(g_{t+1}); both come from the same step objects as PGD.

It is the one attack loop of :mod:`tfadv.attacks.core` with the momentum update of
:mod:`tfadv.attacks.updates` (g is loop state, gathered with the images under early-stop
compaction), so it has every option of the loop: start point, losses, targets, restarts, early stop.
"""

from __future__ import annotations

from typing import Optional

from tfadv.attacks import updates as updates_lib
from tfadv.attacks.core import IterativeAttack
from tfadv.attacks.registry import ATTACKS


class MomentumIterativeAttack(IterativeAttack):
    """MI-FGSM: the iterative attack with an accumulated, L1-normalised gradient (Dong et al. 2018).

    It is :class:`~tfadv.attacks.core.IterativeAttack` (same losses, targets, restarts, projection,
    range clipping, start point, early stop with compaction, and validation) whose update is
    :class:`~tfadv.attacks.updates.MomentumUpdate`.

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
    #: α = eps/T ties the step to T: a call runs all ``num_steps`` iterations.
    per_call_num_steps = False

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
        self.update = updates_lib.MomentumUpdate(decay_value)

    def get_config(self) -> dict:
        config = super().get_config()
        config["decay"] = self.decay
        return config


@ATTACKS.register("mifgsm", "mi_fgsm", "mim")
def mifgsm(**params) -> MomentumIterativeAttack:
    """Momentum iterative FGSM (Dong et al., CVPR 2018): μ=1, T=10, α=eps/T, no random start."""
    params.setdefault("name", "mifgsm")
    return MomentumIterativeAttack(**params)
