"""`VLLMBackend`: greedy generation with vLLM on GPU.

vLLM is imported only when this backend is built (it is the ``gpu`` extra; CPU machines do
not have it). The prompt string is rendered with the model's processor chat template, exactly
as for the HF backend, and images are passed as ``multi_modal_data`` in placeholder order.

Not exercised by the CPU test suite (there is no vLLM there); the HF backend, which shares
prompt rendering, loading and scoring, is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from care_verl.eval.backends.base import GenerationRequest, decode_images
from care_verl.eval.prompting import render_chat

__all__ = ["VLLMBackend", "vllm_available"]


def vllm_available() -> bool:
    """True when vLLM can be imported and a CUDA device is visible."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


class VLLMBackend:
    """Greedy decoding with ``vllm.LLM``.

    Args:
        model_path: A Hugging Face model directory (or hub id).
        max_new_tokens: Generation budget per response.
        seed: vLLM seed.
        max_images_per_prompt: ``limit_mm_per_prompt["image"]`` (MMMU rows hold up to 7).
        min_pixels, max_pixels: Passed to the image processor via ``mm_processor_kwargs``.
        chat_template_kwargs: Extra arguments for ``apply_chat_template``.
        repetition_penalty: 1.0 is plain greedy.
        engine_kwargs: Further ``vllm.LLM`` arguments (tensor_parallel_size,
            gpu_memory_utilization, max_model_len, ...).
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        max_new_tokens: int,
        seed: int = 0,
        max_images_per_prompt: int = 8,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        engine_kwargs: Mapping[str, Any] | None = None,
        repetition_penalty: float = 1.0,
    ) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise RuntimeError("backend=vllm needs vLLM (pip install 'care-verl[gpu]'); use backend=hf on CPU") from exc
        from transformers import AutoProcessor

        pixels = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
        self.processor = AutoProcessor.from_pretrained(model_path, **pixels)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        kwargs: dict[str, Any] = {
            "model": model_path,
            "seed": int(seed),
            "limit_mm_per_prompt": {"image": int(max_images_per_prompt)},
        }
        if pixels:
            kwargs["mm_processor_kwargs"] = pixels
        kwargs.update(engine_kwargs or {})
        self.llm = LLM(**kwargs)
        self.sampling = SamplingParams(
            temperature=0.0,
            max_tokens=int(max_new_tokens),
            repetition_penalty=float(repetition_penalty),
            seed=int(seed),
        )

    def render(self, user_text: str) -> str:
        return render_chat(self.processor, user_text, self.chat_template_kwargs)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        prompts: list[dict[str, Any]] = []
        for request in requests:
            prompt: dict[str, Any] = {"prompt": request.prompt}
            images = decode_images(request.item)
            if images:
                prompt["multi_modal_data"] = {"image": images}
            prompts.append(prompt)
        outputs = self.llm.generate(prompts, self.sampling, use_tqdm=False)
        return [output.outputs[0].text for output in outputs]

    def close(self) -> None:
        self.llm = None
