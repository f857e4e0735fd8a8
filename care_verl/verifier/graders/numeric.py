"""Plain numeric answers ("numeric"): one number, compared with a tiny relative tolerance.

Used by the synthetic tasks, whose ground truths are ints or floats. A percentage is compared
by its written number, and also by its value as a fraction of one ("50%" == "50" == "0.5").
"""

from __future__ import annotations

from care_verl.verifier.numeric import ParsedNumber, find_numbers, numbers_close, parse_number

__all__ = ["grade_numeric", "extract_single_number"]


def extract_single_number(text: str) -> ParsedNumber | None:
    """Parse `text` as a number; else the only number in it ("The answer is 12." -> 12)."""
    parsed = parse_number(text)
    if parsed is not None:
        return parsed
    found = find_numbers(text, limit=2)
    return found[0] if len(found) == 1 else None


def numbers_match(pred: ParsedNumber, gold: ParsedNumber) -> bool:
    """Equal within tolerance, reading a percentage either as written or divided by 100."""
    if numbers_close(pred.value, gold.value):
        return True
    if pred.percent != gold.percent:
        return numbers_close(pred.as_fraction_of_one, gold.as_fraction_of_one)
    return False


def grade_numeric(pred: str, gold: str) -> bool:
    """True when `pred` holds one number equal to `gold`'s (relative tolerance 1e-6)."""
    gold_num = parse_number(gold)
    pred_num = extract_single_number(pred)
    if gold_num is None or pred_num is None:
        return False
    return numbers_match(pred_num, gold_num)
