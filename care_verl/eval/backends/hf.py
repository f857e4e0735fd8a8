"""`HFBackend`: batched greedy generation with transformers (CPU, or one GPU).

Batching follows our hf rollout (`care_verl.adapter.rollout.hf_rollout`): left padding, the model's
image processor for pixel values, ``mm_token_type_ids`` passed to ``generate`` (without them
Qwen2.5-VL generation silently falls back to 1-D text positions instead of M-RoPE), and the
vision special tokens suppressed. Here the processor does the tokenising and image-token
expansion in one call, since eval starts from text rather than from token ids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from care_verl.eval.backends.base import GenerationRequest, decode_images
from care_verl.eval.prompting import render_chat
from care_verl.models.special_tokens import VISION_SPECIAL_TOKENS, eos_token_ids, suppressed_token_ids

__all__ = ["HFBackend", "resolve_dtype", "VISION_SPECIAL_TOKENS"]

logger = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_dtype(name: str, device_type: str) -> Any:
    """A torch dtype; "auto" is bfloat16 on GPU and float32 on CPU (bf16 matmuls are slow there)."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {name!r}")
    if name == "auto":
        return torch.bfloat16 if device_type == "cuda" else torch.float32
    return getattr(torch, name)


class HFBackend:
    """Greedy decoding with ``AutoModelForImageTextToText``.

    Args:
        model_path: A Hugging Face model directory (or hub id) of a vision-language model.
        max_new_tokens: Generation budget per response.
        dtype: See `resolve_dtype`.
        device: "cpu", "cuda", ...; default cuda when available.
        seed: Torch seed (greedy decoding does not sample; this only pins any randomness).
        min_pixels, max_pixels: Image-processor resolution bounds (None: the processor's own).
        chat_template_kwargs: Extra arguments for ``apply_chat_template`` (as verl's
            ``data.apply_chat_template_kwargs``).
        threads: torch CPU threads (None: leave torch's setting).
        repetition_penalty: 1.0 is plain greedy. It is set explicitly because transformers
            otherwise fills it from the model's generation_config (1.05 for Qwen2.5-VL-Instruct).
    """

    name = "hf"

    def __init__(
        self,
        model_path: str,
        max_new_tokens: int,
        dtype: str = "auto",
        device: str | None = None,
        seed: int = 0,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        threads: int | None = None,
        repetition_penalty: float = 1.0,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        if threads:
            torch.set_num_threads(int(threads))
        config = AutoConfig.from_pretrained(model_path)
        if getattr(config, "vision_config", None) is None:
            raise ValueError(f"{model_path} is not a vision-language model (its config has no vision_config)")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.max_new_tokens = int(max_new_tokens)
        self.repetition_penalty = float(repetition_penalty)
        self.seed = int(seed)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.model = (
            AutoModelForImageTextToText.from_pretrained(
                model_path, dtype=resolve_dtype(dtype, self.device.type), attn_implementation="sdpa"
            )
            .to(self.device)
            .eval()
        )
        pixels = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
        self.processor = AutoProcessor.from_pretrained(model_path, **pixels)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.eos_ids = eos_token_ids(self.model.generation_config, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.suppress_ids = suppressed_token_ids(self.tokenizer)
        self.image_token_id = getattr(config, "image_token_id", None)

    def render(self, user_text: str) -> str:
        return render_chat(self.processor, user_text, self.chat_template_kwargs)

    def _inputs(self, requests: Sequence[GenerationRequest]) -> dict[str, Any]:
        images = [image for request in requests for image in decode_images(request.item)]
        inputs = self.processor(
            text=[request.prompt for request in requests],
            images=images or None,
            return_tensors="pt",
            padding=True,
        )
        if "mm_token_type_ids" not in inputs and self.image_token_id is not None:
            # Older processors do not return it; generate needs it for M-RoPE positions.
            inputs["mm_token_type_ids"] = (inputs["input_ids"] == self.image_token_id).long()
        inputs.pop("token_type_ids", None)
        return {k: v.to(self.device) for k, v in inputs.items()}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        import torch
        from transformers import GenerationConfig

        if not requests:
            return []
        inputs = self._inputs(requests)
        torch.manual_seed(self.seed)
        greedy = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            repetition_penalty=self.repetition_penalty,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            suppress_tokens=self.suppress_ids or None,
        )
        with torch.no_grad():
            sequences = self.model.generate(**inputs, generation_config=greedy)
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :].tolist()
        return [self.tokenizer.decode(self._until_eos(tokens), skip_special_tokens=True) for tokens in new_tokens]

    def _until_eos(self, tokens: list[int]) -> list[int]:
        for i, token in enumerate(tokens):
            if token in self.eos_ids:
                return tokens[:i]
        return tokens

    def close(self) -> None:
        self.model = None
