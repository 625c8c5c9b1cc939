"""Loads a model for evaluation: what tfadv wrote (a SavedModel with ``tfadv_metadata.json``, a run
directory, a checkpoint) and the user's own models (a ``.keras`` file, a ``.weights.h5`` file with
an architecture name, a plain TF/Keras SavedModel, a ``keras.applications`` classifier by name).

Loading is not executing: ``.keras`` files load with Keras' ``safe_mode`` (no Lambda layer's Python
code is deserialised) unless ``unsafe_deserialization``. A SavedModel, however, is a program (its
graph runs when called): only evaluate SavedModels from a trusted source.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tfadv import checkpoints as ckpt_lib
from tfadv import export as export_lib
from tfadv import identity as identity_lib
from tfadv import models
from tfadv import ranges as ranges_lib
from tfadv import wrappers

#: The network a training run also saves as a Keras-native file (``LOGDIR/model.keras``).
KERAS_FILE = "model.keras"
#: ``--model_path`` prefix of a ``keras.applications`` classifier (``keras.applications:ResNet50``).
APPLICATIONS = "keras.applications:"


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How to read a user's model (the ``eval_robustness.py`` flags of the same names).

    ``arch``: a ``tfadv.models`` name for a bare ``.weights.h5`` file; ``num_classes`` and
    ``input_shape`` (one image, HWC) where the file does not state them; ``signature``: the serving
    signature of a plain SavedModel (default: its only one); ``pixel_range``: what the model takes
    (default the recorded one, else ``[0,1]``); ``normalize``: ``(mean, std)`` applied inside the
    model; ``unsafe_deserialization``: load ``.keras`` files with ``safe_mode=False``;
    ``app_weights``: a local weights file for a ``keras.applications`` classifier (without one
    its weights are random, initialised with Keras' global seed set to 0)."""

    arch: Optional[str] = None
    num_classes: Optional[int] = None
    input_shape: Optional[Tuple[int, ...]] = None
    signature: Optional[str] = None
    pixel_range: Optional[str] = None
    normalize: Optional[tuple] = None
    unsafe_deserialization: bool = False
    app_weights: Optional[str] = None


def load_for_evaluation(path: str, options: Optional[LoadOptions] = None):
    """Returns ``(model, info)``: a logits callable (a Keras model where there is one) taking images
    in ``info["pixel_range"]``, and info with pixel_range, num_classes, architecture, dataset
    (None where unrecorded), source, model_id (the SavedModel's fingerprint, the file's SHA-256 or,
    for a randomly initialised classifier, the weights' SHA-256), input_shape and wrappers (what
    was wrapped around the model: normalisation, log of softmax outputs).

    ``path`` may be a tfadv SavedModel, a run directory (its ``model.keras`` when the record beside
    it names the checkpoint its ``checkpoints/checkpoint.json`` names, else that checkpoint: the
    final weights, which its ``savedmodel/`` is exported from: :func:`keras_file_choice`; that ``savedmodel/`` when it has no
    checkpoints), a ``checkpoints/`` directory, a ``.weights.h5`` file (its run's architecture, or
    ``options.arch``), a ``.keras`` file, a plain SavedModel or ``keras.applications:NAME``.
    A run directory whose training got further than its latest checkpoint is refused
    (:func:`tfadv.checkpoints.resolve`).
    """
    options = options or LoadOptions()
    if options.pixel_range is not None:
        ranges_lib.get_range(options.pixel_range)  # an unknown name is refused before loading
    if not path:
        raise ValueError(f"A model path is required (--model_path). Received: {path!r}.")
    if path.startswith(APPLICATIONS):
        model, info = _load_application(path[len(APPLICATIONS):], options)
    elif not os.path.exists(path):
        raise ValueError(f"Model path does not exist. Received: {path!r}.")
    else:
        model, info = _load_path(path, options)
    return _wrapped(model, info, options)


