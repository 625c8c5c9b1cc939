"""The model card of :func:`tfadv.benchmark`: one evaluation's numbers, as Python values, Markdown
and JSON (RobustBench's keys, as :func:`tfadv.evaluation.report.to_json` writes them, plus the
per-example robustness mask, the wall time and the forward passes).

Accuracies are fractions in Python (``card.clean_accuracy == 0.91``, as RobustBench's
``benchmark`` returns them) and percent in the JSON (``"clean_acc": 91.0``, as RobustBench's model
cards write them).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import numpy as np

from tfadv import atomic
from tfadv.evaluation import report as report_lib
from tfadv.evaluation.runner import EvaluationResult

#: The card's files: DIRECTORY/model_card.md and DIRECTORY/model_card.json.
CARD_STEM = "model_card"


@dataclasses.dataclass
class ModelCard:
    """What :func:`tfadv.benchmark` returns.

    Attributes:
        result: the runner's :class:`~tfadv.evaluation.runner.EvaluationResult`.
        metadata: what the report records besides the numbers (dataset, threat model, eps in pixel
            levels, pixel range, suite, attack parameters, seed, ...).
        name: the model's row in the table.
        seconds: wall time of the evaluation (all attacks, the clean pass included).
    """

    result: EvaluationResult
    metadata: dict
    name: str
    seconds: float

    @property
    def num_examples(self) -> int:
        return int(self.result.num_examples)

    @property
    def robust_mask(self) -> np.ndarray:
        """Per example (in the data's order): True when the clean input and every attack left it
        correctly classified (the pointwise worst case)."""
        return np.asarray(self.result.worst_case, bool)

    @property
    def clean_accuracy(self) -> Optional[float]:
        clean = _clean_result(self.result)
        return None if clean is None else clean.accuracy

    @property
    def robust_accuracy(self) -> float:
        """The worst case over the clean pass and every attack: ``mean(robust_mask)``."""
        return float(self.robust_mask.mean()) if self.robust_mask.size else float("nan")

    @property
    def attack_accuracy(self) -> Dict[str, float]:
        """Per attack label (the clean pass excluded); cumulative when the suite ran each attack
        only on the points still robust (``metadata["only_robust"]``)."""
        clean = _clean_result(self.result)
        return {label: r.accuracy for label, r in self.result.results.items() if r is not clean}

    @property
    def components(self) -> Dict[str, List[dict]]:
        """Per ensemble (AutoAttack), the robust accuracy after each component, cumulative
        (:func:`tfadv.evaluation.report.component_accuracies`)."""
        return {label: report_lib.component_accuracies(r) for label, r in self.result.results.items()
                if r.components}

    @property
    def forward_passes(self) -> int:
        """Model evaluations over all examples (forward, or forward and backward), summed over the
        attacks: each attack's upper bound per example times the points it attacked, as the runner
        records it (``AttackResult.forward_passes``)."""
        return int(sum(r.forward_passes for r in self.result.results.values()))

    @property
    def pass_counts(self) -> Dict[str, int]:
        """``{"forward": F, "backward": B}``: the passes counted in the model callable (issue 20),
        per example-pass, summed over the attacks; -1 where an attack's were not counted (a run
        resumed from a state file written before counting)."""
        rows = list(self.result.results.values())
        return {key: (-1 if any(getattr(r, f"{key}_count") < 0 for r in rows)
                      else int(sum(getattr(r, f"{key}_count") for r in rows)))
                for key in ("forward", "backward")}

    def to_json(self) -> dict:
        """The JSON card: :func:`tfadv.evaluation.report.to_json`'s object plus ``robust_mask``
        (0/1 per example), ``seconds`` and ``forward_passes``."""
        obj = report_lib.to_json(self.result, metadata=self.metadata)
        obj.update({"robust_mask": [int(v) for v in self.robust_mask], "seconds": round(self.seconds, 3),
                    "forward_passes": self.forward_passes, "pass_counts": self.pass_counts})
        return obj

    def markdown(self) -> str:
        """The paper-style table (with AutoAttack's per-component lines), then the details table."""
        meta = self.metadata
        counts = self.pass_counts
        head = (f"Model card: {self.name}, {meta.get('dataset')} ({self.num_examples} examples), "
                f"{meta.get('threat_model')} eps {meta.get('eps_input'):g} in {meta.get('pixel_range')} "
                f"({meta.get('eps_pixels'):g}/255 of the range), suite {meta.get('suite')}; "
                f"{self.seconds:.1f} s, {self.forward_passes} forward passes (upper bound); counted: "
                f"{counts['forward']} forward, {counts['backward']} backward passes.")
        return "\n\n".join([head, report_lib.markdown_table(self.result, row=self.name),
                            report_lib.details_table(self.result)]) + "\n"

    def write(self, directory: str, *, overwrite: bool = False) -> List[str]:
        """Writes DIRECTORY/model_card.md and .json atomically; returns their paths. A card already
        there is replaced only with ``overwrite=True`` (:func:`check_card_path` first)."""
        check_card_path(directory, overwrite=overwrite)
        os.makedirs(directory, exist_ok=True)
        paths = card_paths(directory)
        atomic.write_text(paths[0], self.markdown())
        atomic.write_json(paths[1], self.to_json())
        return paths


def card_paths(directory: str) -> List[str]:
    return [os.path.join(directory, f"{CARD_STEM}.{ext}") for ext in ("md", "json")]


def check_card_path(directory: str, *, overwrite: bool) -> None:
    """Refuses (ValueError) a directory that holds a card unless ``overwrite``, or that cannot be
    written to; leaves the file system as it was."""
    existing = [p for p in card_paths(directory) if os.path.exists(p)]
    if existing and not overwrite:
        raise ValueError(f"A model card is already there ({', '.join(existing)}); pass "
                         f"overwrite=True to replace it, or choose another out_dir. "
                         f"Received: out_dir={directory!r}.")
    report_lib.check_writable(directory)


def _clean_result(result: EvaluationResult):
    return next((r for r in result.results.values() if r.attack_name in ("noop", "clean")), None)
