"""The one compile cache of the attacks: per attack object, one ``tf.function`` per model and
static arguments.

Every attack that compiles itself for eager calls (the iterative core, APGD, FAB, Square's query
forward, CW-L2, DeepFool, the generator attacks) asks :meth:`tfadv.attacks.core.Attack.compiled`
for its function; the attack supplies how to build it (``build(model_fn)``), the cache decides when
to build it again:

- the key is the model in its BatchNorm mode (:func:`tfadv.attacks.model_fn.model_key`: every
  wrapper of one model shares it) plus the attack's static arguments (e.g. the image shape of an
  ``input_signature``); a new model or new static arguments build a new function, anything else
  reuses the trace;
- the cache holds the last ``size`` keys (least recently used dropped first) and keeps their
  models alive, so that an id is never reused while it is a key;
- it belongs to one attack object: a shallow copy (Dynamic AT's ``with_stop_fn``) starts its own,
  so it never runs the original's functions;
- ``lazy=True``: the first call with a key returns None (the caller runs op by op: tracing costs
  about as much as a few eager runs) and the function is built on the second.
"""

from __future__ import annotations

import collections
import weakref
from typing import Callable, Hashable, List, Optional

from tfadv.attacks import model_fn as model_fn_lib


class FunctionCache:
    """The compiled functions of one attack object (see the module docstring)."""

    def __init__(self, owner, size: int):
        if int(size) < 1:
            raise ValueError(f"A compile cache holds at least one function. Received: size={size!r}.")
        self._owner = weakref.ref(owner)
        self.size = int(size)
        self._entries = collections.OrderedDict()  # key -> (model_fn kept alive, function or None)

    def belongs_to(self, owner) -> bool:
        return self._owner() is owner

    def get(self, model_fn, build: Callable, static: Hashable = (), *, training: bool = False,
            lazy: bool = False) -> Optional[Callable]:
        """The function for ``model_fn`` (called in mode ``training`` where it is a bare Keras
        model) and ``static``: ``build(model_fn)`` of the first ``model_fn`` seen with this key."""
        key = (model_fn_lib.model_key(model_fn, training), static)
        entry = self._entries.pop(key, None)
        if entry is None:
            while len(self._entries) >= self.size:
                self._entries.popitem(last=False)
            entry = (model_fn, None if lazy else build(model_fn))
        elif entry[1] is None:
            entry = (entry[0], build(entry[0]))
        self._entries[key] = entry  # most recently used last
        return entry[1]

    def functions(self) -> List[Callable]:
        """The functions built so far, least recently used first."""
        return [function for _, function in self._entries.values() if function is not None]
