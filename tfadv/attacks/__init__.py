"""Attacks, reachable by name: ``tfadv.attacks.get(name, **params)(model_fn, x, y) -> x_adv``.

Sizes (``eps``, ``step_size``) are in the input units of the images (see :mod:`tfadv.ranges`).
Registered names: ``noop`` (alias ``clean``), ``fgsm``, ``pgd``.
"""

from __future__ import annotations

from tfadv.attacks.core import Attack, IterativeAttack, ModelFn, NoOpAttack, StepState, as_model_fn
from tfadv.attacks.registry import ATTACKS
from tfadv.attacks.steps import L2Step, LinfStep


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


def get(name: str, **params) -> Attack:
    """Builds the attack registered under ``name`` with keyword parameters ``params``."""
    factory = ATTACKS.lookup(name)
    try:
        return factory(**params)
    except TypeError as e:
        raise ValueError(f"Bad parameters for attack '{name}': {e}. Received: {params!r}.") from None


def names():
    return ATTACKS.names()


# Attack modules beyond the core register themselves on import (one line each):
from tfadv.attacks import mifgsm  # noqa: E402,F401
from tfadv.attacks import deepfool  # noqa: E402,F401
from tfadv.attacks import cw_l2  # noqa: E402,F401
from tfadv.attacks import transfer  # noqa: E402,F401
from tfadv.attacks import autoattack  # noqa: E402,F401
from tfadv.attacks import apgd  # noqa: E402,F401
from tfadv.attacks import square  # noqa: E402,F401
from tfadv.attacks import fab  # noqa: E402,F401
from tfadv.attacks import generators  # noqa: E402,F401
from tfadv.attacks import l2lda_attack  # noqa: E402,F401

__all__ = ["Attack", "IterativeAttack", "ModelFn", "NoOpAttack", "StepState", "LinfStep", "L2Step",
           "as_model_fn", "get", "names", "ATTACKS"]
