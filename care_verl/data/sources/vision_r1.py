"""Vision-R1-cold (Osilly/Vision-R1-cold): LLaVA/ShareGPT-style JSON for cold-start SFT.

Two files with slightly different conventions (per the Vision-R1 README's LLaMA-Factory
config): ``vision_r1_llava_cot_full.json`` uses ``conversations`` with ``from`` in
{human, gpt} and ``image`` (one path); ``vision_r1_mulberry_sft_full.json`` uses
``conversations`` with ``from`` in {user, assistant} and ``images`` (list of paths). Paths
are relative to the image folders (``llava_cot_images``/``mulberry_images``), given to the
builder as image roots. ``messages`` with ``role``/``content`` is accepted as well.

``assistant_format="think_answer"`` rewrites an assistant turn ``<think>R</think> A`` into
``<think>R</think>\\n<answer>A</answer>`` so SFT teaches the format the RL reward checks;
the default ``"keep"`` leaves the text untouched.
"""

from __future__ import annotations

from typing import Any

from care_verl.data.example import IMAGE_TOKEN, SFTExample, as_image_list, as_text
from care_verl.data.report import BadRow

__all__ = ["vision_r1_example", "DATA_SOURCE", "ASSISTANT_FORMATS"]

DATA_SOURCE = "Osilly/Vision-R1-cold"
ASSISTANT_FORMATS = ("keep", "think_answer")
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _to_think_answer(text: str) -> str:
    if "<answer>" in text or "</think>" not in text:
        return text
    reasoning, _, final = text.rpartition("</think>")
    final = final.strip()
    if not final:
        return text
    return f"{reasoning}</think>\n<answer>{final}</answer>"


def vision_r1_example(row: dict[str, Any], assistant_format: str = "keep") -> SFTExample:
    """Map one Vision-R1-cold record to messages + images."""
    if assistant_format not in ASSISTANT_FORMATS:
        raise ValueError(f"assistant_format must be one of {ASSISTANT_FORMATS}")
    turns = row.get("conversations") or row.get("messages")
    if not turns:
        raise BadRow("empty conversation: no 'conversations' or 'messages'")
    messages: list[dict[str, str]] = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise BadRow(f"conversation turn is not an object: {turn!r:.80}")
        role = _ROLES.get(as_text(turn.get("from") or turn.get("role")).lower())
        content = turn.get("value") if "value" in turn else turn.get("content")
        if role is None:
            raise BadRow(f"unknown role {turn.get('from') or turn.get('role')!r}")
        text = as_text(content)
        if role == "assistant" and assistant_format == "think_answer":
            text = _to_think_answer(text)
        messages.append({"role": role, "content": text})
    roles = [m["role"] for m in messages if m["role"] != "system"]
    if "user" not in roles or "assistant" not in roles or roles[0] != "user":
        raise BadRow(f"conversation must start with a user turn and contain an assistant turn, got {roles}")
    if any(not m["content"] for m in messages if m["role"] == "assistant"):
        raise BadRow("empty answer: an assistant turn is empty")
    images = as_image_list(row.get("images") if row.get("images") is not None else row.get("image"))
    count = sum(m["content"].count(IMAGE_TOKEN) for m in messages)
    if count == 0 and images:
        first_user = next(m for m in messages if m["role"] == "user")
        first_user["content"] = IMAGE_TOKEN * len(images) + "\n" + first_user["content"]
    elif count != len(images):
        raise BadRow(f"placeholder mismatch: {count} {IMAGE_TOKEN} placeholders for {len(images)} images")
    return SFTExample(
        data_source=DATA_SOURCE, messages=messages, raw_images=images, original_id=as_text(row.get("id"))
    )
