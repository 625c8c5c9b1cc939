"""Robustness reports: a paper-style Markdown table, a details table and a JSON model card.

The JSON file has the shape of a RobustBench model card (``dataset``, ``threat_model``, ``eps``,
``architecture``, ``clean_acc``, ``robust_acc``, ``autoattack_acc``; accuracies in percent) plus
``attacks`` (per-attack numbers) and ``additional`` (everything else: pixel range, split, the
attack parameters, how the run was made). ``accuracy`` and ``num_examples`` are kept at the top
level for tfadv's own tools. Files are written atomically.

An ensemble (AutoAttack) also reports the robust accuracy after each of its components, cumulative
(robust to it and every component before it), as fra31/auto-attack prints it ("robust accuracy
after APGD-CE: ..."): :func:`component_accuracies`, a list under the Markdown table and
``attacks[LABEL]["components"]`` in the JSON.

:func:`check_writable` refuses a directory that cannot take the reports before any work is done;
:func:`existing_report` says what a directory's reports already are (their ``evaluation_id``), so
that a caller never replaces another run's reports without saying so.
"""

from __future__ import annotations

import json
import os
from typing import List, Optional, Tuple

import tensorflow as tf

from tfadv import atomic
from tfadv.evaluation.runner import AttackResult, EvaluationResult
from tfadv.evaluation.specs import DISPLAY_NAMES

CARD_KEYS = ("dataset", "threat_model", "eps", "architecture")


def markdown_table(result: EvaluationResult, *, row: str = "model") -> str:
    """A table like the papers': one ``Acc.(%)`` column per attack plus the pointwise worst case."""
    acc = result.accuracies()
    header = "| Acc.(%) | " + " | ".join(acc) + " |"
    sep = "|---|" + "---|" * len(acc)
    line = f"| {row} | " + " | ".join(f"{100 * v:.2f}" for v in acc.values()) + " |"
    table = "\n".join([header, sep, line])
    if result.only_robust and len(result.results) > 1:
        table += ("\n\nEach attack ran only on the points still robust under the previous ones: its "
                  "column is the robust accuracy under it and every attack to its left.")
    for r in result.results.values():
        if r.components:
            table += "\n\n" + components_text(r)
    return table


def component_accuracies(r: AttackResult) -> List[dict]:
    """An ensemble's robust accuracy after each component, cumulative, over all its examples.

    The first row is the ensemble's ``initial`` accuracy (the points it found correctly classified,
    out of the points it was given: under ``only_robust`` those still robust to the previous
    attacks), then one row per member: ``accuracy`` = (points the member attacked - points it
    fooled) / examples, i.e. robust to it and every member before it; ``seconds`` is the time
    spent up to and including that member. Empty for an attack without components.
    """
    if not r.components or not r.correct.size:
        return []
    n = float(r.correct.size)
    rows = [{"component": "initial", "attack": "initial",
             "accuracy": r.components[0]["attacked"] / n, "seconds": 0.0}]
    seconds = 0.0
    for c in r.components:
        seconds += float(c["seconds"])
        rows.append({"component": DISPLAY_NAMES.get(c["attack"], c["attack"]),
                     "attack": c["attack"], "accuracy": (c["attacked"] - c["fooled"]) / n,
                     "seconds": seconds})
    return rows


def components_text(r: AttackResult) -> str:
    """fra31/auto-attack's lines for an ensemble: the initial accuracy, then "robust accuracy
    after X: P% (total time T s)" per component, cumulative."""
    rows = component_accuracies(r)
    if not rows:
        return ""
    before = "component and attack" if r.cumulative else "component"
    lines = [f"{r.label}, robust accuracy after each component (cumulative: robust to it and to "
             f"every {before} before it):",
             "", f"- initial accuracy: {100 * rows[0]['accuracy']:.2f}%"]
    lines += [f"- robust accuracy after {row['component']}: {100 * row['accuracy']:.2f}% "
              f"(total time {row['seconds']:.1f} s{_passes_text(c)})"
              for row, c in zip(rows[1:], r.components)]
    return "\n".join(lines)


def _passes_text(component: dict) -> str:
    """``, F forward / B backward passes`` of a component that counted them, else ``""``."""
    if "forward" not in component:
        return ""
    return f"; {component['forward']} forward / {component['backward']} backward passes"


def _count(value: int) -> str:
    return "n/a" if value < 0 else str(value)


