"""Reading a PyTorch state dict from a file without running anything it contains.

    from tfadv.interop import weight_files
    tensors = weight_files.read("Carmon2019Unlabeled.pt")    # {"conv1.weight": ndarray, ...}
    tensors, normalization = weight_files.unwrap(tensors)

* ``.safetensors``: the ``safetensors`` package's numpy reader (no PyTorch; ``pip install
  'tfadv[weights]'``). A safetensors file holds tensors and a JSON header, nothing executable.
* ``.pt`` / ``.pth`` / ``.bin``: ``torch.load(path, map_location="cpu", weights_only=True)``
  (``pip install 'tfadv[crosscheck]'``). A ``.pt`` file is a pickle; ``weights_only=True`` makes
  PyTorch's unpickler accept tensors, containers and numbers only, so a pickle that would call a
  function (``os.system``, ``open``, ...) is refused before anything runs.
* ``.npz``: ``numpy.load(path, allow_pickle=False)``: object arrays (pickles) are refused.

:func:`unwrap` then takes the state dict out of a training checkpoint (``{"state_dict": ...}``),
strips ``nn.DataParallel``'s ``module.`` prefix and lifts out a normalisation that RobustBench keeps
in buffers (``normalize.mean``/``normalize.std`` of ``normalize_model`` with the network under
``model.``, or ``mu``/``sigma``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import numpy as np

#: File suffixes -> the reader's name (for messages).
SUFFIXES = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".bin": "torch",
            ".npz": "numpy"}
#: Keys under which training scripts store the state dict in a checkpoint dict.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")
#: (mean key, std key, prefix of the network's own keys) of the normalisations kept in buffers.
NORMALIZATION_KEYS = (("normalize.mean", "normalize.std", "model."), ("mu", "sigma", ""))


def read(path: str) -> dict:
    """``{key: float32/int ndarray}`` of the state dict in ``path`` (see the module docstring).

    Raises:
        ValueError: no such file, an unknown suffix, or a file that is not a plain state dict
            (a pickle with code in it, object arrays, non-tensor values).
        ImportError: the reader's package is missing (the message names the extra).
    """
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"Expected a state dict file ending in {', '.join(SUFFIXES)}. "
                         f"Received: {path!r}.")
    if not os.path.isfile(path):
        raise ValueError(f"State dict file not found. Received: {path!r}.")
    if suffix == ".safetensors":
        tensors = _read_safetensors(path)
    elif suffix == ".npz":
        tensors = _read_npz(path)
    else:
        tensors = _read_torch(path)
    return tensors


def _read_safetensors(path):
    try:
        from safetensors.numpy import load_file
    except ImportError as e:
        raise ImportError("Reading .safetensors files needs the safetensors package: "
                          "pip install 'tfadv[weights]'.") from e
    try:
        return dict(load_file(path))
    except Exception as e:  # the reader raises its own error types for a bad header or dtype
        raise ValueError(f"Could not read the safetensors file ({type(e).__name__}: {e}). "
                         f"Received: {path!r}.") from None


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except ValueError as e:  # "Object arrays cannot be loaded when allow_pickle=False"
        raise ValueError(f"The .npz file holds something other than plain arrays ({e}); it is "
                         f"not read, as reading it would unpickle. Received: {path!r}.") from None


def _read_torch(path):
    try:
        import torch
    except ImportError as e:
        raise ImportError("Reading .pt/.pth state dicts needs PyTorch, which is not part of tfadv's "
                          "core install: pip install 'tfadv[crosscheck]' (or convert the file to "
                          ".safetensors, read without PyTorch: pip install 'tfadv[weights]')."
                          ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # the weights-only unpickler stopped
        raise ValueError(
            "Refused to load the file: torch.load(weights_only=True) reads tensors, containers and "
            f"numbers only and stopped here ({_unpickler_reason(e)}). A pickle holding other objects "
            "may run code when unpickled, and tfadv never unpickles arbitrary objects; a file that "
            f"is not a PyTorch state dict stops the same way. Received: {path!r}.") from None
    except Exception as e:  # not a PyTorch file at all (a truncated zip archive, ...)
        raise ValueError(f"Could not read the PyTorch file ({type(e).__name__}: "
                         f"{_unpickler_reason(e)}). Received: {path!r}.") from None
    return _to_numpy(obj, torch, path)


def _unpickler_reason(error):
    """The line of PyTorch's message that says what stopped it (``Unsupported global: GLOBAL
    io.open ...``), without its advice to load with ``weights_only=False``."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if rest:
            return rest[0].split(". Please use")[0].rstrip(".")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _to_numpy(obj, torch, path):
    if not isinstance(obj, Mapping):
        raise ValueError(f"Expected the file to hold a state dict (a mapping of names to tensors). "
                         f"Received: a {type(obj).__name__} in {path!r}.")
    out = {}
    for key, value in obj.items():
        if isinstance(value, Mapping):
            out[key] = _to_numpy(value, torch, path)
        elif isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            out[key] = (value.to(torch.float32) if value.is_floating_point() else value).numpy()
        else:  # numbers, strings of a training checkpoint (epoch, arch, ...): kept as they are
            out[key] = value
    return out


def unwrap(tensors: Mapping) -> tuple:
    """``(state_dict, normalization)``: the network's tensors by key, and ``(mean, std)`` (tuples
    of floats) when the file keeps a normalisation in buffers, else None.

    A checkpoint dict (``{"state_dict": {...}, "epoch": ...}``) gives its state dict; the prefix
    ``module.`` (``nn.DataParallel``) is stripped when every key has it.

    Raises:
        ValueError: a value of the state dict is not an array.
    """
    tensors = dict(tensors)
    for key in CHECKPOINT_KEYS:
        if isinstance(tensors.get(key), Mapping):
            tensors = dict(tensors[key])
            break
    tensors = _strip_prefix(tensors, "module.")
    normalization = None
    for mean_key, std_key, prefix in NORMALIZATION_KEYS:
        if mean_key in tensors and std_key in tensors:
            normalization = (_flat(tensors.pop(mean_key)), _flat(tensors.pop(std_key)))
            tensors = _strip_prefix(tensors, prefix) if prefix else tensors
            break
    bad = sorted(k for k, v in tensors.items() if not isinstance(v, np.ndarray))
    if bad:
        raise ValueError(f"Expected every value of the state dict to be a tensor. Received: "
                         f"non-tensor values under {bad[:10]}.")
    return tensors, normalization


def _strip_prefix(tensors, prefix):
    if tensors and all(k.startswith(prefix) for k in tensors):
        return {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def _flat(value):
    return tuple(float(v) for v in np.asarray(value, np.float64).reshape(-1))


__all__ = ["SUFFIXES", "read", "unwrap"]