def _load_path(path: str, options: LoadOptions):
    if path.endswith(".keras") and os.path.isfile(path):
        return load_keras_file(path, unsafe_deserialization=options.unsafe_deserialization)
    if path.endswith(".weights.h5") and options.arch:
        return _load_arch_weights(path, options)
    if export_lib.is_savedmodel(path):
        if not os.path.isfile(os.path.join(path, export_lib.METADATA_FILE)):
            return _load_plain_savedmodel(path, options)
        loaded = export_lib.load_savedmodel(path)
        return loaded, {"pixel_range": loaded.pixel_range.name, "num_classes": loaded.num_classes,
                        "architecture": loaded.metadata.get("architecture", "unknown"),
                        "dataset": loaded.metadata.get("dataset"), "source": path,
                        "model_id": identity_lib.of_savedmodel(path),
                        "input_shape": tuple(loaded.input_shape)}
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, ckpt_lib.RUN_CONFIG)):
        keras_file = run_keras_file(path)
        if keras_file:
            model, info = load_keras_file(keras_file,
                                          unsafe_deserialization=options.unsafe_deserialization)
            config = ckpt_lib.read_run_config(path)
            return model, {**info, "pixel_range": config["pixel_range"],
                           "architecture": config["model"], "dataset": config.get("dataset")}
    saved = os.path.join(path, "savedmodel")
    if os.path.isdir(path) and export_lib.is_savedmodel(saved) and not os.path.isdir(
            os.path.join(path, ckpt_lib.CHECKPOINT_DIR)):
        return _load_path(saved, options)
    network, config, weights = ckpt_lib.restore_network(path)
    return network, {"pixel_range": config["pixel_range"], "num_classes": config["num_classes"],
                     "architecture": config["model"], "dataset": config.get("dataset"),
                     "source": weights, "model_id": identity_lib.of_file(weights)}


def run_keras_file(logdir: str) -> Optional[str]:
    """``LOGDIR/model.keras`` when it holds the run's final network, else None (with a warning
    saying why when the file is there): see :func:`keras_file_choice`."""
    path, reason = keras_file_choice(logdir)
    if reason:
        logging.warning("%s", reason)
    return path


def keras_file_choice(logdir: str) -> Tuple[Optional[str], str]:
    """``(LOGDIR/model.keras or None, why it is not taken)``.

    The file is taken when the run has no checkpoint, or when the identity recorded beside it
    (``model.keras.source.json``: the checkpoint's name, epoch and SHA-256, written by
    :func:`tfadv.export.save_keras`) is that of the checkpoint the run resolves to; otherwise the
    checkpoint is (a run trained further after the file was saved, a file saved by hand or by an
    older tfadv). File times are not consulted: a copied run directory loads the same model. A
    run trained further than its latest checkpoint is refused, as
    :func:`tfadv.checkpoints.resolve` refuses it."""
    path = os.path.join(logdir, KERAS_FILE)
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(logdir, ckpt_lib.RUN_CONFIG)):
        return None, ""
    current = ckpt_lib.checkpoint_identity(logdir)
    if current is None:
        return path, ""
    saved = export_lib.read_keras_source(path)
    if saved == current:
        return path, ""
    why = (f"it records no checkpoint ({os.path.basename(export_lib.keras_source_path(path))} is "
           f"missing or unreadable)" if saved is None else
           f"it was saved from {saved.get('checkpoint')} (epoch {saved.get('epoch')}, "
           f"{saved.get('weights')})")
    return None, (f"Not loading {path}: {why}, but the run's latest checkpoint is "
                  f"{current['checkpoint']} (epoch {current['epoch']}, {current['weights']}); "
                  f"loading that checkpoint instead.")


