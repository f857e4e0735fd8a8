"""Qwen-VL special tokens a policy must never sample (import-light: shared by rollout and eval).

verl marks every ``<|image_pad|>`` of prompt + response as an image token
(``verl/experimental/agent_loop/agent_loop.py:942``), so one sampled by a weak model breaks the
rope index of its whole batch; the others open or close vision spans that carry no pixels.
"""

VISION_SPECIAL_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def eos_token_ids(generation_config, tokenizer) -> set[int]:
    """Every id that ends a response: the generation config's EOS ids plus the tokenizer's."""
    ids: set[int] = set()
    for value in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("the tokenizer and generation config define no EOS token")
    return ids


def suppressed_token_ids(tokenizer) -> list[int]:
    """Ids of :data:`VISION_SPECIAL_TOKENS` present in ``tokenizer``."""
    vocab = tokenizer.get_vocab()
    return [vocab[t] for t in VISION_SPECIAL_TOKENS if t in vocab]
