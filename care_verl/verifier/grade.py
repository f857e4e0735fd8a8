"""Grade one `GradeRequest` into verl's reward dict.

The returned dict always has the same keys (verl stores every key per row):

* ``score``: ``acc + format_weight * format``
* ``acc``: 1.0 if the extracted answer matches a gold, else 0.0 (the only correctness signal)
* ``format``: 1.0 if the response follows the think/answer format, else 0.0
* ``pred``: the normalised extracted answer (<= 200 chars; verl uses it for maj@N voting)
* ``answer_type``: the grader used
* ``verifier_timeout`` / ``verifier_error``: 1 if grading timed out / failed (then acc is 0)
"""

from __future__ import annotations

from typing import Any

from care_verl.verifier.answer_types import resolve_answer_type
from care_verl.verifier.graders import grade_answer
from care_verl.verifier.normalize import normalize_text
from care_verl.verifier.parsing import parse_response
from care_verl.verifier.request import GradeRequest

__all__ = ["grade_request", "grade_item", "failure_result", "RESULT_KEYS"]

RESULT_KEYS = ("score", "acc", "format", "pred", "answer_type", "verifier_timeout", "verifier_error")
_PRED_CHARS = 200


def _result(req: GradeRequest, acc: bool, fmt: bool, pred: str, answer_type: str, timeout: bool, error: bool) -> dict[str, Any]:
    acc_f, fmt_f = float(bool(acc)), float(bool(fmt))
    return {
        "score": acc_f + req.format_weight * fmt_f,
        "acc": acc_f,
        "format": fmt_f,
        "pred": pred,
        "answer_type": answer_type,
        "verifier_timeout": int(timeout),
        "verifier_error": int(error),
    }


def _answer_type_or_unknown(req: GradeRequest) -> str:
    try:
        return resolve_answer_type(req.data_source, req.golds, req.answer_type, req.choices)
    except ValueError:
        return "unknown"


def grade_request(req: GradeRequest, slow: bool = True) -> dict[str, Any] | None:
    """Grade `req`. With ``slow=False`` returns None when math-verify would be needed.

    Raises only on bad input (e.g. an unknown answer type), which callers count as an error.
    """
    answer_type = resolve_answer_type(req.data_source, req.golds, req.answer_type, req.choices)
    parsed = parse_response(req.solution_str, req.tags)
    pred = parsed.answer
    if pred is None or not req.golds or len(pred) > req.max_answer_chars:
        pred_repr = "" if pred is None else normalize_text(pred[: req.max_answer_chars])[:_PRED_CHARS]
        return _result(req, False, parsed.format_ok, pred_repr, answer_type, False, False)
    verdict = grade_answer(answer_type, pred, req.golds, req.choices, slow=slow)
    if verdict is None:
        return None
    return _result(req, verdict, parsed.format_ok, normalize_text(pred)[:_PRED_CHARS], answer_type, False, False)


def grade_item(req: GradeRequest) -> dict[str, Any]:
    """Full grading (math-verify included); the default grader run by pool workers.

    Bad input (an unknown answer type) gives an error result rather than an exception, so the
    worker is not recycled for a configuration mistake.
    """
    try:
        result = grade_request(req, slow=True)
    except ValueError:
        return failure_result(req, error=True)
    assert result is not None  # slow grading always decides
    return result


def failure_result(req: GradeRequest, timeout: bool = False, error: bool = False) -> dict[str, Any]:
    """acc 0 after a timeout/crash/error; format is still judged (parsing is cheap and safe)."""
    try:
        parsed = parse_response(req.solution_str, req.tags)
        fmt, pred = parsed.format_ok, parsed.answer or ""
    except Exception:  # noqa: BLE001 - a failure result must always be producible
        fmt, pred = False, ""
    pred_repr = normalize_text(pred[: req.max_answer_chars])[:_PRED_CHARS] if pred else ""
    return _result(req, False, fmt, pred_repr, _answer_type_or_unknown(req), timeout, error)
