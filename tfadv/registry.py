"""A small name -> factory registry shared by attacks, defenses, presets, losses, datasets, models.

Everything reachable by name from a flag goes through one of these, so that a new entry is one
new function plus one ``@REGISTRY.register("name")`` line, and every registry answers the same way:

* ``REGISTRY.get(name, *args, **params)`` returns **the built object**: the registered factory
  called with ``args`` and ``params`` (an attack, a defense model, a preset, a step rule, ...). The
  module-level ``get`` of a package (``tfadv.attacks.get``, ``tfadv.defenses.get``,
  ``tfadv.recipes.get``, ``tfadv.attacks.steps.get``) is this method.
* ``REGISTRY.lookup(name)`` returns the factory itself (a class or a function), for code that
  inspects signatures or calls the factory later.
* An unknown name raises ``ValueError("Unknown <kind> ... Expected one of: ... Received: ...")``;
  arguments the factory refuses raise :class:`BadParametersError`.

Naming rule: a package's submodules keep their module names. A registered factory is reached
through ``get(name)`` (or ``lookup``), never as a package attribute, so ``tfadv.defenses.trades``
is the module ``tfadv/defenses/trades.py``, not the function registered as ``"trades"``; classes
may be re-exported under their CamelCase names (``TradesAdversarialTraining``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, TypeVar

T = TypeVar("T")


class BadParametersError(ValueError, TypeError):
    """Arguments a registered factory refused (wrong names, wrong types).

    A ``ValueError`` like every other bad value reaching a registry from a flag, and a
    ``TypeError`` because that is what the factory raised (``except TypeError`` keeps working).
    """


class Registry:
    """Maps lower-case names to factories.

    Args:
        kind: what the registry holds ("attack", "model", ...); used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator registering a factory under one or more names."""
        if not names:
            raise ValueError(f"register() needs at least one name for a {self.kind}. "
                             f"Received: {names!r}.")

        def decorator(factory: T) -> T:
            for name in names:
                key = name.lower()
                if key in self._entries:
                    raise ValueError(
                        f"A {self.kind} named '{key}' is already registered. "
                        f"Received a second registration from {factory!r}."
                    )
                self._entries[key] = factory
            return factory

        return decorator

    def lookup(self, name: str) -> Callable:
        """Returns the factory registered under `name` (case-insensitive)."""
        if not isinstance(name, str):
            raise TypeError(
                f"A {self.kind} name must be a string. Received: {name!r} "
                f"of type {type(name).__name__}."
            )
        key = name.strip().lower()
        if key not in self._entries:
            raise ValueError(
                f"Unknown {self.kind} '{name}'. Expected one of: "
                f"{', '.join(sorted(self._entries))}. Received: {name!r}."
            )
        return self._entries[key]

    def get(self, name: str, *args, **params) -> Any:
        """Builds the entry registered under `name`: its factory called with `args`, `params`.

        Raises:
            ValueError: for an unknown name.
            BadParametersError: when the factory raises ``TypeError`` for these arguments.
        """
        factory = self.lookup(name)
        try:
            return factory(*args, **params)
        except TypeError as e:
            raise BadParametersError(
                f"Bad parameters for {self.kind} '{name}': {e}. Received: {params!r}."
            ) from e

    def names(self) -> Iterable[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._entries
