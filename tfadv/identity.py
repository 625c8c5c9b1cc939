"""Identities of models: which weights a saved result (an evaluation state, a report) belongs to.

Each function returns a short string that changes whenever the weights change: a SHA-256 of the
in-memory weights, of a weights file, or a SavedModel's own fingerprint (``fingerprint.pb``, which
covers its graph and, through the variables' index and its per-tensor checksums, the variables).
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional

import numpy as np
import tensorflow as tf

_CHUNK = 1 << 20


def _update_with_file(digest, path: str) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)


def of_file(path: str) -> str:
    """``sha256:<hex>`` of a file's bytes (a ``.weights.h5`` checkpoint)."""
    digest = hashlib.sha256()
    _update_with_file(digest, path)
    return "sha256:" + digest.hexdigest()


def of_savedmodel(path: str) -> str:
    """The SavedModel's fingerprint (``savedmodel:<singleprint>``), or a SHA-256 of its files when
    it was written without ``fingerprint.pb``."""
    try:
        return "savedmodel:" + str(tf.saved_model.experimental.read_fingerprint(path).singleprint())
    except (OSError, ValueError, tf.errors.OpError):
        digest = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                digest.update(os.path.relpath(full, path).encode() + b"\0")
                _update_with_file(digest, full)
        return "sha256:" + digest.hexdigest()


def of_weights(model) -> Optional[str]:
    """``weights:<hex>``, a SHA-256 of the shapes, dtypes and values of a Keras model's weights
    (a ``tf.Module``'s variables), in order; None for a callable that holds no variables."""
    variables = getattr(model, "weights", None)
    if variables is None:
        variables = getattr(model, "variables", None)
    if not variables:
        return None
    digest = hashlib.sha256()
    for v in variables:
        value = np.ascontiguousarray(np.asarray(v))
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    return "weights:" + digest.hexdigest()
