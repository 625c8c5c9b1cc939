"""Runs a list of attacks over a dataset and keeps per-example correctness.

Every attack starts from the clean input (REFERENCE_NOTES trap 7); robust accuracy under several
attacks is the *pointwise worst case*: an example counts as robust only if every attack (and the
clean input) leaves it correctly classified.

``only_robust=True`` (AutoAttack's protocol, the default of the suites) runs each attack only on the
points that are still correctly classified under every previous one. The pointwise worst case is the
same; the time of later attacks is spent on fewer points. An attack's ``correct`` flags are then
*cumulative* (robust under it and everything before it) and ``points_attacked`` says how many points
it ran on.

Graph-safe attacks are compiled once with ``tf.function``; the others (``graph_safe = False``:
host-side control flow, query loops) are called eagerly.

Generator attacks (``tfadv.attacks.generators``: ``needs_preparation = True``) are fitted to the
model once before their batches: ``prepare_data=`` (training-split batches) is handed to
``attack.prepare(model_fn, prepare_data, steps=prepare_steps)``; an attack already prepared by the
caller is used as it is. A resumed run fits such an attack again before its remaining batches
(the fitted generator is not part of the saved state).

``state_path=`` makes a long run resumable: after every batch (or every ``save_every_s`` seconds,
and whenever the run stops, also on an error) the per-attack progress is written atomically to an
``.npz`` file; a rerun with the same configuration skips the finished attacks and batches. The
configuration (:func:`fingerprint`) covers the attacks, pixel range, only_robust, the model (a hash
of its weights unless ``identity={"model": ...}`` names it) and the number of examples, plus what
the caller adds in ``identity=`` (dataset, split, limit, eps, seed, ...): a state file of another
configuration is refused with the fields that differ, a corrupt one with "delete it".
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import sys
import time
import zipfile
import zlib
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tfadv import atomic
from tfadv import identity as identity_lib
from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks.core import as_model_fn

STATE_VERSION = 2


@dataclasses.dataclass
class AttackResult:
    label: str
    correct: np.ndarray          # bool per example (cumulative when the run used only_robust)
    seconds: float
    forward_passes: int          # model evaluations (attack + final prediction) over all examples
    max_linf: float              # largest |x_adv - x|_inf over examples, in input units
    nan_count: int
    out_of_range: int
    max_l2: float = 0.0          # largest |x_adv - x|_2 over examples, in input units
    points_attacked: int = -1    # examples the attack ran on (-1: not recorded, i.e. all)
    attack_name: str = ""        # registry name of the attack ("pgd", "autoattack", ...)
    cumulative: bool = False     # correct = robust under this and every previous attack

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.correct.size else float("nan")


@dataclasses.dataclass
class EvaluationResult:
    results: Dict[str, AttackResult]
    num_examples: int
    only_robust: bool = False

    @property
    def worst_case(self) -> np.ndarray:
        return np.logical_and.reduce([r.correct for r in self.results.values()])

    def accuracies(self) -> Dict[str, float]:
        acc = {label: r.accuracy for label, r in self.results.items()}
        if len(self.results) > 1:
            acc["worst case"] = float(self.worst_case.mean())
        return acc


class _Progress:
    """One status line per attack: redrawn in place on a terminal, every 30 s in a log file."""

    def __init__(self, label, total, stream):
        self.label, self.total, self.stream = label, total, stream
        self.start = self.last = time.time()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def update(self, done, final=False, attacked=None):
        if self.stream is None:
            return
        now = time.time()
        if not (final or self.tty or now - self.last >= 30):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (f", eta {(self.total - done) / rate:.0f}s" if self.total and rate > 0 else "")
        extra = "" if attacked is None else f" ({attacked} attacked)"
        text = (f"  {self.label}: {done}/{self.total or '?'} images{extra}, {rate:.0f} img/s, "
                f"elapsed {now - self.start:.0f}s{eta}")
        self.stream.write(("\r" + text + "   ") if self.tty else text + "\n")
        if final and self.tty:
            self.stream.write("\n")
        self.stream.flush()


def _check_batch(model_fn, x, y, rng):
    """Stops early, with the offending values, on images outside the range or bad labels; warns
    when the model's outputs look like probabilities (its one-image forward pass, no extra one)."""
    rng.check_images(x.numpy(), what="Evaluation images")
    outputs = model_fn(x[:1])
    checks.warn_if_probabilities(outputs)
    num_classes = int(outputs.shape[-1])
    yn = y.numpy()
    if yn.ndim != 1 or (yn.size and (yn.min() < 0 or yn.max() >= num_classes)):
        raise ValueError(f"Evaluation labels must be integers in [0, {num_classes}) with shape (B,). "
                         f"Received: shape={yn.shape}, min={yn.min()}, max={yn.max()}.")


def _attack_name(spec, attack) -> str:
    params = getattr(spec, "params", None) or {}
    return str(params.get("attack") or getattr(attack, "name", "") or "")


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
    _State(path, key, 0.0)


class _State:
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


