"""ChartQA (HuggingFaceM4/ChartQA): ``image``, ``query`` (str), ``label`` (list[str]),
``human_or_machine`` (0 = human-written, 1 = machine-generated question).

Graded with relaxed accuracy (``answer_type="chartqa"``); extra labels become acceptable
answers. Questions carry no ``<image>`` placeholder, so one is prepended.
"""

from __future__ import annotations

from typing import Any

from care_verl.data.example import RLExample, as_text, as_text_list, place_image_tokens
from care_verl.data.report import BadRow

__all__ = ["chartqa_example", "DATA_SOURCE"]

DATA_SOURCE = "HuggingFaceM4/ChartQA"


def chartqa_example(row: dict[str, Any]) -> RLExample:
    """Map one ChartQA row."""
    question = as_text(row.get("query"))
    labels = as_text_list(row.get("label"))
    if not question:
        raise BadRow("empty question: 'query' is empty")
    if not labels:
        raise BadRow("empty answer: 'label' is empty")
    return RLExample(
        data_source=DATA_SOURCE,
        question=place_image_tokens(question, 1),
        raw_images=[row.get("image")],
        answer=labels[0],
        answer_type="chartqa",
        ability="chart",
        acceptable_answers=labels[1:],
        original_id=as_text(row.get("id")),
        meta={"human_or_machine": row.get("human_or_machine")},
    )
