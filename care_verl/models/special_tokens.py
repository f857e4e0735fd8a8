"""Qwen-VL special tokens a policy must never sample (import-light: shared by rollout and eval).

verl marks every ``<|image_pad|>`` of prompt + response as an image token
(``verl/experimental/agent_loop/agent_loop.py:942``), so one sampled by a weak model breaks the
rope index of its whole batch; the others open or close vision spans that carry no pixels.
"""

VISION_SPECIAL_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
