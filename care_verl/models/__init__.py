"""Model factories: tiny random-weight Qwen2 / Qwen2.5-VL checkpoints built locally."""

from care_verl.models.tiny import KINDS, SIZES, build_tiny_model, build_tokenizer

__all__ = ["KINDS", "SIZES", "build_tiny_model", "build_tokenizer"]
