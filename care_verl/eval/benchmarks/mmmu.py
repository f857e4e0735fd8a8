"""MMMU (validation, 900 rows) and MMMU-Pro (``MMMU/MMMU_Pro``: config ``standard (10 options)``,
1730 rows; config ``vision``, 1730 rows; split ``test``).

MMMU / MMMU-Pro standard schema used: ``id``, ``question`` (mentions images as ``<image k>``),
``options`` (the *string repr* of a list, e.g. ``"['1', '2']"``; options may themselves be
``<image k>``), ``answer`` (option letter; for MMMU open questions a value or the repr of a
list of values), ``image_1`` ... ``image_7``; MMMU also ``question_type``
(``multiple-choice`` | ``open``), ``subfield``; MMMU-Pro also ``subject``.

MMMU-Pro vision schema used: ``id``, ``image`` (a screenshot holding question and options),
``options``, ``answer``, ``subject``.

Prompt: question, then ``A. ...`` option lines; every ``<image k>`` mention (in the question or
an option) becomes an image placeholder at that point, images ordered by first mention
(lmms-eval instead sorts them by number and, by default, puts them all before the text).
The vision setting shows only the screenshot and an instruction, as in the MMMU-Pro paper;
its options are used for grading only. Grading: option letter or option text; MMMU open
questions with the math verifier against every listed answer.
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
    parse_gold_list,
    parse_options,
    require,
)
from care_verl.eval.items import IMAGE_PLACEHOLDER, RowSpec

__all__ = ["mmmu_row", "mmmu_pro_standard_row", "mmmu_pro_vision_row", "MAX_IMAGES", "VISION_INSTRUCTION"]

MAX_IMAGES = 7
VISION_INSTRUCTION = "Answer the multiple-choice question shown in the image with the letter of the correct option."


def _interleave(row: Mapping[str, Any], text: str) -> tuple[str, tuple[Any, ...]]:
    """Replace ``<image k>`` mentions with placeholders and collect ``image_k`` in that order."""
    rewritten, refs = number_image_refs(text, "spaced")
    images = []
    for number in refs:
        column = f"image_{number}"
        if number > MAX_IMAGES or not is_image_value(row.get(column)):
            raise BadRow(f"the text mentions <image {number}> but {column!r} is empty or missing")
        images.append(row[column])
    if not refs:
        # No mention at all: show the row's images first, as lmms-eval's single-image rows do.
        present = [row[f"image_{k}"] for k in range(1, MAX_IMAGES + 1) if is_image_value(row.get(f"image_{k}"))]
        if not present:
            raise BadRow("no image: the text mentions none and every 'image_k' column is empty")
        rewritten = IMAGE_PLACEHOLDER * len(present) + "\n" + rewritten
        images = present
    return rewritten, tuple(images)


def _choice_spec(row: Mapping[str, Any], meta: dict[str, Any]) -> RowSpec:
    question = cell_text(row, "question")
    options = parse_options(require(row, "options"))
    if not options:
        raise BadRow("'options' is empty for a multiple-choice question")
    text, images = _interleave(row, f"{question}\n{options_block(options)}")
    return RowSpec(
        id=cell_text(row, "id"),
        question=text,
        raw_images=images,
        gold=gold_letter(cell_text(row, "answer"), options),
        answer_type="multiple_choice",
        choices=tuple(options),
        meta=meta,
    )


def mmmu_row(row: Mapping[str, Any]) -> RowSpec:
    """Map one MMMU row (multiple-choice or open)."""
    question_type = cell_text(row, "question_type")
    meta = {"question_type": question_type, "subfield": cell_text(row, "subfield", required=False)}
    if question_type == "multiple-choice":
        return _choice_spec(row, meta)
    if question_type != "open":
        raise BadRow(f"unknown 'question_type' {question_type!r} (expected multiple-choice or open)")
    text, images = _interleave(row, cell_text(row, "question"))
    golds = parse_gold_list(cell_text(row, "answer"))
    return RowSpec(
        id=cell_text(row, "id"),
        question=text,
        raw_images=images,
        gold=golds[0],
        answer_type="math",
        acceptable=tuple(golds[1:]),
        meta=meta,
    )


def mmmu_pro_standard_row(row: Mapping[str, Any]) -> RowSpec:
    """Map one MMMU-Pro standard (10 options) row."""
    return _choice_spec(row, {"subject": cell_text(row, "subject", required=False)})


def mmmu_pro_vision_row(row: Mapping[str, Any]) -> RowSpec:
    """Map one MMMU-Pro vision row: the screenshot and an instruction; options grade only."""
    image = require(row, "image")
    if not is_image_value(image):
        raise BadRow("missing image: 'image' is empty")
    options = parse_options(require(row, "options"))
    if not options:
        raise BadRow("'options' is empty")
    return RowSpec(
        id=cell_text(row, "id"),
        question=f"{IMAGE_PLACEHOLDER}\n{VISION_INSTRUCTION}",
        raw_images=(image,),
        gold=gold_letter(cell_text(row, "answer"), options),
        answer_type="multiple_choice",
        choices=tuple(options),
        meta={"subject": cell_text(row, "subject", required=False)},
    )
