"""MathVista (``AI4Math/MathVista``, split ``testmini``, 1000 rows).

Schema used: ``pid``, ``question``, ``decoded_image`` (Image) or ``image`` (relative path such
as ``images/1.jpg``), ``choices`` (list or null), ``answer``, ``question_type``
(``multi_choice`` | ``free_form``), ``answer_type`` (``text`` | ``integer`` | ``float`` |
``list``), ``precision`` (float or null), ``unit`` (str or null), ``metadata``.

Prompt: the question, then ``Choices:`` with ``(A) ...`` lines for multiple choice, or for
free-form answers the answer-format sentence of lmms-eval's "format-prompt" hint (integer,
float with N decimals, Python list). The image comes first (MathVista questions carry no
placeholder). Grading: multiple choice by option letter or option text; integers numerically;
floats rounded to ``precision`` decimals, as lmms-eval does; lists with the math verifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from care_verl.data.report import BadRow
from care_verl.eval.benchmarks.common import (
    cell_text,
    gold_letter,
    is_image_value,
    options_block,
    parse_options,
    parse_precision,
)
from care_verl.eval.items import IMAGE_PLACEHOLDER, RowSpec

__all__ = ["mathvista_row"]

_FORMAT_HINTS = {
    "integer": "Answer the question using a single integer number.",
    "list": "Answer the question using a Python list.",
}


def _float_hint(precision: int | None) -> str:
    if precision == 1:
        return "Answer the question using a single floating-point number with one decimal place."
    if precision == 2:
        return "Answer the question using a single floating-point number with two decimal places."
    if precision:
        return f"Answer the question using a single floating-point number with {precision} decimal places."
    return "Answer the question using a single floating-point number."


def mathvista_row(row: Mapping[str, Any]) -> RowSpec:
    """Map one MathVista row (see the module docstring)."""
    pid = cell_text(row, "pid")
    question = cell_text(row, "question")
    question_type = cell_text(row, "question_type")
    answer_type = cell_text(row, "answer_type")
    answer = cell_text(row, "answer")
    unit = cell_text(row, "unit", required=False)
    image = row.get("decoded_image") if is_image_value(row.get("decoded_image")) else row.get("image")
    if not is_image_value(image):
        raise BadRow("missing image: neither 'decoded_image' nor 'image' is set")
    if unit:
        question = f"{question} (Unit: {unit})"
    meta = {"question_type": question_type, "answer_type": answer_type}

    precision = None
    choices: list[str] = []
    if question_type == "multi_choice":
        choices = parse_options(row.get("choices"), "choices")
        if not choices:
            raise BadRow("'question_type' is multi_choice but 'choices' is empty")
        # MathVista's gold is the option text; grading is by letter or text.
        gold = gold_letter(answer, choices)
        text = f"{question}\nChoices:\n{options_block(choices, style='paren')}"
        grader = "multiple_choice"
    elif question_type == "free_form":
        gold = answer
        if answer_type == "integer":
            text, grader = f"{question}\n{_FORMAT_HINTS['integer']}", "numeric"
        elif answer_type == "float":
            precision = parse_precision(row.get("precision"))
            text, grader = f"{question}\n{_float_hint(precision)}", "numeric"
        elif answer_type == "list":
            text, grader = f"{question}\n{_FORMAT_HINTS['list']}", "math"
        else:
            raise BadRow(f"unknown 'answer_type' {answer_type!r} (expected integer, float or list for free_form)")
    else:
        raise BadRow(f"unknown 'question_type' {question_type!r} (expected multi_choice or free_form)")

    return RowSpec(
        id=pid,
        question=f"{IMAGE_PLACEHOLDER}\n{text}",
        raw_images=(image,),
        gold=gold,
        answer_type=grader,
        choices=tuple(choices),
        precision=precision,
        meta=meta,
    )
