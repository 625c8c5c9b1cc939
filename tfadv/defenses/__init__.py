"""Defenses, reachable by name: ``tfadv.defenses.get(name)(network, **params) -> keras.Model``."""

from __future__ import annotations

from tfadv.defenses.base import AdversarialModel
from tfadv.defenses.bat import BilateralAdversarialTraining, bat, bat_config
from tfadv.defenses.madry import MadryAdversarialTraining, madry
from tfadv.defenses.natural import NaturalTraining, natural
from tfadv.registry import Registry

DEFENSES = Registry("defense")
DEFENSES.register("madry", "pgd_at")(madry)
DEFENSES.register("natural", "standard")(natural)
DEFENSES.register("bat")(bat)


def get(name: str):
    """Returns the factory ``(network, **params) -> AdversarialModel`` registered as ``name``."""
    return DEFENSES.lookup(name)


def names():
    return DEFENSES.names()


__all__ = ["AdversarialModel", "BilateralAdversarialTraining", "MadryAdversarialTraining",
           "NaturalTraining", "bat_config", "get", "names", "DEFENSES"]
