"""SavedModel export/load with a small metadata file (pixel range, eps units, classes).

A tfadv SavedModel has one endpoint, ``serve(images) -> logits``, computed with the network in
inference mode, and ``tfadv_metadata.json`` beside ``saved_model.pb`` saying which pixel range the
images must be in. Export is atomic: the directory appears complete or not at all.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import keras
import tensorflow as tf

from tfadv import atomic
from tfadv import ranges as ranges_lib

METADATA_FILE = "tfadv_metadata.json"
FORMAT_VERSION = 1


def check_target(path: str, *, overwrite: bool = True, flag: str = "path") -> None:
    """Raises ValueError unless ``path`` may receive an export: absent, an empty directory, or a
    tfadv SavedModel when ``overwrite`` (anything else, e.g. a run directory, is never replaced)."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise ValueError(f"The SavedModel directory is an existing file. Received: {flag}={path!r}.")
    contents = sorted(os.listdir(path))
    if not contents:
        return
    if is_savedmodel(path) and os.path.isfile(os.path.join(path, METADATA_FILE)):
        if overwrite:
            return
        raise ValueError(f"A tfadv SavedModel is already there; pass --overwrite to replace it. "
                         f"Received: {flag}={path!r}.")
    shown = ", ".join(contents[:8]) + (f" and {len(contents) - 8} more" if len(contents) > 8 else "")
    raise ValueError(f"The SavedModel directory exists, is not empty and is not a tfadv SavedModel "
                     f"(it contains {shown}); an export would replace all of it, so it is refused. "
                     f"Choose a new or empty directory. Received: {flag}={path!r}.")


def export_savedmodel(network: keras.Model, path: str, *, pixel_range, metadata: Optional[dict] = None,
                      overwrite: bool = True) -> str:
    """Writes ``network`` (images -> logits) as a SavedModel at ``path`` and returns ``path``.

    ``path`` may be absent, empty, or a tfadv SavedModel (replaced atomically unless
    ``overwrite=False``): :func:`check_target`.
    """
    check_target(path, overwrite=overwrite)
    rng = ranges_lib.get_range(pixel_range)
    input_shape = tuple(int(d) for d in network.input_shape[1:])
    meta = {
        "format_version": FORMAT_VERSION,
        "pixel_range": rng.name,
        "eps_units": "input units of pixel_range; flags use pixel levels out of 255",
        "num_classes": int(network.output_shape[-1]),
        "input_shape": list(input_shape),
        "model_name": network.name,
    }
    meta.update(metadata or {})
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(
        name="serve",
        fn=lambda images: network(images, training=False),
        input_signature=[tf.TensorSpec((None,) + input_shape, tf.float32, name="images")])
    with atomic.atomic_path(path, directory=True) as tmp:
        archive.write_out(tmp, verbose=False)
        atomic.write_json(os.path.join(tmp, METADATA_FILE), meta)
    return path


def keras_source_path(path: str) -> str:
    """``PATH.source.json``: which checkpoint the ``.keras`` file at ``path`` was saved from."""
    return path + ".source.json"


def save_keras(network: keras.Model, path: str, *, source: Optional[dict] = None) -> str:
    """Writes ``network`` as a Keras-native ``.keras`` file at ``path``, atomically, and returns
    ``path``; ``keras.models.load_model(path)`` reads it back (tfadv's layers are registered
    serializable, so no custom_objects are needed).

    ``source``: the identity of the checkpoint ``network`` holds
    (:func:`tfadv.checkpoints.checkpoint_identity`), written atomically to
    :func:`keras_source_path` after the ``.keras`` file; a previous record is removed before the
    file is replaced, so a record never describes another file's weights."""
    if not path.endswith(".keras"):
        raise ValueError(f"A Keras model file must end in .keras. Received: {path!r}.")
    if source is not None and not isinstance(source, dict):
        raise ValueError(f"source must be a dict (the checkpoint's identity) or None. "
                         f"Received: source={source!r}.")
    record = keras_source_path(path)
    if os.path.lexists(record):
        os.remove(record)
    with atomic.atomic_path(path) as tmp:
        network.save(tmp)
    if source is not None:
        atomic.write_json(record, {"format": 1, "source": source})
    return path


def read_keras_source(path: str) -> Optional[dict]:
    """The checkpoint identity recorded beside the ``.keras`` file at ``path``; None when there
    is no readable record."""
    try:
        with open(keras_source_path(path), encoding="utf-8") as f:
            source = json.load(f)["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return source if isinstance(source, dict) else None


class LoadedModel:
    """A restored tfadv SavedModel: ``model(x) -> logits`` plus its metadata."""

    def __init__(self, path: str, module, metadata: dict):
        self.path = path
        self._module = module
        self.metadata = metadata
        self.pixel_range = ranges_lib.get_range(metadata["pixel_range"])
        self.num_classes = int(metadata["num_classes"])
        self.input_shape = tuple(metadata["input_shape"])

    def __call__(self, images):
        return self._module.serve(tf.convert_to_tensor(images, tf.float32))


def is_savedmodel(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def load_savedmodel(path: str) -> LoadedModel:
    """Loads a SavedModel written by :func:`export_savedmodel`, with clear errors when it is not one."""
    if not os.path.isdir(path):
        raise ValueError(f"No SavedModel directory at this path. Received: {path!r}.")
    if not is_savedmodel(path):
        raise ValueError(f"Not a SavedModel (no saved_model.pb inside). Received: {path!r}.")
    metadata = atomic.read_json(os.path.join(path, METADATA_FILE),
                                missing=f"SavedModel lacks {METADATA_FILE}; export it with "
                                        f"scripts/export_savedmodel.py. Received: {path!r}.")
    try:
        module = tf.saved_model.load(path)
    except Exception as e:  # corrupt protobuf/variables
        raise ValueError(f"Could not read the SavedModel ({type(e).__name__}: {e}). "
                         f"Received: {path!r}.") from None
    if not hasattr(module, "serve"):
        raise ValueError(f"SavedModel has no 'serve' endpoint. Received: {path!r}.")
    return LoadedModel(path, module, metadata)
