"""The resumable state of an evaluation run (``evaluate(state_path=...)``): the configuration it
belongs to (:func:`fingerprint`) and the per-attack progress, saved atomically as ``.npz`` (arrays
plus a JSON header) after every batch or every ``save_every_s`` seconds.

A rerun with the same configuration skips the finished attacks and batches; a state file of another
configuration is refused with the fields that differ, a corrupt one with "delete it".
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
import zlib
from typing import Dict, Optional

import numpy as np

from tfadv import atomic
from tfadv import identity as identity_lib
from tfadv import ranges as ranges_lib

# 3: an ensemble's entry keeps its per-member counts (``components``), which a version-2 file lacks.
STATE_VERSION = 3


def fingerprint(specs, *, pixel_range, only_robust, identity: Optional[dict] = None,
                prepare_steps: Optional[int] = None) -> str:
    """A JSON object identifying a run's configuration (what a resumed run must match).

    ``identity``: fields naming what is evaluated beyond the attacks (model, dataset, split, limit,
    number of examples, eps, seed, ...), one JSON value each. ``prepare_steps`` counts only when
    an attack needs preparation.
    """
    items = []
    for label, spec in specs.items():
        attack = getattr(spec, "attack", spec)
        try:
            config = attack.get_config()
        except Exception:  # noqa: BLE001 - a custom attack without a serialisable config
            config = {"name": getattr(attack, "name", type(attack).__name__)}
        items.append([label, type(attack).__name__, config, getattr(spec, "params", None)])
    config = {"version": STATE_VERSION, "pixel_range": str(ranges_lib.get_range(pixel_range)),
              "only_robust": bool(only_robust), "attacks": items}
    if prepare_steps is not None and any(getattr(getattr(s, "attack", s), "needs_preparation", False)
                                         for s in specs.values()):
        config["prepare_steps"] = int(prepare_steps)
    clash = sorted(set(identity or {}) & set(config))
    if clash:
        raise ValueError(f"identity= must not redefine the fields fingerprint() sets itself. "
                         f"Received: {clash}.")
    config.update(identity or {})
    return json.dumps(config, sort_keys=True, default=str)


def _differences(saved: str, key: str) -> str:
    """``field: VALUE in the file, VALUE now`` for every top-level field two fingerprints differ in."""
    try:
        old = json.loads(saved)
    except (TypeError, ValueError):
        old = None
    old = old if isinstance(old, dict) else {}
    new = json.loads(key)
    absent = object()

    def show(config, name):
        text = json.dumps(config[name], sort_keys=True, default=str) if name in config else "(absent)"
        return text if len(text) <= 120 else text[:117] + "..."

    names = sorted(n for n in set(old) | set(new) if old.get(n, absent) != new.get(n, absent))
    return "; ".join(f"{n}: {show(old, n)} in the file, {show(new, n)} now" for n in names)


def check_state(path: str, key: str) -> None:
    """Raises the ValueError ``evaluate(state_path=path)`` would raise at its start when the state
    file there is corrupt or belongs to another configuration ``key`` (:func:`fingerprint`)."""
    State(path, key, 0.0)


class State:
    """Per-attack progress of a run, saved atomically as ``.npz`` (arrays + a JSON header)."""

    ARRAYS = ("correct", "linf", "l2", "nan", "oor")
    ENTRY_KEYS = ("label", "done", "batches", "seconds", "points_attacked", "examples")

    def __init__(self, path: Optional[str], key: str, save_every_s: float):
        self.path, self.key, self.save_every_s = path, key, float(save_every_s)
        self.attacks: Dict[str, dict] = {}
        self.labels = np.zeros([0], np.int64)
        self.last_save = time.time()
        self.dirty = False
        if path and os.path.exists(path):
            self._load()

    def _load(self):
        try:
            with np.load(self.path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                arrays = {k: data[k] for k in data.files if k != "header"}
            saved_key = header["fingerprint"]
            attacks = [dict(entry) for entry in header["attacks"]]
            missing = sorted({k for entry in attacks for k in self.ENTRY_KEYS if k not in entry})
            if missing:
                raise KeyError(f"attack entries without {missing}")
        except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile,
                zlib.error) as e:
            raise ValueError(f"Corrupt evaluation state file ({type(e).__name__}: {e}); delete it "
                             f"to start over. Received: {self.path!r}.") from None
        if saved_key != self.key:
            raise ValueError(
                f"The evaluation state file was written for a different configuration "
                f"({_differences(saved_key, self.key)}); it is not reused: delete it, or choose "
                f"another state path (eval_robustness.py: another --out_dir), to start over. "
                f"Received: {self.path!r}.")
        self.labels = arrays.get("labels", np.zeros([0], np.int64))
        for i, entry in enumerate(attacks):
            for name in self.ARRAYS:
                entry[name] = [arrays[f"a{i}_{name}"]] if f"a{i}_{name}" in arrays else []
            self.attacks[entry["label"]] = entry

    def entry(self, label):
        if label not in self.attacks:
            self.attacks[label] = {"label": label, "done": False, "batches": 0, "seconds": 0.0,
                                   "points_attacked": 0, "examples": 0,
                                   **{name: [] for name in self.ARRAYS}}
        return self.attacks[label]

    def changed(self):
        self.dirty = True
        if self.path and time.time() - self.last_save >= self.save_every_s:
            self.save()

    def save(self):
        if not self.path or not self.dirty:
            return
        header = {"fingerprint": self.key, "version": STATE_VERSION, "attacks": []}
        arrays = {"labels": self.labels}
        for i, entry in enumerate(self.attacks.values()):
            header["attacks"].append({k: v for k, v in entry.items() if k not in self.ARRAYS})
            for name in self.ARRAYS:
                arrays[f"a{i}_{name}"] = (np.concatenate(entry[name]) if entry[name]
                                          else np.zeros([0]))
        buf = io.BytesIO()
        np.savez(buf, header=np.array(json.dumps(header, default=str)), **arrays)
        with atomic.atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:
                f.write(buf.getvalue())
        self.last_save = time.time()
        self.dirty = False


def state_identity(model, identity, num_examples) -> dict:
    """``identity`` completed with the model's weights hash and ``num_examples``."""
    identity = dict(identity or {})
    if identity.get("model") is None:
        identity["model"] = identity_lib.of_weights(model)
        if identity["model"] is None:
            raise ValueError(
                "A resumable evaluation (state_path=) must know which model its state belongs to: "
                "pass a Keras model (or tf.Module) holding its weights, or identity={'model': ...}. "
                f"Received: model={model!r}.")
    if num_examples is not None:
        identity.setdefault("num_examples", int(num_examples))
    return identity
