"""The registered core attacks: ``noop`` (aliases ``clean``, ``none``), ``fgsm`` and ``pgd``.

Built through ``tfadv.attacks.get(name, **params)``; the classes are in :mod:`tfadv.attacks.core`.
"""

from __future__ import annotations

from tfadv.attacks.core import Attack, IterativeAttack, NoOpAttack
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
