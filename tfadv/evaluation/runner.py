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
import re
import sys
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tfadv import ranges as ranges_lib
from tfadv.attacks import checks
from tfadv.attacks.model_fn import as_model_fn
# The resumable state has its own module; fingerprint and check_state stay importable from here.
from tfadv.evaluation.state import STATE_VERSION, State, check_state, fingerprint  # noqa: F401
from tfadv.evaluation.state import state_identity
from tfadv.evaluation import sharding

@dataclasses.dataclass
class AttackResult:
    label: str
    correct: np.ndarray          # bool per example (cumulative when the run used only_robust)
    seconds: float
    forward_passes: int          # upper bound: (attack's model_calls_per_example + 1) × attacked
    max_linf: float              # largest |x_adv - x|_inf over examples, in input units
    nan_count: int
    out_of_range: int
    max_l2: float = 0.0          # largest |x_adv - x|_2 over examples, in input units
    points_attacked: int = -1    # examples the attack ran on (-1: not recorded, i.e. all)
    attack_name: str = ""        # registry name of the attack ("pgd", "autoattack", ...)
    cumulative: bool = False     # correct = robust under this and every previous attack
    # An ensemble's members (AutoAttack's ``last_run`` summed over the batches), in order: per
    # member ``attack`` (registry name), ``attacked`` (points it ran on: those still robust),
    # ``fooled``, ``seconds`` and its ``forward``/``backward`` passes. Empty for a single attack.
    components: list = dataclasses.field(default_factory=list)
    # Passes counted inside the model callable (issue 20), per example-pass, attack and final
    # prediction: forward passes, and backward (input-gradient) passes. -1: not counted (a state
    # file written before counting).
    forward_count: int = -1
    backward_count: int = -1

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


def attack_name(spec, attack) -> str:
    params = getattr(spec, "params", None) or {}
    return str(params.get("attack") or getattr(attack, "name", "") or "")


def _summary_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", label)


def evaluate(model, dataset, specs: Dict[str, "object"], *, pixel_range, num_examples: Optional[int] = None,
             progress=sys.stderr, only_robust: bool = False, state_path: Optional[str] = None,
             save_every_s: float = 0.0, tensorboard_dir: Optional[str] = None,
             prepare_data=None, prepare_steps: Optional[int] = None,
             identity: Optional[dict] = None, distribute=None) -> EvaluationResult:
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
        distribute: a ``tf.distribute.Strategy`` of one process (MirroredStrategy over GPUs or
            logical CPUs; several workers are refused): every model pass of the attacks is split over its
            replicas and gathered in example order (:mod:`tfadv.evaluation.sharding`); results,
            per example, are those of one device, and so is the resumable state. ``None``: the
            current device.
    """
    rng = ranges_lib.get_range(pixel_range)
    model_fn = as_model_fn(model, False)
    spec = getattr(dataset, "element_spec", None)  # a tf.data.Dataset: checked before anything runs
    if isinstance(spec, (tuple, list)) and spec:
        checks.check_model_input(model_fn, spec[0], what="Evaluation images")
    attacked_fn = sharding.shard(model_fn, distribute)
    key = fingerprint(specs, pixel_range=rng, only_robust=only_robust, prepare_steps=prepare_steps,
                      identity=state_identity(model, identity, num_examples) if state_path else None)
    state = State(state_path, key, save_every_s)
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
                _prepare(attacked_fn, attack, label, prepare_data, prepare_steps, progress)
                checked = _run_attack((model_fn, attacked_fn), dataset, attack, label, entry,
                                      state, rng,
                                      robust_so_far if only_robust else None, num_examples,
                                      progress, checked)
            result = result_from_entry(label, entry, attack, attack_name(spec, attack), only_robust)
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


def result_from_entry(label, entry, attack, name, only_robust) -> AttackResult:
    cat = {k: (np.concatenate(entry[k]) if entry[k] else np.zeros([0])) for k in State.ARRAYS}
    attacked = int(entry["points_attacked"])
    return AttackResult(
        label=label, correct=cat["correct"].astype(bool), seconds=float(entry["seconds"]),
        forward_passes=int((attack.model_calls_per_example() + 1) * attacked),
        max_linf=float(cat["linf"].max()) if cat["linf"].size else 0.0,
        nan_count=int(cat["nan"].sum()), out_of_range=int(cat["oor"].sum()),
        max_l2=float(cat["l2"].max()) if cat["l2"].size else 0.0, points_attacked=attacked,
        attack_name=name, cumulative=bool(only_robust),
        components=[dict(c) for c in entry.get("components", [])],
        forward_count=int(entry.get("forward_count", -1)),
        backward_count=int(entry.get("backward_count", -1)))


def add_components(entry, records, label) -> None:
    """Adds one batch's per-member records of an ensemble (``attack.last_run``: AutoAttack's) to
    ``entry["components"]``, which the resumable state saves with the entry."""
    if not records:
        return
    totals = entry.setdefault("components", [])
    if not totals:
        totals.extend({"attack": str(r["attack"]), "attacked": 0, "fooled": 0, "seconds": 0.0,
                       "forward": 0, "backward": 0} for r in records)
    if [t["attack"] for t in totals] != [str(r["attack"]) for r in records]:
        raise ValueError(f"Attack {label!r} changed its members between batches. Received: "
                         f"{[r['attack'] for r in records]} after {[t['attack'] for t in totals]}.")
    for total, record in zip(totals, records):
        total["attacked"] += int(record["attacked"])
        total["fooled"] += int(record["fooled"])
        total["seconds"] += float(record["seconds"])
        for key in ("forward", "backward"):  # a resumed pre-counting entry has none
            total[key] = total.get(key, 0) + int(record.get(key, 0))


def _run_attack(model_fns, dataset, attack, label, entry, state, rng, mask, num_examples, progress,
                checked) -> bool:
    """Runs one attack over the batches not yet in ``entry``; updates ``entry`` and saves ``state``.

    ``model_fns``: the model (checked against the images) and what the attack runs against (the
    same, or its passes sharded over replicas). The attack's passes and the final prediction's
    are counted in ``attacked_fn`` (:meth:`tfadv.attacks.base.Attack.counted`)."""
    model_fn, attacked_fn = model_fns
    attacked_fn = attack.counted(attacked_fn) if hasattr(attack, "counted") else attacked_fn
    counter = getattr(attacked_fn, "counter", None)
    for key in ("forward_count", "backward_count"):
        entry.setdefault(key, 0 if entry["batches"] == 0 else -1)  # -1: resumed, not counted

    def run(x, y):
        x_adv = attack(attacked_fn, x, y)
        pred = tf.argmax(attacked_fn(x_adv), axis=-1, output_type=tf.int32)
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
            # The attacks' batch check (one validator): images outside the range or bad labels
            # stop the run with the offending values; a softmax output is warned about.
            checks.validate_batch(x, y, lambda: model_fn(x[:1]), rng)
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
        before = counter.totals() if counter is not None else (0, 0)
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
                add_components(entry, getattr(attack, "last_run", None), label)
            c, d, e, a, o = (t.numpy() for t in outs)
            correct[sel], linf[sel], l2[sel], nans[sel], oor[sel] = c, d, e, a, o
        for name, value in zip(State.ARRAYS, (correct, linf, l2, nans, oor)):
            entry[name].append(value)
        entry["batches"] = batch + 1
        entry["examples"] = seen
        entry["points_attacked"] += count
        after = counter.totals() if counter is not None else (-1, -1)
        for key, b, a in zip(("forward_count", "backward_count"), before, after):
            if entry[key] >= 0:
                entry[key] = entry[key] + a - b if a >= 0 else -1
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