def _summary_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", label)


def evaluate(model, dataset, specs: Dict[str, "object"], *, pixel_range, num_examples: Optional[int] = None,
             progress=sys.stderr, only_robust: bool = False, state_path: Optional[str] = None,
             save_every_s: float = 0.0, tensorboard_dir: Optional[str] = None,
             prepare_data=None, prepare_steps: Optional[int] = None,
             identity: Optional[dict] = None) -> EvaluationResult:
    """Evaluates ``model`` (Keras model or logits callable) under each attack spec.

    Args:
        model: images -> logits; Keras models are called in inference mode.
        dataset: batched ``(images, labels)`` pairs in ``pixel_range``, iterable once per attack in
            the same order (a tf.data.Dataset without reshuffling, or a list).
        specs: ordered mapping label -> AttackSpec (or anything with ``.attack``) or Attack.
        num_examples: total, for the progress line only.
        progress: a stream for the progress line, or None.
        only_robust: run each attack only on the points still correct under all previous ones.
        state_path: resumable run: progress is saved to this ``.npz`` file and a rerun with the same
            configuration skips what is done (the dataset must yield the same batches again).
        save_every_s: with ``state_path``, save at most this often (0: after every batch); the state
            is always saved when an attack finishes and when the run stops on an error.
        tensorboard_dir: write scalars (per-attack accuracy, worst case so far, time) there.
        prepare_data: batches ``(images, labels)`` (training split) on which attacks with
            ``needs_preparation`` are fitted before they run (generator attacks).
        prepare_steps: fitting steps of those attacks that do not set their own.
        identity: with ``state_path``, what else the state must match (JSON values): e.g.
            ``{"model": ..., "dataset": ..., "split": ..., "limit": ...}``. Without a ``"model"``
            entry the model is identified by a hash of its weights (a callable holding no variables
            must name itself); ``num_examples``, when given, is added as ``"num_examples"``.
    """
    rng = ranges_lib.get_range(pixel_range)
    model_fn = as_model_fn(model, False)
    spec = getattr(dataset, "element_spec", None)  # a tf.data.Dataset: checked before anything runs
    if isinstance(spec, (tuple, list)) and spec:
        checks.check_model_input(model_fn, spec[0], what="Evaluation images")
    key = fingerprint(specs, pixel_range=rng, only_robust=only_robust, prepare_steps=prepare_steps,
                      identity=_state_identity(model, identity, num_examples) if state_path else None)
    state = _State(state_path, key, save_every_s)
    writer = tf.summary.create_file_writer(tensorboard_dir) if tensorboard_dir else None
    results: Dict[str, AttackResult] = {}
    robust_so_far: Optional[np.ndarray] = None
    checked = False
    total = 0
    try:
        for index, (label, spec) in enumerate(specs.items()):
            attack = getattr(spec, "attack", spec)
            entry = state.entry(label)
            if not entry["done"]:
                _prepare(model_fn, attack, label, prepare_data, prepare_steps, progress)
                checked = _run_attack(model_fn, dataset, attack, label, entry, state, rng,
                                      robust_so_far if only_robust else None, num_examples,
                                      progress, checked)
            result = _result_from_entry(label, entry, attack, _attack_name(spec, attack), only_robust)
            results[label] = result
            total = int(result.correct.size)
            robust_so_far = result.correct if robust_so_far is None else \
                np.logical_and(robust_so_far, result.correct)
            if writer is not None:
                tag = _summary_name(label)
                with writer.as_default():
                    tf.summary.scalar(f"robust_accuracy/{tag}", result.accuracy, step=index)
                    tf.summary.scalar(f"time_s/{tag}", result.seconds, step=index)
                    tf.summary.scalar(f"forward_passes/{tag}", float(result.forward_passes), step=index)
                    tf.summary.scalar(f"points_attacked/{tag}", float(result.points_attacked), step=index)
                    tf.summary.scalar("worst_case_accuracy", float(robust_so_far.mean())
                                      if robust_so_far.size else float("nan"), step=index)
    finally:
        state.save()
        if writer is not None:
            writer.flush()
            writer.close()
    return EvaluationResult(results=results, num_examples=total, only_robust=bool(only_robust))


def _state_identity(model, identity, num_examples) -> dict:
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


def _prepare(model_fn, attack, label, data, steps, progress) -> None:
    """Fits an attack that needs it (a generator attack) to ``model_fn`` before its batches."""
    if not getattr(attack, "needs_preparation", False) or getattr(attack, "prepared", False):
        return
    if data is None:
        raise ValueError(
            f"Attack {label!r} ({getattr(attack, 'name', type(attack).__name__)}) must be fitted to "
            "the model before it attacks: pass prepare_data= (training-split batches) to "
            "evaluate(), or call attack.prepare(model_fn, dataset) first. Received: prepare_data=None.")
    start = time.time()
    summary = attack.prepare(model_fn, data, steps=steps)
    if progress is not None:
        progress.write(f"  {label}: fitted in {time.time() - start:.0f}s ({summary})\n")
        progress.flush()