def details_table(result: EvaluationResult, *, pixel_levels: Optional[float] = None) -> str:
    """Per-attack time, forward passes (upper bound), points attacked, largest perturbation,
    NaN/range checks and the passes counted in the model callable (forward, backward).

    ``pixel_levels`` is accepted for compatibility and unused: sizes are shown in input units.
    """
    rows = ["| attack | acc.(%) | time (s) | forward passes (budget bound) | points attacked "
            "| max Linf (input units) | max L2 (input units) | NaN | out of range "
            "| forward (counted) | backward (counted) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result.results.values():
        attacked = r.points_attacked if r.points_attacked >= 0 else r.correct.size
        rows.append(f"| {r.label} | {100 * r.accuracy:.2f} | {r.seconds:.1f} | {r.forward_passes} | "
                    f"{attacked} | {r.max_linf:.5f} | {r.max_l2:.5f} | {r.nan_count} | "
                    f"{r.out_of_range} | {_count(r.forward_count)} | {_count(r.backward_count)} |")
    return "\n".join(rows)


def _pct(value) -> Optional[float]:
    return None if value is None else round(100 * float(value), 2)


def autoattack_accuracy(result: EvaluationResult):
    """``(accuracy, exact)`` of the AutoAttack row, or ``(None, False)`` when none ran.

    The row is exact when it is AutoAttack's own accuracy: the run did not use ``only_robust``, or
    only clean passes ran before it. Otherwise it is a lower bound (robust to everything before too).
    """
    previous_attacks = False
    for r in result.results.values():
        if r.attack_name == "autoattack":
            return r.accuracy, not (r.cumulative and previous_attacks)
        if r.attack_name not in ("noop", "clean", "none"):
            previous_attacks = True
    return None, False


def to_json(result: EvaluationResult, *, metadata: dict) -> dict:
    """The model card: RobustBench's keys, ``attacks``, ``additional`` and tfadv's ``accuracy``."""
    meta = dict(metadata)
    params = meta.pop("attacks", {}) or {}
    acc = result.accuracies()
    clean = next((r for r in result.results.values() if r.attack_name in ("noop", "clean")), None)
    if clean is None:
        clean = result.results.get("clean")
    attacked = [r for r in result.results.values() if r is not clean]
    aa, aa_exact = autoattack_accuracy(result)
    eps = meta.pop("eps", None)
    if eps is None and meta.get("eps_pixels") is not None:
        eps = float(meta["eps_pixels"]) / 255.0  # RobustBench's eps: a fraction of the [0,1] range
    card = {
        "dataset": meta.pop("dataset", None),
        "threat_model": meta.pop("threat_model", "Linf"),
        "eps": eps,
        "architecture": meta.pop("architecture", None),
        "clean_acc": _pct(clean.accuracy) if clean is not None else None,
        "robust_acc": _pct(result.worst_case.mean()) if attacked else None,
        "autoattack_acc": _pct(aa) if aa is not None and aa_exact else None,
    }
    additional = dict(meta)
    if aa is not None and not aa_exact:
        additional["autoattack_lower_bound"] = _pct(aa)
    additional["only_robust"] = result.only_robust
    card.update({
        "attacks": {r.label: {"accuracy": round(100 * r.accuracy, 4), "seconds": round(r.seconds, 3),
                              "forward_passes": r.forward_passes, "points_attacked": r.points_attacked,
                              "forward_count": r.forward_count, "backward_count": r.backward_count,
                              "max_linf": r.max_linf, "max_l2": r.max_l2, "nan_count": r.nan_count,
                              "out_of_range": r.out_of_range, "attack": r.attack_name,
                              "cumulative": r.cumulative, "params": params.get(r.label, {}),
                              **_components_json(r)}
                    for r in result.results.values()},
        "additional": additional,
        "num_examples": result.num_examples,
        "accuracy": {k: round(100 * v, 4) for k, v in acc.items()},
    })
    return card


def _components_json(r: AttackResult) -> dict:
    """``{"components": [...]}`` (accuracies in percent, cumulative) for an ensemble, else ``{}``."""
    rows = component_accuracies(r)
    counts = [{}] + [{k: c[k] for k in ("attacked", "fooled", "forward", "backward") if k in c}
                     for c in r.components]
    return {"components": [
        {"component": row["component"], "attack": row["attack"], "robust_acc": _pct(row["accuracy"]),
         "seconds": round(row["seconds"], 3), **count}
        for row, count in zip(rows, counts)]} if rows else {}


def write_tensorboard(result: EvaluationResult, directory: str, *, row: str = "model") -> None:
    """The tables as a TensorBoard text summary (the runner writes the scalars)."""
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
        tf.summary.text("robustness/table", markdown_table(result, row=row), step=0)
        tf.summary.text("robustness/details", details_table(result), step=0)
        tf.summary.scalar("robustness/worst_case", float(result.worst_case.mean())
                          if result.results else float("nan"), step=0)
    writer.flush()
    writer.close()


def write(result: EvaluationResult, directory: str, *, metadata: dict, row: str = "model",
          stem: str = "robustness", tensorboard_dir: Optional[str] = None) -> dict:
    """Writes DIRECTORY/STEM.md and DIRECTORY/STEM.json atomically; returns the JSON object."""
    os.makedirs(directory, exist_ok=True)
    obj = to_json(result, metadata=metadata)
    atomic.write_text(os.path.join(directory, f"{stem}.md"),
                      markdown_table(result, row=row) + "\n\n" + details_table(result) + "\n")
    atomic.write_json(os.path.join(directory, f"{stem}.json"), obj)
    if tensorboard_dir:
        write_tensorboard(result, tensorboard_dir, row=row)
    return obj


def check_writable(directory: str) -> None:
    """Raises ValueError naming ``directory`` when files cannot be written there.

    Creates the missing directories, writes and removes a probe file atomically, then removes the
    directories it created: the file system is left as it was.
    """
    directory = os.path.abspath(directory)
    missing = []
    parent = directory
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        missing.append(parent)
        parent = os.path.dirname(parent)
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, ".write-probe")
        atomic.write_text(probe, "probe\n")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"Cannot write reports to this directory ({type(e).__name__}: "
                         f"{e.strerror or e}). Received: {directory!r}.") from None
    finally:
        for path in missing:  # deepest first
            if os.path.isdir(path):
                os.rmdir(path)


def existing_report(directory: str, *, stem: str = "robustness") -> Tuple[List[str], Optional[str]]:
    """``(paths, evaluation_id)``: the DIRECTORY/STEM.{md,json} that exist and the
    ``additional.evaluation_id`` their JSON records (None when absent or unreadable)."""
    paths = [os.path.join(directory, f"{stem}.{ext}") for ext in ("md", "json")]
    paths = [p for p in paths if os.path.exists(p)]
    try:
        with open(os.path.join(directory, f"{stem}.json"), encoding="utf-8") as f:
            additional = json.load(f).get("additional") or {}
        evaluation_id = additional.get("evaluation_id")
    except (OSError, ValueError, AttributeError):
        evaluation_id = None
    return paths, evaluation_id
