"""The registered attacks of the core loop: ``noop`` (aliases ``clean``, ``none``), ``fgsm``,
``pgd`` and ``cw_linf`` (alias ``cw_inf``); MI-FGSM is :mod:`tfadv.attacks.mifgsm`.

Built through ``tfadv.attacks.get(name, **params)``; the classes are in :mod:`tfadv.attacks.core`
and :mod:`tfadv.attacks.base`.
"""

from __future__ import annotations

from typing import Optional

from tfadv.attacks.base import Attack, NoOpAttack
from tfadv.attacks.core import IterativeAttack
from tfadv.attacks.registry import ATTACKS


@ATTACKS.register("noop", "clean", "none")
def noop(**params) -> Attack:
    """No perturbation: clean evaluation through the robust-evaluation code path."""
    return NoOpAttack(**params)


@ATTACKS.register("pgd")
def pgd(**params) -> Attack:
    """Projected gradient descent (Madry et al.; BAT eq. 3-4); all options of IterativeAttack."""
    params.setdefault("name", "pgd")
    return IterativeAttack(**params)


@ATTACKS.register("fgsm")
def fgsm(*, eps, norm="linf", loss="ce", target=None, pixel_range="[0,1]", training=False,
         name="fgsm", **params) -> Attack:
    """Fast gradient sign method: one step of size eps from the clean image (Goodfellow et al.)."""
    for key in ("num_steps", "step_size", "random_start", "restarts"):
        if key in params:
            raise ValueError(f"fgsm is one step of size eps from x; use 'pgd' to set {key}. "
                             f"Received: {key}={params[key]!r}.")
    return IterativeAttack(eps=eps, step_size=eps, num_steps=1, random_start="none", norm=norm,
                           loss=loss, target=target, pixel_range=pixel_range, training=training,
                           name=name, **params)


@ATTACKS.register("cw_linf", "cw_inf")
def cw_linf(*, eps, num_steps: int = 30, step_size: Optional[float] = None, kappa: float = 50.0,
            **params) -> IterativeAttack:
    """C&W∞ (FOSC paper, Wang et al., ICML 2019, sec. 5.1: "L∞ version of C&W optimized by PGD
    for 30 steps"): PGD on the CW margin.

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
