"""Yes/no answers: the leading word decides ("Yes, because ..." is yes; "true" counts as yes)."""

from __future__ import annotations

import re

from care_verl.verifier.normalize import normalize_text

__all__ = ["grade_yes_no", "to_yes_no"]

_YES = {"yes", "y", "true", "correct", "right"}
_NO = {"no", "n", "false", "incorrect", "wrong"}
_FIRST_WORD = re.compile(r"^[^a-z]*([a-z]+)")


def to_yes_no(text: str) -> str | None:
    """Map an answer to "yes"/"no" by its first word, or None if it is neither."""
    match = _FIRST_WORD.match(normalize_text(text))
    if not match:
        return None
    word = match.group(1)
    if word in _YES:
        return "yes"
    if word in _NO:
        return "no"
    return None


def grade_yes_no(pred: str, gold: str) -> bool:
    """True when both map to the same yes/no value."""
    gold_value = to_yes_no(gold)
    return gold_value is not None and to_yes_no(pred) == gold_value
