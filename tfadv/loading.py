"""Loads a model for evaluation from a SavedModel directory, a run directory or a checkpoint file."""

from __future__ import annotations

import os

from tfadv import checkpoints as ckpt_lib
from tfadv import export as export_lib
from tfadv import identity as identity_lib


def load_for_evaluation(path: str):
    """Returns ``(model_fn_or_network, info)`` where info has pixel_range, num_classes, architecture,
    dataset, source and model_id (the SavedModel's fingerprint or the weights file's SHA-256).

    ``path`` may be a SavedModel written by tfadv, a run directory (the checkpoint its
    ``checkpoints/checkpoint.json`` names: the final weights, which its ``savedmodel/`` is
    exported from; that ``savedmodel/`` when it has no checkpoints), a ``checkpoints/`` directory
    or a ``.weights.h5`` file. A run directory whose training got further than its latest
    checkpoint is refused (:func:`tfadv.checkpoints.resolve`).
    """
    if not path:
        raise ValueError(f"A model path is required (--model_path). Received: {path!r}.")
    if not os.path.exists(path):
        raise ValueError(f"Model path does not exist. Received: {path!r}.")
    if export_lib.is_savedmodel(path):
        loaded = export_lib.load_savedmodel(path)
        return loaded, {"pixel_range": loaded.pixel_range.name, "num_classes": loaded.num_classes,
                        "architecture": loaded.metadata.get("architecture", "unknown"),
                        "dataset": loaded.metadata.get("dataset"), "source": path,
                        "model_id": identity_lib.of_savedmodel(path)}
    saved = os.path.join(path, "savedmodel")
    if os.path.isdir(path) and export_lib.is_savedmodel(saved) and not os.path.isdir(
            os.path.join(path, ckpt_lib.CHECKPOINT_DIR)):
        return load_for_evaluation(saved)
    network, config, weights = ckpt_lib.restore_network(path)
    return network, {"pixel_range": config["pixel_range"], "num_classes": config["num_classes"],
                     "architecture": config["model"], "dataset": config.get("dataset"),
                     "source": weights, "model_id": identity_lib.of_file(weights)}
