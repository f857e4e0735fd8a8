"""ViRL39K (TIGER-Lab/ViRL39K, file ``39Krelease.parquet``): ``question`` (str with
``<image>`` placeholders), ``answer`` (str, usually ``\\boxed{...}``), ``image`` (list of
paths relative to the dataset root, e.g. ``images/<qid>-0.jpg``, shipped in ``images.zip``),
``category``, ``source``, ``PassRate_32BTrained``, ``PassRate_7BTrained``, ``qid``.

The boxed wrapper is removed from the gold. The answer type is inferred from the gold:
yes/no -> ``yes_no``; a single option letter (the options are inline in the question) ->
``multiple_choice``; anything else -> ``math``.
"""

from __future__ import annotations

import re
from typing import Any

from care_verl.data.example import RLExample, as_image_list, as_text, place_image_tokens
from care_verl.data.report import BadRow
from care_verl.verifier.parsing import last_boxed_content

__all__ = ["virl39k_example", "DATA_SOURCE", "infer_answer_type"]

DATA_SOURCE = "TIGER-Lab/ViRL39K"
_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")


def _unbox(answer: str) -> str:
    if "\\boxed" in answer:
        inner = last_boxed_content(answer)
        if inner:
            return inner.strip()
    return answer.strip()


def infer_answer_type(answer: str) -> str:
    """yes_no, multiple_choice (single letter) or math."""
    if answer.strip().lower().rstrip(".") in ("yes", "no"):
        return "yes_no"
    if _LETTER.match(answer.strip()):
        return "multiple_choice"
    return "math"


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def virl39k_example(row: dict[str, Any]) -> RLExample:
    """Map one ViRL39K row (images stay as relative paths; the builder resolves them)."""
    question = as_text(row.get("question"))
    answer = _unbox(as_text(row.get("answer")))
    images = as_image_list(row.get("image"))
    if not question:
        raise BadRow("empty question: 'question' is empty")
    if not answer:
        raise BadRow("empty answer: 'answer' is empty")
    if not images:
        raise BadRow("missing image: 'image' lists no files")
    answer_type = infer_answer_type(answer)
    if answer_type == "multiple_choice":
        answer = _LETTER.match(answer.strip()).group(1)  # type: ignore[union-attr]
    return RLExample(
        data_source=DATA_SOURCE,
        question=place_image_tokens(question, len(images)),
        raw_images=list(images),
        answer=answer,
        answer_type=answer_type,
        ability="visual_reasoning",
        original_id=as_text(row.get("qid")),
        meta={
            "category": as_text(row.get("category")),
            "source": as_text(row.get("source")),
            "pass_rate_32b": _number(row.get("PassRate_32BTrained")),
            "pass_rate_7b": _number(row.get("PassRate_7BTrained")),
        },
    )
