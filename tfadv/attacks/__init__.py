"""Attacks, reachable by name: ``tfadv.attacks.get(name, **params)(model_fn, x, y) -> x_adv``.

Sizes (``eps``, ``step_size``) are in the input units of the images (see :mod:`tfadv.ranges`).
Registered names: :func:`names` (``noop``/``clean``, ``fgsm``, ``pgd``, ``cw_linf`` in
:mod:`tfadv.attacks.basic`; each other attack in the module of its name). ``get`` returns the built attack (see
:mod:`tfadv.registry`); the package namespace holds submodules and classes, not factories.
"""

from __future__ import annotations

from tfadv.attacks.core import Attack, IterativeAttack, ModelFn, NoOpAttack, StepState, as_model_fn
from tfadv.attacks.registry import ATTACKS
from tfadv.attacks.steps import L2Step, LinfStep


def get(name: str, **params) -> Attack:
    """Builds the attack registered under ``name`` with keyword parameters ``params``."""
    return ATTACKS.get(name, **params)


def names():
    return ATTACKS.names()


# Attack modules register themselves on import (one line each):
from tfadv.attacks import basic  # noqa: E402,F401
from tfadv.attacks import mifgsm  # noqa: E402,F401
from tfadv.attacks import deepfool  # noqa: E402,F401
from tfadv.attacks import cw_l2  # noqa: E402,F401
from tfadv.attacks import transfer  # noqa: E402,F401
from tfadv.attacks import autoattack  # noqa: E402,F401
from tfadv.attacks import a3  # noqa: E402,F401
from tfadv.attacks import apgd  # noqa: E402,F401
from tfadv.attacks import square  # noqa: E402,F401
from tfadv.attacks import fab  # noqa: E402,F401
from tfadv.attacks import generators  # noqa: E402,F401
from tfadv.attacks import l2lda_attack  # noqa: E402,F401

__all__ = ["Attack", "IterativeAttack", "ModelFn", "NoOpAttack", "StepState", "LinfStep", "L2Step",
           "as_model_fn", "get", "names", "ATTACKS"]
