"""Schema helpers shared by the benchmark adapters: cells, options, letters, image references.

Every helper raises `BadRow` with a message naming the offending column, so the loader can
report "file: row N: <reason>".
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from care_verl.data.example import as_text
from care_verl.data.report import BadRow
from care_verl.eval.items import IMAGE_PLACEHOLDER

__all__ = [
    "LETTERS",
    "require",
    "cell_text",
    "parse_options",
    "options_block",
    "gold_letter",
    "parse_precision",
    "parse_gold_list",
    "is_image_value",
    "number_image_refs",
]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")


def require(row: Mapping[str, Any], column: str) -> Any:
    """The value of `column`; a missing column is a schema error, reported by name."""
    if column not in row:
        present = ", ".join(sorted(map(str, row))[:20])
        raise BadRow(f"missing column {column!r} (columns present: {present})")
    return row[column]


def cell_text(row: Mapping[str, Any], column: str, required: bool = True) -> str:
    """A cell as stripped text; with `required`, a missing or empty cell is a bad row."""
    value = require(row, column) if required else row.get(column)
    text = as_text(value)
    if required and not text:
        raise BadRow(f"empty {column!r}")
    return text


def parse_options(value: Any, column: str = "options") -> list[str]:
    """Options as a list of strings.

    Accepts a list/array (MathVista ``choices``, MATH-Vision ``options``) or the string
    repr of a Python list that MMMU and MMMU-Pro store (``"['1', '2']"``). None -> [].
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise BadRow(f"{column!r} is not a list or the repr of one: {text[:80]!r}") from exc
        if not isinstance(value, (list, tuple)):
            raise BadRow(f"{column!r} does not hold a list: {text[:80]!r}")
    elif hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise BadRow(f"{column!r} must be a list, got {type(value).__name__}")
    return [as_text(v) for v in value]


def options_block(options: Sequence[str], style: str = "dot") -> str:
    """Options as lines: ``A. text`` (style "dot") or ``(A) text`` (style "paren")."""
    if len(options) > len(LETTERS):
        raise BadRow(f"{len(options)} options; at most {len(LETTERS)} are supported")
    if style == "paren":
        return "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


def gold_letter(answer: str, options: Sequence[str], column: str = "answer") -> str:
    """The gold option letter from an answer given as a letter or as an option's text."""
    match = _LETTER.match(answer.strip())
    if match:
        letter = match.group(1)
        if options and LETTERS.index(letter) >= len(options):
            raise BadRow(f"{column!r} is {answer!r} but there are only {len(options)} options")
        return letter
    stripped = [o.strip() for o in options]
    if answer.strip() in stripped:
        return LETTERS[stripped.index(answer.strip())]
    raise BadRow(f"{column!r} {answer!r} is neither an option letter nor one of the options {list(options)[:10]}")


def parse_precision(value: Any) -> int | None:
    """MathVista's ``precision`` cell (a float such as 2.0, or null/NaN) as an int or None."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise BadRow(f"'precision' is not a number: {value!r}") from exc
    if math.isnan(number):
        return None
    if number < 0 or number != int(number):
        raise BadRow(f"'precision' must be a non-negative integer, got {value!r}")
    return int(number)


def parse_gold_list(answer: str) -> list[str]:
    """An answer cell that may be the repr of a list of acceptable answers (MMMU open questions)."""
    text = answer.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return [text]  # a genuine bracketed answer such as an interval
        if isinstance(value, (list, tuple)) and value:
            return [as_text(v) for v in value if as_text(v)]
    return [text]


def is_image_value(value: Any) -> bool:
    """True for a cell that holds an image (not None, not an empty string or empty dict)."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Mapping):
        return bool(value.get("bytes") or value.get("path"))
    return True


_NUMBERED_REF = {
    # MMMU and MMMU-Pro write "<image 1>", MATH-Vision writes "<image1>".
    "spaced": re.compile(r"<image (\d+)>"),
    "compact": re.compile(r"<image(\d+)>"),
}


def number_image_refs(text: str, style: str) -> tuple[str, list[int]]:
    """Map numbered image references to ``<image>`` placeholders, in order of first mention.

    The first mention of image k becomes ``<image>`` (so the images are passed in the order
    the text mentions them, each exactly once, as the training format requires); a repeated
    mention becomes the plain words "image k", since an image cannot be shown twice.

    Returns:
        The rewritten text and the image numbers in placeholder order.
    """
    pattern = _NUMBERED_REF[style]
    order: list[int] = []

    def substitute(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if number in order:
            return f"image {number}"
        order.append(number)
        return IMAGE_PLACEHOLDER

    # Any literal "<image>" already in the text would add an unmatched placeholder.
    if IMAGE_PLACEHOLDER in text:
        text = text.replace(IMAGE_PLACEHOLDER, "image")
    return pattern.sub(substitute, text), order
