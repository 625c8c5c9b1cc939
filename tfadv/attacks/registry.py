"""The attack registry; attack modules register themselves here (``@ATTACKS.register("name")``)."""

from tfadv.registry import Registry

ATTACKS = Registry("attack")
