"""Defenses, reachable by name: ``tfadv.defenses.get(name, network, **params) -> keras.Model``.

``get`` returns the built defense model (see :mod:`tfadv.registry`). Each defense lives in the
module of its name (``tfadv.defenses.trades``, ...); the package namespace holds those modules and
the model classes, not the registered factories. Defenses take sizes in input units; the papers'
recipes (pixel levels, named models, presets) are :mod:`tfadv.recipes`.
"""

from __future__ import annotations

from tfadv.defenses import (awp, bat, curriculum, dynamic, fast, free, l2lda, madry, mart, natural,
                            trades)
from tfadv.defenses.base import AdversarialExamples, AdversarialModel
from tfadv.defenses.bat import BilateralAdversarialTraining
from tfadv.defenses.curriculum import CurriculumAdversarialTraining
from tfadv.defenses.dynamic import DynamicAdversarialTraining
from tfadv.defenses.fast import FastAdversarialTraining
from tfadv.defenses.free import FreeAdversarialTraining
from tfadv.defenses.l2lda import L2LDA
from tfadv.defenses.madry import MadryAdversarialTraining
from tfadv.defenses.mart import MartAdversarialTraining
from tfadv.defenses.natural import NaturalTraining
from tfadv.defenses.trades import TradesAdversarialTraining
from tfadv.registry import Registry

DEFENSES = Registry("defense")
DEFENSES.register("madry", "pgd_at")(madry.madry)
DEFENSES.register("natural", "standard")(natural.natural)
DEFENSES.register("bat")(bat.bat)
DEFENSES.register("dynamic", "fosc")(dynamic.dynamic)
DEFENSES.register("curriculum", "cat")(curriculum.curriculum)
DEFENSES.register("trades")(trades.trades)
DEFENSES.register("mart")(mart.mart)
DEFENSES.register("fast", "fgsm_rs")(fast.fast)
DEFENSES.register("free", "free_at")(free.free)
DEFENSES.register("l2lda")(l2lda.l2lda)
DEFENSES.register("l2l")(l2lda.l2l)


def get(name: str, network, **params) -> AdversarialModel:
    """Builds the defense registered as ``name`` around ``network`` with keyword ``params``."""
    return DEFENSES.get(name, network, **params)


def names():
    return DEFENSES.names()


__all__ = ["AdversarialModel", "BilateralAdversarialTraining", "CurriculumAdversarialTraining",
           "DynamicAdversarialTraining", "FastAdversarialTraining", "FreeAdversarialTraining", "MadryAdversarialTraining",
           "MartAdversarialTraining",
           "L2LDA", "NaturalTraining", "TradesAdversarialTraining", "get", "names",
           "DEFENSES", "AdversarialExamples"]
