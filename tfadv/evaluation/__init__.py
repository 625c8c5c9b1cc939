"""Robustness evaluation: attack specs and suites, the runner (pointwise worst case, only-robust
mode, resume, TensorBoard), reports (Markdown, RobustBench-style JSON), gradient-masking
diagnostics and the papers' analyses (gradient magnitudes, FOSC, sweeps); the one-call model card
(``tfadv.benchmark``: :mod:`tfadv.evaluation.benchmark`, :class:`ModelCard`)."""

from tfadv.evaluation.card import ModelCard
from tfadv.evaluation.diagnostics import Diagnostic, DiagnosticsReport, run_diagnostics
from tfadv.evaluation.report import details_table, markdown_table, to_json, write
from tfadv.evaluation.runner import AttackResult, EvaluationResult, evaluate
from tfadv.evaluation.specs import SUITES, AttackSpec, parse, parse_list, parse_suite

__all__ = ["AttackResult", "AttackSpec", "Diagnostic", "DiagnosticsReport", "EvaluationResult", "ModelCard",
           "SUITES", "details_table", "evaluate", "markdown_table", "parse", "parse_list", "parse_suite",
           "run_diagnostics", "to_json", "write"]
