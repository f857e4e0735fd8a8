"""MATH-Vision (``MathLLMs/MathVision``; split ``test``, 3040 rows, or ``testmini``, 304 rows).

Schema used: ``id``, ``question`` (mentions its figure as ``<image1>``), ``options`` (list,
empty for free-form), ``image`` (relative path such as ``images/1.jpg``), ``decoded_image``
(Image), ``answer`` (an option letter, or a free-form value), ``solution``, ``level``,
``subject``.

Prompt: the question with ``<image1>`` turned into the image placeholder (the image is put
first when the question does not mention it), then ``Choices:`` with ``A. ...`` lines when
there are options. Grading: multiple choice by letter or option text, otherwise the math
verifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from care_verl.data.report import BadRow
from care_verl.eval.benchmarks.common import (
    cell_text,
    gold_letter,
    is_image_value,
    number_image_refs,
    options_block,
    parse_options,
)
from care_verl.eval.items import IMAGE_PLACEHOLDER, RowSpec

__all__ = ["mathvision_row"]


def mathvision_row(row: Mapping[str, Any]) -> RowSpec:
    """Map one MATH-Vision row (see the module docstring)."""
    row_id = cell_text(row, "id")
    question = cell_text(row, "question")
    answer = cell_text(row, "answer")
    options = parse_options(row.get("options"))
    image = row.get("decoded_image") if is_image_value(row.get("decoded_image")) else row.get("image")
    if not is_image_value(image):
        raise BadRow("missing image: neither 'decoded_image' nor 'image' is set")

    text, refs = number_image_refs(question, "compact")
    if any(ref != 1 for ref in refs):
        raise BadRow(f"question mentions images {refs} but MATH-Vision rows hold one image")
    if not refs:
        text = f"{IMAGE_PLACEHOLDER}\n{text}"
    if options:
        text = f"{text}\nChoices:\n{options_block(options)}"
        gold, grader = gold_letter(answer, options), "multiple_choice"
    else:
        gold, grader = answer, "math"
    return RowSpec(
        id=row_id,
        question=text,
        raw_images=(image,),
        gold=gold,
        answer_type=grader,
        choices=tuple(options),
        meta={"subject": cell_text(row, "subject", required=False), "level": cell_text(row, "level", required=False)},
    )
