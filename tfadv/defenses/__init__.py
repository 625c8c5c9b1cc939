"""Defenses, reachable by name: ``tfadv.defenses.get(name)(network, **params) -> keras.Model``."""

from __future__ import annotations

from tfadv.defenses.base import AdversarialModel
from tfadv.defenses.bat import BilateralAdversarialTraining, bat, bat_config
from tfadv.defenses.curriculum import CurriculumAdversarialTraining, curriculum
from tfadv.defenses.dynamic import DynamicAdversarialTraining, dynamic
from tfadv.defenses.madry import MadryAdversarialTraining, madry
from tfadv.defenses.natural import NaturalTraining, natural
from tfadv.defenses.trades import TradesAdversarialTraining, trades
from tfadv.defenses.l2lda import L2LDA, l2l, l2lda
from tfadv.registry import Registry

DEFENSES = Registry("defense")
DEFENSES.register("madry", "pgd_at")(madry)
DEFENSES.register("natural", "standard")(natural)
DEFENSES.register("bat")(bat)
DEFENSES.register("dynamic", "fosc")(dynamic)
DEFENSES.register("curriculum", "cat")(curriculum)
DEFENSES.register("trades")(trades)
DEFENSES.register("l2lda")(l2lda)
DEFENSES.register("l2l")(l2l)


def get(name: str):
    """Returns the factory ``(network, **params) -> AdversarialModel`` registered as ``name``."""
    return DEFENSES.lookup(name)


def names():
    return DEFENSES.names()


__all__ = ["AdversarialModel", "BilateralAdversarialTraining", "CurriculumAdversarialTraining",
           "DynamicAdversarialTraining", "MadryAdversarialTraining",
           "L2LDA", "NaturalTraining", "TradesAdversarialTraining", "bat_config", "get", "names",
           "DEFENSES"]