def load_keras_file(path: str, *, unsafe_deserialization: bool = False):
    """A ``.keras`` file with ``safe_mode`` on unless ``unsafe_deserialization``: a file whose
    loading would run arbitrary Python code (a Lambda layer) is refused with a clear message."""
    try:
        network = keras.models.load_model(path, compile=False,
                                          safe_mode=not unsafe_deserialization)
    except ValueError as e:
        if "safe_mode" in str(e) or "unsafe" in str(e):
            raise ValueError(
                f"The .keras file holds code that loading would run (e.g. a Lambda layer's Python "
                f"function), which is refused: loading a model must not execute it. If you trust "
                f"the file's source, pass --unsafe_deserialization. Received: {path!r}.") from None
        raise ValueError(f"Could not load the .keras file ({e}). Received: {path!r}.") from None
    except Exception as e:  # corrupt zip, unknown custom layer
        raise ValueError(f"Could not load the .keras file ({type(e).__name__}: {e}). "
                         f"Received: {path!r}.") from None
    return network, {"pixel_range": None, "num_classes": int(network.output_shape[-1]),
                     "architecture": network.name, "dataset": None, "source": path,
                     "model_id": identity_lib.of_file(path),
                     "input_shape": tuple(network.input_shape[1:])}


def _need(value, flag: str, what: str, path: str):
    if value is None:
        raise ValueError(f"{what} needs {flag}: the file does not state it. Received: {path!r}.")
    return value


def _load_arch_weights(path: str, options: LoadOptions):
    shape = _need(options.input_shape, "--input_shape", "A .weights.h5 file with --arch", path)
    classes = _need(options.num_classes, "--num_classes", "A .weights.h5 file with --arch", path)
    network = models.build(options.arch, num_classes=classes, input_shape=tuple(shape))
    try:
        network.load_weights(path)
    except Exception as e:  # another architecture, shape or a corrupt file
        raise ValueError(f"Could not load the weights into {options.arch!r} with {classes} classes "
                         f"and input shape {tuple(shape)} ({type(e).__name__}: {e}). "
                         f"Received: {path!r}.") from None
    return network, {"pixel_range": None, "num_classes": int(classes), "architecture": options.arch,
                     "dataset": None, "source": path, "model_id": identity_lib.of_file(path),
                     "input_shape": tuple(shape)}


def _load_plain_savedmodel(path: str, options: LoadOptions):
    try:
        module = tf.saved_model.load(path)
    except Exception as e:  # corrupt protobuf or variables
        raise ValueError(f"Could not read the SavedModel ({type(e).__name__}: {e}). "
                         f"Received: {path!r}.") from None
    names = sorted(module.signatures.keys())
    if not names:
        raise ValueError(f"The SavedModel has no serving signature to evaluate (a tfadv "
                         f"SavedModel would have tfadv_metadata.json). Received: {path!r}.")
    name = options.signature
    if name is None and len(names) > 1:
        raise ValueError(f"The SavedModel has several serving signatures {names}: choose one with "
                         f"--signature. Received: {path!r}.")
    if name is not None and name not in names:
        raise ValueError(f"The SavedModel has no signature {name!r}; it has {names}. "
                         f"Received: --signature={name!r}.")
    fn = module.signatures[name or names[0]]
    inputs = fn.structured_input_signature[1]
    outputs = fn.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"The signature {name or names[0]!r} must take one input (images) and "
                         f"return one output (logits or probabilities); it takes {sorted(inputs)} "
                         f"and returns {sorted(outputs)}. Received: {path!r}.")
    (key, spec), = inputs.items()
    out_key = next(iter(outputs))
    if not spec.dtype.is_floating:
        raise ValueError(f"The signature's input {key!r} is {spec.dtype.name}; attacks need "
                         f"float images (gradients). Received: {path!r}.")
    shape = tuple(spec.shape.as_list()[1:]) if spec.shape.rank else None
    if options.input_shape is not None:
        shape = tuple(options.input_shape)
    if shape is None or any(d is None for d in shape):
        raise ValueError(f"The signature states no complete image shape ({spec.shape}): pass "
                         f"--input_shape=H,W,C. Received: {path!r}.")

    def serve(images):
        return fn(**{key: tf.cast(images, spec.dtype)})[out_key]

    serve.module = module  # keeps the variables alive while the callable lives
    probe = serve(np.zeros((1, *shape), np.float32))
    return wrappers.WrappedFn(serve, input_shape=shape, num_classes=int(probe.shape[-1])), {
        "pixel_range": None, "num_classes": int(probe.shape[-1]),
        "architecture": f"SavedModel:{name or names[0]}", "dataset": None, "source": path,
        "model_id": identity_lib.of_savedmodel(path), "input_shape": shape}


