"""The Keras network a cross-check against torchattacks runs on (``scripts/crosscheck_torchattacks.py``):
loaded from a run directory, checkpoint or weights file, rebuilt from a tfadv SavedModel (the PyTorch
conversion needs the Keras layers), or trained in-process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

#: Largest |logit| difference allowed between a network and what it was rebuilt from.
LOGITS_ATOL = 1e-4


def network_from_savedmodel(loaded, path):
    """Rebuilds the Keras network of a tfadv SavedModel and copies its variables by name.

    The architecture comes from the SavedModel's metadata; its keyword arguments from the run's
    ``run_config.json`` beside the SavedModel (or the metadata's ``model_kwargs``). The rebuilt
    network is checked against the SavedModel's logits on random images.
    """
    import numpy as np

    from tfadv import models
    from tfadv import checkpoints as ckpt_lib

    meta = loaded.metadata
    arch = meta.get("architecture")
    kwargs = dict(meta.get("model_kwargs") or {})
    parent = os.path.dirname(os.path.abspath(path.rstrip("/")))
    if os.path.isfile(os.path.join(parent, ckpt_lib.RUN_CONFIG)):
        config = ckpt_lib.read_run_config(parent)
        if not arch or config.get("model") == arch:
            arch = config["model"]
            kwargs = dict(config.get("model_kwargs") or {})
    if not arch or arch == "unknown":
        raise ValueError("The SavedModel records no architecture, so the Keras network needed for "
                         "the PyTorch conversion cannot be rebuilt; pass the run directory or a "
                         f"checkpoint instead. Received: {path!r}.")
    network = models.build(arch, num_classes=loaded.num_classes,
                           input_shape=tuple(loaded.input_shape), **kwargs)
    saved = {v.name.split(":")[0]: v for v in loaded._module.variables}
    missing = [v.path for v in network.variables if v.path not in saved]
    if missing or len(saved) != len(network.variables):
        raise ValueError(f"The SavedModel's variables do not match a freshly built {arch!r} "
                         f"(kwargs {kwargs}); missing {missing[:5]}, {len(saved)} saved vs "
                         f"{len(network.variables)} built. Pass the run directory instead. "
                         f"Received: {path!r}.")
    for v in network.variables:
        src = saved[v.path]
        if tuple(src.shape) != tuple(v.shape):
            raise ValueError(f"Variable {v.path} has shape {tuple(src.shape)} in the SavedModel "
                             f"but {tuple(v.shape)} in the rebuilt {arch!r}. Received: {path!r}.")
        v.assign(src.numpy())
    rng = loaded.pixel_range
    x = np.random.default_rng(0).uniform(rng.low, rng.high, (8, *loaded.input_shape)).astype("float32")
    diff = float(np.max(np.abs(network(x, training=False).numpy() - loaded(x).numpy())))
    if diff > LOGITS_ATOL:
        raise ValueError(f"The network rebuilt from the SavedModel differs from it (max |logit "
                         f"diff| {diff:.3g}). Received: {path!r}.")
    return network


def load_network(path):
    """``(keras_network, info)`` from a SavedModel, run directory, checkpoints dir, weights file or
    ``.keras`` file. A run directory's ``model.keras`` is taken as it is (no rebuild); so is the
    one beside a tfadv SavedModel in its run directory; other SavedModels are rebuilt."""
    import keras

    from tfadv import loading

    model, info = loading.load_for_evaluation(path)
    if not isinstance(model, keras.Model):
        run = os.path.dirname(os.path.abspath(path.rstrip("/")))
        keras_file = loading.run_keras_file(run) if os.path.isdir(run) else None
        if keras_file:
            model, _ = loading.load_keras_file(keras_file)
        else:
            model = network_from_savedmodel(model, info.get("source", path))
    return model, info


def check_train_overrides(overrides: dict) -> dict:
    """``overrides`` when every key is a TrainConfig field, else a ValueError naming the others."""
    from tfadv import experiment

    fields = {f.name for f in dataclasses.fields(experiment.TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"Unknown --train_config keys {unknown}; TrainConfig has {sorted(fields)}. "
                         f"Received: {sorted(overrides)}.")
    return overrides


def train_network(out_dir, dataset, *, data_dir=None, seed=0, overrides=None, model_kwargs=None):
    """Trains (or reuses) a Madry PGD model on ``dataset`` under OUT_DIR/model.

    The dataset's preset, with ``overrides`` (TrainConfig fields: :func:`check_train_overrides`)
    and the architecture's ``model_kwargs``; a finished run of the same model in OUT_DIR/model is
    reused. Returns ``(keras_network, info)`` as :func:`load_network`.
    """
    from tfadv import checkpoints as ckpt_lib
    from tfadv import experiment
    from tfadv import recipes as recipes_lib

    preset = recipes_lib.get(recipes_lib.dataset_preset(dataset, data_dir))
    logdir = os.path.join(out_dir, "model")
    fields = {f.name for f in dataclasses.fields(experiment.TrainConfig)}
    base = {k: getattr(preset, k) for k in dataclasses.asdict(preset) if k in fields}
    overrides = dict(check_train_overrides(overrides or {}))
    if "lr_boundaries" in overrides and not isinstance(overrides["lr_boundaries"], (list, tuple)):
        overrides["lr_boundaries"] = (int(overrides["lr_boundaries"]),)
    base.update(dataset=dataset, data_dir=data_dir, logdir=logdir, seed=seed,
                eval_attacks="clean", model_kwargs=dict(model_kwargs or {}), verbose=2)
    base.update(overrides)
    cfg = experiment.TrainConfig(**base).validate()
    index = os.path.join(logdir, ckpt_lib.CHECKPOINT_DIR, ckpt_lib.CHECKPOINT_INDEX)
    if os.path.isfile(index) and os.path.isfile(os.path.join(logdir, ckpt_lib.RUN_CONFIG)):
        with open(index, encoding="utf-8") as f:
            epoch = json.load(f).get("epoch")
        config = ckpt_lib.read_run_config(logdir)
        if epoch == cfg.epochs and config.get("model") == cfg.model and \
                config.get("model_kwargs", {}) == cfg.model_kwargs and config.get("dataset") == dataset:
            print(f"Reusing the trained model in {logdir} (epoch {epoch}).", flush=True)
            network, config, _ = ckpt_lib.restore_network(logdir)
            return network, {"pixel_range": config["pixel_range"], "num_classes": config["num_classes"],
                             "architecture": config["model"], "dataset": dataset, "source": logdir}
    model, _ = experiment.train(cfg, defense="madry", stream=sys.stdout)
    return model.network, {"pixel_range": cfg.pixel_range, "architecture": cfg.model,
                           "num_classes": int(model.network.output_shape[-1]), "dataset": dataset,
                           "source": logdir, "train_config": dataclasses.asdict(cfg)}
