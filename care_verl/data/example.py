"""Intermediate records produced by the source adapters, before images are loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from care_verl.data.report import BadRow

__all__ = [
    "RLExample",
    "SFTExample",
    "place_image_tokens",
    "as_text",
    "as_text_list",
    "as_image_list",
    "IMAGE_TOKEN",
]

IMAGE_TOKEN = "<image>"


@dataclass
class RLExample:
    """One RL prompt: question (with one ``<image>`` per image), images and gold answer."""

    data_source: str
    question: str
    raw_images: list[Any]
    answer: str
    answer_type: str
    ability: str
    choices: list[str] = field(default_factory=list)
    acceptable_answers: list[str] = field(default_factory=list)
    original_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SFTExample:
    """One SFT conversation: messages (``<image>`` placeholders in order) and images."""

    data_source: str
    messages: list[dict[str, str]]
    raw_images: list[Any]
    original_id: str = ""


def as_text(value: Any) -> str:
    """A cell as stripped text ("" for None)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    return str(value).strip()


def as_text_list(value: Any) -> list[str]:
    """A str or a list-like cell as a list of non-empty stripped strings."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        items: list[Any] = [value]
    elif hasattr(value, "tolist"):
        items = list(value.tolist())
    else:
        items = list(value)
    return [text for text in (as_text(item) for item in items) if text]


def as_image_list(value: Any) -> list[Any]:
    """An image cell (one path/dict/bytes/PIL image, or a list of them) as a list."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict, Image.Image)) or not hasattr(value, "__iter__"):
        return [value]
    if hasattr(value, "tolist"):
        return list(value.tolist())
    return list(value)


def place_image_tokens(text: str, n_images: int) -> str:
    """Ensure `text` has exactly one ``<image>`` per image.

    Text without placeholders gets them prepended (ChartQA questions have none); any other
    mismatch is a bad row, since we cannot know where the images belong.
    """
    count = text.count(IMAGE_TOKEN)
    if count == n_images:
        return text
    if count == 0:
        return IMAGE_TOKEN * n_images + "\n" + text
    raise BadRow(f"placeholder mismatch: {count} {IMAGE_TOKEN} placeholders for {n_images} images")

