"""Tiny random-weight Qwen2 / Qwen2.5-VL models, built locally (no hub access), for tests and CPU runs.

Each build writes a directory that ``AutoConfig``, ``AutoTokenizer``, ``AutoProcessor`` and
``AutoModelForCausalLM`` / ``AutoModelForImageTextToText`` load like a hub checkpoint:

- a byte-level BPE tokenizer trained on the synthetic tasks' text, with the Qwen special tokens
  (``<|im_start|>``, ``<|im_end|>``, ``<|vision_start|>``, ``<|image_pad|>``, ...) and
  ``<think>``/``</think>``/``<answer>``/``</answer>`` as added (non-special) tokens, so they
  survive ``skip_special_tokens=True`` decoding; digits are split one per token;
- a Qwen-VL style chat template (``{"type": "image"}`` -> ``<|vision_start|><|image_pad|><|vision_end|>``);
- for VL: ``Qwen2VLImageProcessor`` (56x56 images -> 4 image tokens), the video processor the
  Qwen2.5-VL processor requires, and ``Qwen2_5_VLProcessor.save_pretrained``;
- weights drawn from ``torch.manual_seed(seed)``: the same seed gives the same files.

Builds are cached under ``$CARE_VERL_CACHE`` (default ``~/.cache/care_verl``) keyed by kind, size,
seed and :data:`FACTORY_VERSION`, and written atomically (temp dir + rename).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

FACTORY_VERSION = 2
KINDS = ("qwen2", "qwen2_5_vl")

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinySize:
    """Architecture sizes. ``head_dim = hidden / heads`` and ``sum(mrope_section) = head_dim / 2``."""

    hidden: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 512
    mrope_section: tuple[int, int, int] = (4, 6, 6)
    vision_hidden: int = 64
    vision_depth: int = 2
    vision_heads: int = 4
    vision_ffn: int = 256
    vocab_target: int = 400
    image_pixels: int = 56 * 56


SIZES = {
    "small": TinySize(),
    "medium": TinySize(hidden=256, layers=4, ffn=768, vision_hidden=128, vision_depth=4, vision_ffn=512),
}


def _corpus() -> list[str]:
    """Text the tokenizer is trained on: prompts, reasoning traces and answers of our tasks."""
    from care_verl.data.synthetic import TASKS, generate_item, prompt_text, sft_response

    lines = []
    for task in TASKS:
        for difficulty in (1, 2, 3):
            for i in range(40):
                item = generate_item(task, difficulty, seed=0, split="train", index=i)
                lines += [prompt_text(item.question), sft_response(item)]
    lines += [
        "You are a helpful assistant. user assistant system",
        "Your previous reasoning had an error. Find the mistake, correct it, and re-derive. Keep it concise.",
        "The answer is \\boxed{42}. Wait, let me check again. So the final answer is",
    ]
    return lines


def build_tokenizer():
    """A deterministic byte-level BPE ``PreTrainedTokenizerFast`` with Qwen special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=SIZES["small"].vocab_target,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def _text_config(size: TinySize, tok) -> dict:
    ids = tok.convert_tokens_to_ids
    return dict(
        vocab_size=len(tok),
        hidden_size=size.hidden,
        intermediate_size=size.ffn,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": list(size.mrope_section)},
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=True,
    )


def _build_model(kind: str, size: TinySize, tok, seed: int):
    import torch
    from transformers import GenerationConfig

    torch.manual_seed(seed)
    text = _text_config(size, tok)
    if kind == "qwen2":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        text["rope_parameters"].pop("mrope_section")
        model = Qwen2ForCausalLM(Qwen2Config(**text))
    else:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        ids = tok.convert_tokens_to_ids
        vision = dict(
            depth=size.vision_depth,
            hidden_size=size.vision_hidden,
            intermediate_size=size.vision_ffn,
            num_heads=size.vision_heads,
            out_hidden_size=size.hidden,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=list(range(size.vision_depth)),
        )
        config = Qwen2_5_VLConfig(
            text_config=text,
            vision_config=vision,
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
            tie_word_embeddings=True,
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tok.pad_token_id, do_sample=True)
    return model


def _build_processor(tok, size: TinySize):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    image = Qwen2VLImageProcessor(
        min_pixels=size.image_pixels, max_pixels=size.image_pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    video = Qwen2VLVideoProcessor(min_pixels=size.image_pixels, max_pixels=size.image_pixels * 4)
    return Qwen2_5_VLProcessor(image_processor=image, tokenizer=tok, video_processor=video, chat_template=CHAT_TEMPLATE)


def cache_root() -> Path:
    return Path(os.environ.get("CARE_VERL_CACHE", Path.home() / ".cache" / "care_verl"))


def build_tiny_model(kind: str = "qwen2_5_vl", out_dir: str | os.PathLike | None = None, seed: int = 0,
                     size: str = "small", overwrite: bool = False) -> str:
    """Build (or reuse) a tiny random-weight model directory and return its path.

    Args:
        kind: ``"qwen2"`` (text) or ``"qwen2_5_vl"`` (vision-language).
        out_dir: where to write; default ``<cache_root>/models/<kind>-<size>-s<seed>-v<FACTORY_VERSION>``.
        seed: weight-initialisation seed.
        size: a key of :data:`SIZES`.
        overwrite: rebuild even if a complete build exists.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    target = Path(out_dir) if out_dir else cache_root() / "models" / f"{kind}-{size}-s{seed}-v{FACTORY_VERSION}"
    marker = target / "care_verl_tiny.json"
    if marker.exists() and not overwrite:
        return str(target)
    spec = TinySize(**asdict(SIZES[size]))
    tok = build_tokenizer()
    model = _build_model(kind, spec, tok, seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if kind == "qwen2_5_vl":
            _build_processor(tok, spec).save_pretrained(tmp)
        meta = {"kind": kind, "size": size, "seed": seed, "factory_version": FACTORY_VERSION,
                "params": sum(p.numel() for p in model.parameters())}
        (tmp / "care_verl_tiny.json").write_text(json.dumps(meta, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
