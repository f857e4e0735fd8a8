"""The parquet schemas written by the builders, and row constructors.

RL rows follow verl's multimodal convention (see verl's ``examples/data_preprocess/geo3k.py``):
``data_source``, ``prompt`` (chat messages whose text holds one ``<image>`` per image),
``images`` (``[{"bytes": ...}]``), ``ability``, ``reward_model`` (``{"style": "rule",
"ground_truth": str}``) and ``extra_info``. ``extra_info`` has the same fields in every row
(parquet structs are fixed); source-specific metadata goes into ``meta`` as a JSON string.

SFT rows follow verl's ``MultiTurnSFTDataset``: ``messages`` (role/content with ``<image>``
placeholders) and ``images``.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from care_verl.data.example import RLExample, SFTExample
from care_verl.data.images import LoadedImage
from care_verl.data.prompt import format_prompt
from care_verl.data.report import RowRef

__all__ = ["RL_SCHEMA", "SFT_SCHEMA", "rl_row", "sft_row"]

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_IMAGES = pa.list_(pa.struct([("bytes", pa.binary())]))

RL_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", _MESSAGES),
        ("images", _IMAGES),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("split", pa.string()),
                    ("index", pa.int64()),
                    ("answer_type", pa.string()),
                    ("source", pa.string()),
                    ("original_id", pa.string()),
                    ("original_file", pa.string()),
                    ("original_row", pa.int64()),
                    ("choices", pa.list_(pa.string())),
                    ("acceptable_answers", pa.list_(pa.string())),
                    ("question", pa.string()),
                    ("meta", pa.string()),
                ]
            ),
        ),
    ]
)

SFT_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("messages", _MESSAGES),
        ("images", _IMAGES),
        (
            "extra_info",
            pa.struct(
                [
                    ("split", pa.string()),
                    ("index", pa.int64()),
                    ("source", pa.string()),
                    ("original_id", pa.string()),
                    ("original_file", pa.string()),
                    ("original_row", pa.int64()),
                ]
            ),
        ),
    ]
)


def rl_row(
    example: RLExample, images: list[LoadedImage], ref: RowRef, index: int, split: str, template: str
) -> dict[str, Any]:
    """One RL parquet row."""
    return {
        "data_source": example.data_source,
        "prompt": [{"role": "user", "content": format_prompt(example.question, template)}],
        "images": [{"bytes": image.data} for image in images],
        "ability": example.ability,
        "reward_model": {"style": "rule", "ground_truth": example.answer},
        "extra_info": {
            "split": split,
            "index": index,
            "answer_type": example.answer_type,
            "source": ref.source,
            "original_id": example.original_id or f"{ref.file}#{ref.row}",
            "original_file": ref.file,
            "original_row": ref.row,
            "choices": list(example.choices),
            "acceptable_answers": list(example.acceptable_answers),
            "question": example.question,
            "meta": json.dumps(example.meta, ensure_ascii=False, sort_keys=True),
        },
    }


def sft_row(example: SFTExample, images: list[LoadedImage], ref: RowRef, index: int, split: str) -> dict[str, Any]:
    """One SFT parquet row."""
    return {
        "data_source": example.data_source,
        "messages": example.messages,
        "images": [{"bytes": image.data} for image in images],
        "extra_info": {
            "split": split,
            "index": index,
            "source": ref.source,
            "original_id": example.original_id or f"{ref.file}#{ref.row}",
            "original_file": ref.file,
            "original_row": ref.row,
        },
    }
