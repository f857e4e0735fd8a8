"""One grader per answer type; `grade_answer` dispatches on the type name.

Answer types: "math", "numeric", "multiple_choice", "yes_no", "chartqa", "exact".
Each grader compares one prediction with one gold answer; `grade_answer` accepts several
golds and succeeds if any matches.
"""

from __future__ import annotations

from collections.abc import Sequence

from care_verl.verifier.graders.chartqa import grade_chartqa
from care_verl.verifier.graders.choice import grade_choice
from care_verl.verifier.graders.mathexpr import grade_math, grade_math_fast
from care_verl.verifier.graders.numeric import grade_numeric
from care_verl.verifier.graders.text import grade_exact
from care_verl.verifier.graders.yesno import grade_yes_no

__all__ = ["ANSWER_TYPES", "grade_answer", "needs_slow_grader"]

ANSWER_TYPES = ("math", "numeric", "multiple_choice", "yes_no", "chartqa", "exact")


def _grade_one(answer_type: str, pred: str, gold: str, choices: Sequence[str] | None, slow: bool) -> bool | None:
    if answer_type == "numeric":
        return grade_numeric(pred, gold)
    if answer_type == "multiple_choice":
        return grade_choice(pred, gold, choices)
    if answer_type == "yes_no":
        return grade_yes_no(pred, gold)
    if answer_type == "chartqa":
        return grade_chartqa(pred, gold)
    if answer_type == "exact":
        return grade_exact(pred, gold)
    if answer_type == "math":
        return grade_math(pred, gold) if slow else grade_math_fast(pred, gold)
    raise ValueError(f"unknown answer_type {answer_type!r}; expected one of {ANSWER_TYPES}")


def grade_answer(
    answer_type: str, pred: str, golds: Sequence[str], choices: Sequence[str] | None = None, slow: bool = True
) -> bool | None:
    """True if `pred` matches any gold. With ``slow=False`` may return None (undecided)."""
    undecided = False
    for gold in golds:
        verdict = _grade_one(answer_type, pred, gold, choices, slow)
        if verdict is True:
            return True
        if verdict is None:
            undecided = True
    return None if undecided else False


def needs_slow_grader(answer_type: str) -> bool:
    """Whether this type may need math-verify (and hence a time-bounded worker process)."""
    return answer_type == "math"