def _result_from_entry(label, entry, attack, name, only_robust) -> AttackResult:
    cat = {k: (np.concatenate(entry[k]) if entry[k] else np.zeros([0])) for k in _State.ARRAYS}
    attacked = int(entry["points_attacked"])
    return AttackResult(
        label=label, correct=cat["correct"].astype(bool), seconds=float(entry["seconds"]),
        forward_passes=int((attack.model_calls_per_example() + 1) * attacked),
        max_linf=float(cat["linf"].max()) if cat["linf"].size else 0.0,
        nan_count=int(cat["nan"].sum()), out_of_range=int(cat["oor"].sum()),
        max_l2=float(cat["l2"].max()) if cat["l2"].size else 0.0, points_attacked=attacked,
        attack_name=name, cumulative=bool(only_robust))


def _run_attack(model_fn, dataset, attack, label, entry, state, rng, mask, num_examples, progress,
                checked) -> bool:
    """Runs one attack over the batches not yet in ``entry``; updates ``entry`` and saves ``state``."""

    def run(x, y):
        x_adv = attack(model_fn, x, y)
        pred = tf.argmax(model_fn(x_adv), axis=-1, output_type=tf.int32)
        delta = tf.reshape(x_adv - x, [tf.shape(x)[0], -1])
        return (tf.equal(pred, y), tf.reduce_max(tf.abs(delta), axis=1),
                tf.norm(delta, axis=1),
                tf.reduce_sum(tf.cast(tf.math.is_nan(delta), tf.int32), axis=1),
                tf.reduce_sum(tf.cast(tf.logical_or(x_adv < rng.low - 1e-6, x_adv > rng.high + 1e-6),
                                      tf.int32), axis=tf.range(1, tf.rank(x_adv))))

    graph_safe = bool(getattr(attack, "graph_safe", True))
    compiled = None
    bar = _Progress(label, num_examples, progress)
    seen = 0
    resumed_batches = int(entry["batches"])
    for batch, (x, y) in enumerate(dataset):
        checks.check_model_input(model_fn, x, what="Evaluation images")  # before the float32 cast
        x = tf.convert_to_tensor(x, tf.float32)
        y = checks.as_class_ids(y, what="Evaluation labels")
        n = int(y.shape[0])
        offset = seen
        seen += n
        yn = y.numpy()
        if offset + n <= state.labels.size:
            if not np.array_equal(state.labels[offset:offset + n], yn):
                raise ValueError(
                    f"The dataset does not yield the same examples in the same order for every attack "
                    f"(or as the run being resumed): labels differ in batch {batch}. The pointwise worst "
                    f"case needs a fixed order (no reshuffling). "
                    f"Received: attack {label!r}, examples {offset}..{offset + n}.")
        elif offset == state.labels.size:
            state.labels = np.concatenate([state.labels, yn.astype(np.int64)])
        if batch < resumed_batches:
            continue
        if not checked and n:  # the check calls the model: never on an empty batch
            _check_batch(model_fn, x, y, rng)
            checked = True
        start = time.time()
        if mask is not None:
            if offset + n > mask.size:
                raise ValueError(f"The dataset yields more examples than the previous attacks saw. "
                                 f"Received: {offset + n} > {mask.size} for attack {label!r}.")
            sel = mask[offset:offset + n]
        else:
            sel = np.ones([n], bool)
        correct = np.zeros([n], bool)
        linf, l2 = np.zeros([n], np.float32), np.zeros([n], np.float32)
        nans, oor = np.zeros([n], np.int64), np.zeros([n], np.int64)
        count = int(sel.sum())
        if count:
            xs, ys = (x, y) if count == n else (tf.boolean_mask(x, sel), tf.boolean_mask(y, sel))
            if graph_safe:
                if compiled is None:
                    # One trace per attack: the batch dimension is left open (last or masked batches).
                    compiled = tf.function(run, input_signature=[
                        tf.TensorSpec([None, *x.shape[1:]], tf.float32), tf.TensorSpec([None], tf.int32)])
                outs = compiled(xs, ys)
            else:
                outs = run(xs, ys)
            c, d, e, a, o = (t.numpy() for t in outs)
            correct[sel], linf[sel], l2[sel], nans[sel], oor[sel] = c, d, e, a, o
        for name, value in zip(_State.ARRAYS, (correct, linf, l2, nans, oor)):
            entry[name].append(value)
        entry["batches"] = batch + 1
        entry["examples"] = seen
        entry["points_attacked"] += count
        entry["seconds"] += time.time() - start
        state.changed()
        bar.update(seen, attacked=entry["points_attacked"] if mask is not None else None)
    if mask is not None and seen != mask.size:
        raise ValueError(f"The dataset yields fewer examples than the previous attacks saw. "
                         f"Received: {seen} < {mask.size} for attack {label!r}.")
    bar.update(seen, final=True, attacked=entry["points_attacked"] if mask is not None else None)
    entry["done"] = True
    state.dirty = True
    state.save()
    return checked
