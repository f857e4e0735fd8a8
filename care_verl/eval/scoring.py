"""Score responses against items with the training verifier: extract, check parseability, grade.

Extraction is the reward's (`care_verl.verifier.parsing.parse_response`): the last
``<answer>`` block after ``</think>`` (its ``\\boxed{}`` if any), else the last ``\\boxed{}``.
There is no random fallback. A response is *unparseable*, and wrong, when:

* no answer can be extracted (no answer tags, no box, or reasoning never closed);
* multiple choice: the answer designates no single option (neither a letter in range nor
  exactly one option's text);
* numeric: the answer holds no single number.

Parseable answers are graded by `care_verl.verifier.score_requests` (multiple choice by
letter or option text, numbers with a relative tolerance, everything else with math-verify
in a time-bounded worker). MathVista floats with a ``precision`` are rounded to that many
decimals first, as lmms-eval does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from care_verl.eval.items import EvalItem
from care_verl.verifier import make_request, parse_response, score_requests
from care_verl.verifier.graders.choice import LETTERS, resolve_choice
from care_verl.verifier.graders.numeric import extract_single_number
from care_verl.verifier.normalize import MAX_ANSWER_CHARS
from care_verl.verifier.numeric import parse_number
from care_verl.verifier.pool import VerifierPool

__all__ = ["Verdict", "score_items"]


@dataclass(frozen=True)
class Verdict:
    """The outcome for one response.

    Attributes:
        extracted: The extracted final answer (None when nothing could be extracted).
        parse_ok: Whether the answer could be read as an answer of the item's type.
        correct: Whether it matches a gold answer (always False when not parse_ok).
        format_ok: Whether the response follows the think/answer format exactly.
        verifier_timeout, verifier_error: The math verifier timed out / failed (then wrong).
    """

    extracted: str | None
    parse_ok: bool
    correct: bool
    format_ok: bool
    verifier_timeout: bool = False
    verifier_error: bool = False


def _parseable(item: EvalItem, answer: str) -> bool:
    spec = item.spec
    if spec.answer_type == "multiple_choice":
        n_letters = len(spec.choices) or len(LETTERS)
        return len(resolve_choice(answer, list(spec.choices), n_letters)) == 1
    if spec.answer_type == "numeric":
        return extract_single_number(answer) is not None
    return bool(answer.strip())


def _rounded_match(item: EvalItem, answer: str) -> bool:
    """Numeric match after rounding both sides to ``precision`` decimals (MathVista floats)."""
    pred = extract_single_number(answer)
    if pred is None:
        return False
    digits = item.spec.precision
    for gold in item.golds:
        parsed = parse_number(gold)
        if parsed is not None and round(float(pred.value), digits) == round(float(parsed.value), digits):
            return True
    return False


def score_items(
    items: Sequence[EvalItem],
    responses: Sequence[str],
    timeout_s: float | None = None,
    pool: VerifierPool | None = None,
) -> list[Verdict]:
    """One `Verdict` per (item, response) pair, in order."""
    if len(items) != len(responses):
        raise ValueError(f"{len(items)} items but {len(responses)} responses")
    parsed = [parse_response(response) for response in responses]
    answers = [p.answer if p.answer and len(p.answer) <= MAX_ANSWER_CHARS else None for p in parsed]
    parse_ok = [a is not None and _parseable(item, a) for item, a in zip(items, answers)]

    verdicts: list[Verdict | None] = [None] * len(items)
    pending: list[int] = []
    for i, item in enumerate(items):
        if not parse_ok[i]:
            verdicts[i] = Verdict(answers[i], False, False, parsed[i].format_ok)
        elif item.spec.precision is not None and item.spec.answer_type == "numeric":
            verdicts[i] = Verdict(answers[i], True, _rounded_match(item, answers[i]), parsed[i].format_ok)
        else:
            pending.append(i)

    requests = [
        make_request(
            f"care_eval/{items[i].benchmark}",
            responses[i],
            list(items[i].golds),
            {"answer_type": items[i].spec.answer_type, "choices": list(items[i].spec.choices)},
            format_weight=0.0,
        )
        for i in pending
    ]
    results, _ = score_requests(requests, pool=pool, timeout_s=timeout_s) if requests else ([], {})
    for i, result in zip(pending, results):
        verdicts[i] = Verdict(
            extracted=answers[i],
            parse_ok=True,
            correct=result["acc"] == 1.0,
            format_ok=parsed[i].format_ok,
            verifier_timeout=bool(result["verifier_timeout"]),
            verifier_error=bool(result["verifier_error"]),
        )
    return [v for v in verdicts if v is not None]
