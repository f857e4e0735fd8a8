"""Choose the grader for a row: explicit ``extra_info["answer_type"]``, else inferred.

Inference order when no type is given: options present -> multiple_choice; a ChartQA data
source -> chartqa; every gold is yes/no -> yes_no; every gold is a single option letter ->
multiple_choice (letter-only); otherwise math. The dataset builders always write the type
explicitly, so inference only matters for hand-made or third-party parquet files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from care_verl.verifier.graders import ANSWER_TYPES

__all__ = ["resolve_answer_type", "canonical_answer_type"]

_ALIASES = {
    "mc": "multiple_choice",
    "mcq": "multiple_choice",
    "choice": "multiple_choice",
    "multiple-choice": "multiple_choice",
    "multi_choice": "multiple_choice",
    "yesno": "yes_no",
    "yes/no": "yes_no",
    "bool": "yes_no",
    "boolean": "yes_no",
    "number": "numeric",
    "int": "numeric",
    "float": "numeric",
    "integer": "numeric",
    "relaxed": "chartqa",
    "text": "exact",
    "string": "exact",
    "free_form": "math",
    "expression": "math",
}
_LETTER = re.compile(r"^\(?[A-Z]\)?\.?$")


def canonical_answer_type(name: str) -> str:
    """Map a type name or alias to one of `ANSWER_TYPES`; raise ValueError if unknown."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in ANSWER_TYPES:
        raise ValueError(f"unknown answer_type {name!r}; expected one of {ANSWER_TYPES} or an alias")
    return key


def resolve_answer_type(
    data_source: str, golds: Sequence[str], answer_type: str | None, choices: Sequence[str] | None
) -> str:
    """The answer type for one row (see module docstring)."""
    if answer_type:
        return canonical_answer_type(answer_type)
    if choices:
        return "multiple_choice"
    if "chartqa" in data_source.lower():
        return "chartqa"
    stripped = [g.strip() for g in golds if g.strip()]
    if stripped and all(g.lower().rstrip(".") in ("yes", "no") for g in stripped):
        return "yes_no"
    if stripped and all(_LETTER.match(g) for g in stripped):
        return "multiple_choice"
    return "math"
