"""Robustness evaluation: attack specs, the runner (pointwise worst case) and reports."""

from tfadv.evaluation.report import details_table, markdown_table, write
from tfadv.evaluation.runner import AttackResult, EvaluationResult, evaluate
from tfadv.evaluation.specs import AttackSpec, parse, parse_list

__all__ = ["AttackResult", "AttackSpec", "EvaluationResult", "details_table", "evaluate",
           "markdown_table", "parse", "parse_list", "write"]
