"""Robustness reports: a paper-style Markdown table and a JSON file, written atomically."""

from __future__ import annotations

import os
from typing import Optional

from tfadv import atomic
from tfadv.evaluation.runner import EvaluationResult


def markdown_table(result: EvaluationResult, *, row: str = "model") -> str:
    """A table like the papers': one ``Acc.(%)`` column per attack plus the pointwise worst case."""
    acc = result.accuracies()
    header = "| Acc.(%) | " + " | ".join(acc) + " |"
    sep = "|---|" + "---|" * len(acc)
    line = f"| {row} | " + " | ".join(f"{100 * v:.2f}" for v in acc.values()) + " |"
    return "\n".join([header, sep, line])


def details_table(result: EvaluationResult, *, pixel_levels: Optional[float] = None) -> str:
    """Per-attack time, forward passes, largest perturbation and NaN/range checks."""
    rows = ["| attack | acc.(%) | time (s) | forward passes | max Linf (input units) | NaN | out of range |",
            "|---|---|---|---|---|---|---|"]
    for r in result.results.values():
        rows.append(f"| {r.label} | {100 * r.accuracy:.2f} | {r.seconds:.1f} | {r.forward_passes} | "
                    f"{r.max_linf:.5f} | {r.nan_count} | {r.out_of_range} |")
    return "\n".join(rows)


def to_json(result: EvaluationResult, *, metadata: dict) -> dict:
    return {
        **metadata,
        "num_examples": result.num_examples,
        "accuracy": {k: round(100 * v, 4) for k, v in result.accuracies().items()},
        "attacks": {r.label: {"accuracy": round(100 * r.accuracy, 4), "seconds": round(r.seconds, 3),
                              "forward_passes": r.forward_passes, "max_linf": r.max_linf,
                              "nan_count": r.nan_count, "out_of_range": r.out_of_range}
                    for r in result.results.values()},
    }


def write(result: EvaluationResult, directory: str, *, metadata: dict, row: str = "model",
          stem: str = "robustness") -> dict:
    """Writes DIRECTORY/STEM.md and DIRECTORY/STEM.json atomically; returns the JSON object."""
    os.makedirs(directory, exist_ok=True)
    obj = to_json(result, metadata=metadata)
    atomic.write_text(os.path.join(directory, f"{stem}.md"),
                      markdown_table(result, row=row) + "\n\n" + details_table(result) + "\n")
    atomic.write_json(os.path.join(directory, f"{stem}.json"), obj)
    return obj