def _load_application(name: str, options: LoadOptions):
    module = wrappers.application_module(name)
    weights = options.app_weights
    if weights == "imagenet":
        raise ValueError(f"tfadv never downloads weights: --app_weights=imagenet would download "
                         f"them. Download the weights file yourself and pass its local path as "
                         f"--app_weights=PATH, or leave the flag out for random weights. "
                         f"Received: --app_weights={weights!r}.")
    if weights is not None and not os.path.isfile(weights):
        raise ValueError(f"--app_weights must be a local weights file (tfadv never downloads). "
                         f"Received: {weights!r}.")
    rng = ranges_lib.get_range(options.pixel_range or "[0,1]")
    kwargs = {"classes": int(options.num_classes or 1000), "classifier_activation": None,
              "weights": weights}
    if options.input_shape is not None:
        kwargs["input_shape"] = tuple(options.input_shape)
    if weights is None:
        keras.utils.set_random_seed(0)  # random weights, the same in every run (resumable)
    try:
        app = getattr(keras.applications, name)(**kwargs)
    except ValueError as e:
        raise ValueError(f"keras.applications.{name} refused the arguments {kwargs} ({e}). "
                         f"Received: {name!r}.") from None
    shape = tuple(app.input_shape[1:])
    inputs = keras.Input(shape, name="pixels")
    h = wrappers.ApplicationPreprocess(module, rng.low, rng.high, name="preprocess")(inputs)
    network = keras.Model(inputs, app(h), name=name)
    model_id = identity_lib.of_file(weights) if weights else identity_lib.of_weights(network)
    return network, {"pixel_range": rng.name, "num_classes": int(network.output_shape[-1]),
                     "architecture": f"keras.applications.{name}", "dataset": None,
                     "source": APPLICATIONS + name, "model_id": model_id, "input_shape": shape}


def _wrapped(model, info: dict, options: LoadOptions):
    """``model`` in the declared pixel range, normalising inside and returning log-probabilities
    where its outputs are probabilities; ``info`` completed (pixel_range, input_shape, wrappers)."""
    recorded = info.get("pixel_range")
    if recorded and options.pixel_range and ranges_lib.get_range(options.pixel_range).name != recorded:
        raise ValueError(f"The model records that it takes images in {recorded}; --pixel_range "
                         f"contradicts it. Received: --pixel_range={options.pixel_range!r}.")
    rng = ranges_lib.get_range(recorded or options.pixel_range or "[0,1]")
    shape = info.get("input_shape") or wrappers_shape(model)
    if options.input_shape is not None and shape is not None and not tf.TensorShape(
            shape).is_compatible_with(tf.TensorShape(options.input_shape)):
        raise ValueError(f"The model takes images of shape {tuple(shape)}; --input_shape says "
                         f"otherwise. Received: --input_shape={tuple(options.input_shape)}.")
    wrappers.check_channels(options.normalize, shape)
    done = []
    if options.normalize is not None:
        done.append(f"normalize(mean={list(options.normalize[0])}, std={list(options.normalize[1])})")
    if shape is not None and all(d is not None for d in shape):
        inner = wrappers.wrap(model, input_shape=shape, normalize=options.normalize)
        outputs = inner(wrappers.probe_images(shape, rng.low, rng.high))
        model = wrappers.convert_probabilities(model, outputs, input_shape=shape,
                                               normalize=options.normalize)
        if wrappers.looks_like_probabilities(outputs):
            done.append("log(softmax outputs)")
    elif options.normalize is not None:
        raise ValueError(f"--normalize needs the model's image shape, which it does not state: "
                         f"pass --input_shape. Received: {info['source']!r}.")
    return model, {**info, "pixel_range": rng.name, "input_shape": shape, "wrappers": done}


def wrappers_shape(model):
    """The image shape a Keras model or a tfadv loaded model states, else None."""
    shape = getattr(model, "input_shape", None)
    if isinstance(model, keras.layers.Layer) and shape is not None:
        return tuple(shape[1:])
    return tuple(shape) if shape is not None else None
