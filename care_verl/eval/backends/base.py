"""What a generation backend is: render a user turn into the model input, and generate greedily.

Backends are interchangeable: `HFBackend` (transformers, CPU or GPU), `VLLMBackend` (GPU) and
`ScriptedBackend` (canned responses, for tests and for re-scoring saved predictions).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

from care_verl.eval.items import EvalItem

__all__ = ["GenerationRequest", "Backend", "decode_images"]


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete.

    Attributes:
        item: The item (its images are passed to the model in order).
        prompt: The rendered model input (chat template applied), from `Backend.render`.
    """

    item: EvalItem
    prompt: str


@runtime_checkable
class Backend(Protocol):
    """A greedy, single-sample generator."""

    name: str

    def render(self, user_text: str) -> str:
        """The model-input string for a user turn with ``<image>`` placeholders."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """One decoded response per request, in order (special tokens removed)."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...


def decode_images(item: EvalItem) -> list[Image.Image]:
    """The item's images as RGB PIL images (the loader validated them already)."""
    return [Image.open(io.BytesIO(data)).convert("RGB") for data in item.images]
