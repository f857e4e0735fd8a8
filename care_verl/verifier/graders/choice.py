"""Multiple-choice answers: a letter ("B", "(B)", "B.", "Option B", "B. 12") or the option text.

Options are passed in order (``extra_info["choices"]``); option i has letter ``"ABC..."[i]``.
The gold may be a letter or an option's text. Without options, only letters can be compared.
A bare letter followed by more words ("A triangle") is read as a letter only when those words
are that option's text, so that prose starting with "A" is not mistaken for option A.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from care_verl.verifier.normalize import canonical_unicode, normalize_text, strip_latex
from care_verl.verifier.numeric import numbers_close, parse_number

__all__ = ["grade_choice", "resolve_choice", "LETTERS"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_PREFIX = re.compile(
    r"^(?:the\s+)?(?:correct\s+|final\s+)?(?:option|choice|answer)\s*(?:is\s*)?[:\-]?\s*", re.IGNORECASE
)
_BRACKETED = re.compile(r"^[\(\[]\s*([A-Za-z])\s*[\)\]]\s*[.:]?\s*(.*)$", re.DOTALL)
_SEPARATED = re.compile(r"^([A-Z])\s*[.:)]\s*(.*)$", re.DOTALL)
_BARE = re.compile(r"^([A-Za-z])(?:\s+(.*))?$", re.DOTALL)
_OPTION_LABEL = re.compile(r"^\(?([A-Z])\)?\s*[.:)]\s+")


def _option_texts(choices: Sequence[str]) -> list[str]:
    """Option texts with any leading "A." label (matching its position) removed."""
    texts = []
    for i, raw in enumerate(choices):
        text = str(raw).strip()
        match = _OPTION_LABEL.match(text)
        if match and i < len(LETTERS) and match.group(1) == LETTERS[i]:
            text = text[match.end() :]
        texts.append(text)
    return texts


def _same_text(a: str, b: str) -> bool:
    norm_a, norm_b = normalize_text(a), normalize_text(b)
    if norm_a and norm_a == norm_b:
        return True
    if norm_a.replace(" ", "") and norm_a.replace(" ", "") == norm_b.replace(" ", ""):
        return True
    num_a, num_b = parse_number(a), parse_number(b)
    return num_a is not None and num_b is not None and numbers_close(num_a.value, num_b.value)


def _matching_options(text: str, options: list[str]) -> set[int]:
    return {i for i, option in enumerate(options) if _same_text(text, option)}


def resolve_choice(answer: str, options: list[str], n_letters: int) -> set[int]:
    """Indices an answer designates: by letter form first, then by option text."""
    text = strip_latex(canonical_unicode(answer)).strip()
    text = _PREFIX.sub("", text, count=1).strip()
    for pattern, needs_text_check in ((_BRACKETED, False), (_SEPARATED, False), (_BARE, True)):
        match = pattern.match(text)
        if not match:
            continue
        index = LETTERS.find(match.group(1).upper())
        rest = (match.group(2) or "").strip().rstrip(".").strip()
        if index < 0 or index >= n_letters:
            break
        if pattern is _BARE and match.group(1).islower() and rest:
            break  # "a triangle": prose, not option a
        if needs_text_check and rest and not (index < len(options) and _same_text(rest, options[index])):
            break
        return {index}
    return _matching_options(text, options)


def grade_choice(pred: str, gold: str, choices: Sequence[str] | None) -> bool:
    """True when `pred` designates exactly the option that `gold` designates."""
    options = _option_texts(choices or [])
    n_letters = len(options) if options else len(LETTERS)
    gold_set = resolve_choice(gold, options, n_letters)
    if len(gold_set) != 1:
        # The gold names no single option (a data problem); fall back to exact text.
        gold_norm = normalize_text(gold)
        return bool(gold_norm) and normalize_text(pred) == gold_norm
    pred_set = resolve_choice(pred, options, n_letters)
    return pred_set == gold_set
