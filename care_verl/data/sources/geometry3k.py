"""Geometry3K (hiyouga/geometry3k): ``images`` (list), ``problem`` (str with ``<image>``),
``answer`` (str), and in the current revision also ``id``, ``choices`` (list[str]) and
``ground_truth`` (str).

Two modes:

* ``math`` (default, as EasyR1/verl train on it): free-form answer graded by math-verify;
  the options are kept in ``extra_info["choices"]`` for reference only.
* ``choice``: the options are appended to the question as "A. ..." lines and the answer is
  the option letter (``answer_type="multiple_choice"``).
"""

from __future__ import annotations

import re
from typing import Any

from care_verl.data.example import RLExample, as_image_list, as_text, as_text_list, place_image_tokens
from care_verl.data.report import BadRow

__all__ = ["geometry3k_example", "DATA_SOURCE", "MODES"]

DATA_SOURCE = "hiyouga/geometry3k"
MODES = ("math", "choice")
_LETTERS = "ABCDEFGHIJ"


def _gold_letter(row: dict[str, Any], answer: str, choices: list[str]) -> str:
    declared = as_text(row.get("ground_truth")).strip("()").rstrip(".")
    if re.fullmatch(r"[A-J]", declared) and _LETTERS.index(declared) < len(choices):
        return declared
    for i, choice in enumerate(choices):
        if choice.replace(" ", "") == answer.replace(" ", ""):
            return _LETTERS[i]
    raise BadRow(f"answer {answer!r} is not one of the choices {choices}")


def geometry3k_example(row: dict[str, Any], mode: str = "math") -> RLExample:
    """Map one Geometry3K row (see module docstring for `mode`)."""
    if mode not in MODES:
        raise ValueError(f"geometry3k mode must be one of {MODES}, got {mode!r}")
    problem = as_text(row.get("problem"))
    answer = as_text(row.get("answer"))
    images = as_image_list(row.get("images"))
    choices = as_text_list(row.get("choices"))
    if not problem:
        raise BadRow("empty question: 'problem' is empty")
    if not answer:
        raise BadRow("empty answer: 'answer' is empty")
    if not images:
        raise BadRow("missing image: 'images' is empty")
    question = place_image_tokens(problem, len(images))
    answer_type = "math"
    if mode == "choice":
        if not choices:
            raise BadRow("choice mode but the row has no 'choices'")
        answer = _gold_letter(row, answer, choices)
        options = "\n".join(f"{_LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
        question = f"{question}\nChoices:\n{options}"
        answer_type = "multiple_choice"
    return RLExample(
        data_source=DATA_SOURCE,
        question=question,
        raw_images=images,
        answer=answer,
        answer_type=answer_type,
        ability="math",
        choices=choices,
        original_id=as_text(row.get("id")),
        meta={"declared_ground_truth": as_text(row.get("ground_truth"))} if row.get("ground_truth") else {},
    )
