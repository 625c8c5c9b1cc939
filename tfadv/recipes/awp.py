"""AWP's recipe (Wu, Xia & Wang, NeurIPS 2020; csdongxian/AWP): γ and the warm-up the release uses
on top of each defense, and the defense keyword arguments of ``--awp_gamma``.

AT-AWP (``AT_AWP/train_cifar10.py``): γ 0.01, no warm-up (SVHN: 5 epochs). TRADES-AWP
(``trades_AWP/train_trades_cifar.py``): γ 0.005 after 10 warm-up epochs, β 6. The algorithm is
:mod:`tfadv.defenses.awp`.
"""

from __future__ import annotations

from typing import Optional

from tfadv.attacks import checks

#: defense -> (γ, warm-up epochs) as released.
RELEASE = {"madry": (0.01, 0), "trades": (0.005, 10)}


def defense_kwargs(defense: str, *, gamma: Optional[float] = None,
                   warmup_epochs: Optional[int] = None) -> dict:
    """``awp_gamma``/``awp_warmup_epochs`` of ``defense`` (``madry`` or ``trades``): ``{}`` when
    ``gamma`` is None or 0 (no AWP); the warm-up defaults to the release's for that defense."""
    if defense not in RELEASE:
        raise ValueError(f"AWP is released on top of {sorted(RELEASE)}. Received: {defense!r}.")
    if gamma is None or gamma == 0:
        if warmup_epochs is not None:
            raise ValueError("--awp_warmup_epochs needs --awp_gamma > 0. "
                             f"Received: awp_warmup_epochs={warmup_epochs!r}, gamma={gamma!r}.")
        return {}
    gamma = checks.check_number(gamma, "--awp_gamma (AWP's gamma)")
    warmup = RELEASE[defense][1] if warmup_epochs is None else checks.check_int(
        warmup_epochs, "--awp_warmup_epochs", 0)
    return {"awp_gamma": gamma, "awp_warmup_epochs": warmup}
