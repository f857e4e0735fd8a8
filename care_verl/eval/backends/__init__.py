"""Generation backends (``backend=auto|hf|vllm``) and the scripted one used for re-scoring."""

from __future__ import annotations

from care_verl.eval.backends.base import Backend, GenerationRequest, decode_images
from care_verl.eval.backends.scripted import ScriptedBackend, read_predictions

__all__ = [
    "BACKENDS",
    "Backend",
    "GenerationRequest",
    "ScriptedBackend",
    "decode_images",
    "read_predictions",
    "resolve_backend_name",
]

BACKENDS = ("auto", "hf", "vllm")


def resolve_backend_name(name: str) -> str:
    """"auto" -> "vllm" when vLLM and a GPU are present, else "hf"; other names pass through."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name != "auto":
        return name
    from care_verl.eval.backends.vllm import vllm_available

    return "vllm" if vllm_available() else "hf"
