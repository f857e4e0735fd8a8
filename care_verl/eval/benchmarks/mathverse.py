"""MathVerse (``CaraJ/MathVerse-lmmseval``, config and split ``testmini``: 788 problems x 5
versions = 3940 rows; the dataset lmms-eval's ``mathverse_testmini`` task loads).

Schema used: ``sample_index``, ``problem_index``, ``problem_version``, ``question``, ``image``
(Image; may be empty), ``answer``, ``question_type`` (``multi-choice`` | ``free-form``),
``query_wo``, ``query_cot``, ``question_for_eval``.

Prompt: ``question`` (which, for the text-bearing versions, already lists the choices as
``A:...`` lines). The "Vision Only" version's question lives in the image; when ``question``
is empty we ask the model to answer the question shown in the image. Grading: multiple
choice by letter; when the choices can be read from the question text (``Choices:`` block),
an answer given as option text counts too. Free-form answers go to the math verifier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from care_verl.data.report import BadRow
from care_verl.eval.benchmarks.common import cell_text, gold_letter, is_image_value
from care_verl.eval.items import IMAGE_PLACEHOLDER, RowSpec

__all__ = ["mathverse_row", "choices_from_text"]

VISION_ONLY_QUESTION = "Answer the question shown in the image."
VISION_ONLY_CHOICE = "Answer the multiple-choice question shown in the image with the letter of the correct option."

_CHOICES_HEADER = re.compile(r"^\s*choices?\s*[:：]?\s*$", re.IGNORECASE)
_CHOICE_LINE = re.compile(r"^\s*\(?([A-H])\)?\s*[:.)：]\s*(.+?)\s*$")


def choices_from_text(text: str) -> list[str]:
    """Option texts listed after a ``Choices:`` line (``A:40°`` / ``A. 40°`` / ``(A) 40°``)."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if not _CHOICES_HEADER.match(line):
            continue
        options: list[str] = []
        for candidate in lines[start + 1 :]:
            match = _CHOICE_LINE.match(candidate)
            if not match or match.group(1) != "ABCDEFGH"[len(options)]:
                break
            options.append(match.group(2))
        return options
    return []


def mathverse_row(row: Mapping[str, Any]) -> RowSpec:
    """Map one MathVerse row (see the module docstring)."""
    sample_index = cell_text(row, "sample_index")
    question_type = cell_text(row, "question_type")
    answer = cell_text(row, "answer")
    question = cell_text(row, "question", required=False)
    version = cell_text(row, "problem_version", required=False)
    image = row.get("image")
    has_image = is_image_value(image)
    if question_type not in ("multi-choice", "free-form"):
        raise BadRow(f"unknown 'question_type' {question_type!r} (expected multi-choice or free-form)")
    if not question:
        if not has_image:
            raise BadRow("empty 'question' and no 'image': nothing to ask")
        question = VISION_ONLY_CHOICE if question_type == "multi-choice" else VISION_ONLY_QUESTION

    choices: list[str] = []
    if question_type == "multi-choice":
        choices = choices_from_text(cell_text(row, "question_for_eval", required=False) or question)
        try:
            gold, grader = gold_letter(answer, choices), "multiple_choice"
        except BadRow:
            if choices:
                raise
            # No letter and no readable options: compare the answer text itself.
            gold, grader = answer, "math"
    else:
        gold, grader = answer, "math"

    return RowSpec(
        id=sample_index,
        question=f"{IMAGE_PLACEHOLDER}\n{question}" if has_image else question,
        raw_images=(image,) if has_image else (),
        gold=gold,
        answer_type=grader,
        choices=tuple(choices) if grader == "multiple_choice" else (),
        meta={
            "problem_index": cell_text(row, "problem_index", required=False),
            "problem_version": version,
            "question_type": question_type,
        },
    )
