"""Parse a short answer string as one exact number, and compare numbers.

Numbers are parsed into `fractions.Fraction`, so decimal boundaries (e.g. ChartQA's 5 %)
are decided exactly, never by binary floating-point rounding. Digit counts are capped so that
a written-out huge integer cannot make parsing slow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from care_verl.verifier.normalize import canonical_unicode, strip_latex

__all__ = ["ParsedNumber", "parse_number", "numbers_close", "find_numbers"]

# More digits than this is not a number a grader should evaluate (and Python caps int() at 4300).
_MAX_DIGITS = 100

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?"
_PLAIN = re.compile(rf"^(?P<num>{_NUMBER})\s*(?P<pct>%)?$")
_FRAC_LATEX = re.compile(r"^(?P<sign>[-+]?)\\frac\s*\{\s*(?P<a>[-+]?\d+)\s*\}\s*\{\s*(?P<b>[-+]?\d+)\s*\}\s*(?P<pct>%)?$")
_FRAC_SLASH = re.compile(r"^(?P<a>[-+]?\d+)\s*/\s*(?P<b>[-+]?\d+)\s*(?P<pct>%)?$")
_ASSIGN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,10}\s*(?:=|\\approx|≈)\s*")
_APPROX = re.compile(r"^(?:\\approx|≈|~|about|approximately|approx\.?)\s*", re.IGNORECASE)
_CURRENCY = re.compile(r"^(?:[$€£¥]|usd|eur|rs\.?)\s*", re.IGNORECASE)
# Trailing unit words such as "cm", "square units", "km/h", "m^2"; at most three words.
_UNITS = re.compile(r"\s*(?:[A-Za-z]+(?:\s*(?:\^\s*\{?\d\}?|/[A-Za-z]+|²|³))?\.?\s*){1,3}$")
_MATH_WORDS = {"pi", "e", "i", "j", "sqrt", "log", "ln", "sin", "cos", "tan", "x", "y", "z", "n", "k", "t", "a", "b"}
_ANY_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?%?|[-+]?\.\d+%?")


@dataclass(frozen=True)
class ParsedNumber:
    """An exact number and whether it was written as a percentage (value excludes the /100)."""

    value: Fraction
    percent: bool = False

    @property
    def as_fraction_of_one(self) -> Fraction:
        """The value with a percentage converted to a fraction of one (50% -> 1/2)."""
        return self.value / 100 if self.percent else self.value


def _digits_ok(text: str) -> bool:
    return sum(ch.isdigit() for ch in text) <= _MAX_DIGITS


def _exponent_ok(text: str) -> bool:
    # "1e999999" is short but Fraction() would build a million-digit integer.
    match = re.search(r"[eE]([-+]?\d+)$", text)
    return match is None or abs(int(match.group(1))) <= 400


def _parse_core(text: str) -> ParsedNumber | None:
    match = _PLAIN.match(text)
    if match and match.group("num") not in ("", "+", "-", "."):
        num = match.group("num").replace(",", "")
        if not _exponent_ok(num) or not re.search(r"\d", num):
            return None
        try:
            return ParsedNumber(Fraction(num), bool(match.group("pct")))
        except (ValueError, ZeroDivisionError):
            return None
    for pattern in (_FRAC_LATEX, _FRAC_SLASH):
        match = pattern.match(text)
        if match:
            denominator = int(match.group("b"))
            if denominator == 0:
                return None
            value = Fraction(int(match.group("a")), denominator)
            if match.groupdict().get("sign") == "-":
                value = -value
            return ParsedNumber(value, bool(match.group("pct")))
    return None


def parse_number(text: str, allow_units: bool = True) -> ParsedNumber | None:
    """Parse `text` as a single number, or return None.

    Accepts thousands separators ("1,234"), a unicode minus, scientific notation, ``%`` /
    ``\\%``, simple fractions ("3/4", "\\frac{3}{4}"), math delimiters and ``\\text{}``, a
    leading "x =" or currency sign, and (if `allow_units`) up to three trailing unit words
    ("12 cm", "5 square units"). Anything else (expressions, two numbers) returns None.
    """
    if not text or len(text) > 200 or not _digits_ok(text):
        return None
    core = strip_latex(canonical_unicode(text)).strip().rstrip(".").strip()
    core = _ASSIGN.sub("", core, count=1)
    core = _APPROX.sub("", core, count=1)
    core = _CURRENCY.sub("", core, count=1)
    core = core.replace("{,}", ",").replace(" ", " ")
    parsed = _parse_core(core.replace(" ", "") if re.fullmatch(r"[-+]\s+\d.*", core) else core)
    if parsed is not None or not allow_units:
        return parsed
    without_units = _strip_units(core)
    return _parse_core(without_units) if without_units else None


def _strip_units(core: str) -> str | None:
    """`core` without trailing unit words, or None if there are none or they look like math."""
    match = _UNITS.search(core)
    if not match or match.start() == 0:
        return None
    tail = match.group(0)
    words = re.findall(r"[A-Za-z]+", tail)
    if any(word.lower() in _MATH_WORDS for word in words):
        return None  # "5 pi", "3x", "2 sqrt": a value, not a unit
    if len(words[0]) == 1 and not tail[:1].isspace():
        return None  # "5x" is an expression; "5 m" is a unit
    return core[: match.start()].strip()


def find_numbers(text: str, limit: int = 20) -> list[ParsedNumber]:
    """All numbers appearing in `text` (at most `limit`), for "exactly one number" fallbacks."""
    found: list[ParsedNumber] = []
    for match in _ANY_NUMBER.finditer(canonical_unicode(text)):
        parsed = _parse_core(match.group(0))
        if parsed is not None:
            found.append(parsed)
            if len(found) >= limit:
                break
    return found


def numbers_close(pred: Fraction, gold: Fraction, rel_tol: Fraction = Fraction(1, 10**6)) -> bool:
    """True when |pred - gold| <= rel_tol * max(1, |gold|) (relative, absolute near zero)."""
    return abs(pred - gold) <= rel_tol * max(Fraction(1), abs(gold))
