"""A small name -> factory registry shared by attacks, defenses, losses, datasets and models.

Everything reachable by name from a flag goes through one of these, so that a new entry is one
new function plus one ``@REGISTRY.register("name")`` line, and an unknown name always fails with
the same kind of message (``... Received: ...``).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, TypeVar

T = TypeVar("T")


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
            raise ValueError(f"register() needs at least one name for a {self.kind}.")

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

    def names(self) -> Iterable[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._entries
