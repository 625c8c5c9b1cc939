"""tfadv: adversarial training and robustness evaluation for TensorFlow/Keras.

``import tfadv`` is cheap: each subpackage or module (``tfadv.attacks``, ``tfadv.defenses``,
``tfadv.evaluation``, ``tfadv.data``, ``tfadv.models``, ``tfadv.ranges``, ...) is imported on first
attribute access, so ``tfadv.attacks.get("pgd", ...)`` works as the README writes it.
``tfadv.benchmark(model, data, ...)`` (:func:`tfadv.evaluation.benchmark.benchmark`, the one-call
model card) is imported on first access too.
``tfadv.__version__`` is the installed distribution's version (pyproject.toml's ``version``).

TensorFlow is an extra (``tfadv[cpu]`` or ``tfadv[gpu]``, one of them): without it ``import tfadv``
raises an ImportError that names them.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

if importlib.util.find_spec("tensorflow") is None:
    raise ImportError('tfadv needs TensorFlow, which its core install leaves to an extra: '
                      'pip install "tfadv[cpu]" (CPU) or pip install "tfadv[gpu]" (CUDA). '
                      'Received: no module named tensorflow.')

_SUBMODULES = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__)
                           if not info.name.startswith("_")))
# Functions exposed at the top level, by the module that defines them (imported on first access).
_FUNCTIONS = {"benchmark": "tfadv.evaluation.benchmark"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # binds tfadv.<name> as well
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version(__name__)
        except metadata.PackageNotFoundError:
            raise AttributeError(f"tfadv is not installed (pip install -e .), so it has no "
                                 f"__version__. Received: {name!r}.") from None
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}. Expected one of "
                         f"{list(_SUBMODULES) + list(_FUNCTIONS)}. Received: {name!r}.")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_FUNCTIONS) | {"__version__"})
