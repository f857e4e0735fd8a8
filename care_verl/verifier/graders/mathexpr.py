"""Mathematical answers ("math"): cheap exact checks first, then math-verify.

`grade_math_fast` settles plain cases in microseconds (identical text, or two plain numbers);
it returns None when a symbolic comparison is needed. `grade_math` then runs math-verify with
its signal-based timeouts disabled (they fail off the main thread, see verl PR 5635 and
Math-Verify issues 50/55); the caller bounds its run time instead, by running it in a
`care_verl.verifier.pool` worker process that is killed on timeout.

Percentages: math-verify reads "50\\%" as 50. We additionally accept the value as a fraction of
one, both ways: gold "50%" matches "0.5" and "1/2"; prediction "50%" matches gold "0.5".
"""

from __future__ import annotations

import logging
from typing import Any

from care_verl.verifier.graders.numeric import numbers_match
from care_verl.verifier.normalize import canonical_unicode, strip_latex
from care_verl.verifier.numeric import parse_number

__all__ = ["grade_math_fast", "grade_math"]


def _squash(text: str) -> str:
    # Case is kept: in math "N" and "n", or "\Delta" and "\delta", are different answers.
    return strip_latex(canonical_unicode(text)).rstrip(".").replace(" ", "")


def grade_math_fast(pred: str, gold: str) -> bool | None:
    """Decide the easy cases without sympy: True/False, or None if math-verify is needed."""
    gold_squashed = _squash(gold)
    if gold_squashed and _squash(pred) == gold_squashed:
        return True
    # Units are stripped from the prediction only: a gold such as "5x" is an expression.
    gold_num = parse_number(gold, allow_units=False)
    pred_num = parse_number(pred)
    if gold_num is not None and pred_num is not None:
        return numbers_match(pred_num, gold_num)
    return None


def _math_verify() -> tuple[Any, Any]:
    """Import math-verify lazily (heavy: sympy + ANTLR) and quieten its per-call warnings."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return parse, verify


def _parse(text: str) -> list[Any]:
    parse, _ = _math_verify()
    # Python-style powers ("x**2") are not LaTeX; math-verify would keep them as raw strings.
    text = canonical_unicode(text).strip().replace("**", "^")
    # A bare expression is wrapped in $...$ so the LaTeX extractor sees all of it.
    candidates = [text] if ("$" in text or "\\boxed" in text) else [f"${text}$", text]
    fallback: list[Any] = []
    for candidate in candidates:
        parsed = parse(candidate, parsing_timeout=None)
        if any(not isinstance(item, str) for item in parsed):
            return parsed  # got a sympy object
        fallback = fallback or parsed  # only the raw string matched; keep looking
    return fallback


def _verify(gold: list[Any], pred: list[Any]) -> bool:
    _, verify = _math_verify()
    return bool(gold) and bool(pred) and bool(verify(gold, pred, allow_set_relation_comp=True, timeout_seconds=None))


def grade_math(pred: str, gold: str) -> bool:
    """Full comparison: fast path, then math-verify (sets, intervals, LaTeX, units, equations)."""
    fast = grade_math_fast(pred, gold)
    if fast is not None:
        return fast
    gold_parsed, pred_parsed = _parse(gold), _parse(pred)
    if _verify(gold_parsed, pred_parsed):
        return True
    return _percent_alternatives(pred, gold, pred_parsed, gold_parsed)


def _percent_alternatives(pred: str, gold: str, pred_parsed: list[Any], gold_parsed: list[Any]) -> bool:
    """Retry with a percentage read as a fraction of one (see module docstring)."""
    gold_num = parse_number(gold)
    if gold_num is not None and gold_num.percent:
        value = gold_num.as_fraction_of_one
        if _verify(_parse(f"\\frac{{{value.numerator}}}{{{value.denominator}}}"), pred_parsed):
            return True
    pred_num = parse_number(pred)
    if pred_num is not None and pred_num.percent:
        value = pred_num.as_fraction_of_one
        if _verify(gold_parsed, _parse(f"\\frac{{{value.numerator}}}{{{value.denominator}}}")):
            return True
    return False
