"""Turn an item into the chat the policy was trained on.

The user turn is ``format_prompt(question, template)`` (the training template), split on
``<image>`` into text and image parts the same way verl's ``RLHFDataset._build_messages`` does,
so the processor's chat template renders exactly the training prompt (system prompt, vision
tokens and generation prompt included).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from care_verl.data.prompt import format_prompt
from care_verl.eval.items import IMAGE_PLACEHOLDER, EvalItem

__all__ = ["user_text", "chat_messages", "render_chat"]

_SPLIT = re.compile(f"({re.escape(IMAGE_PLACEHOLDER)})")


def user_text(item: EvalItem, template: str) -> str:
    """The user turn's text with ``<image>`` placeholders (no chat template)."""
    return format_prompt(item.spec.question, template)


def chat_messages(text: str) -> list[dict[str, Any]]:
    """One user message whose content interleaves ``{"type": "image"}`` and text parts."""
    content: list[dict[str, Any]] = []
    for segment in _SPLIT.split(text):
        if segment == IMAGE_PLACEHOLDER:
            content.append({"type": "image"})
        elif segment:
            content.append({"type": "text", "text": segment})
    return [{"role": "user", "content": content}]


def render_chat(processor: Any, text: str, chat_template_kwargs: Mapping[str, Any] | None = None) -> str:
    """The model-input string: the processor's chat template with the generation prompt."""
    return processor.apply_chat_template(
        chat_messages(text), add_generation_prompt=True, tokenize=False, **dict(chat_template_kwargs or {})
    )
