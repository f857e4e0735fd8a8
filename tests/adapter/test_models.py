"""The tiny model factory: deterministic, loadable by the Auto* classes, Qwen-VL conventions."""

import hashlib
from pathlib import Path

import pytest

from care_verl.models import build_tiny_model


def _digest(path) -> str:
    return hashlib.sha256((Path(path) / "model.safetensors").read_bytes()).hexdigest()


def test_same_seed_same_weights_other_seed_differs(tmp_path, tiny_text_path):
    again = build_tiny_model("qwen2", tmp_path / "a", seed=0)
    other = build_tiny_model("qwen2", tmp_path / "b", seed=1)
    assert _digest(again) == _digest(tiny_text_path)
    assert _digest(other) != _digest(tiny_text_path)


def test_cached_build_is_reused(tiny_vl_path):
    marker = Path(tiny_vl_path) / "care_verl_tiny.json"
    mtime = marker.stat().st_mtime_ns
    assert build_tiny_model("qwen2_5_vl", size="small", seed=0) == tiny_vl_path
    assert marker.stat().st_mtime_ns == mtime


def test_vl_model_loads_like_a_hub_checkpoint(tiny_vl_path):
    from transformers import AutoConfig, AutoModelForImageTextToText

    from verl.utils.tokenizer import hf_processor

    processor = hf_processor(tiny_vl_path)  # verl's loader: None would mean a silent text-only run
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    config = AutoConfig.from_pretrained(tiny_vl_path)
    assert config.model_type == "qwen2_5_vl"
    assert sum(config.text_config.rope_parameters["mrope_section"]) * 2 == (
        config.text_config.hidden_size // config.text_config.num_attention_heads
    )
    model = AutoModelForImageTextToText.from_pretrained(tiny_vl_path)
    assert sum(p.numel() for p in model.parameters()) < 2_000_000


def test_tokenizer_conventions(tiny_vl_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_vl_path)
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"):
        assert special in tok.get_vocab()
    assert tok.eos_token == "<|im_end|>"
    text = "<think>The left bar is 6.</think><answer>6</answer>"
    ids = tok(text)["input_ids"]
    # tags are single non-special tokens, so they survive skip_special_tokens decoding
    assert tok.convert_tokens_to_ids("<think>") in ids
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text
    assert "16" not in tok.convert_ids_to_tokens(tok("16")["input_ids"])  # digits split one per token
    chat = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert chat == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"


def test_bad_arguments_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        build_tiny_model("llama", tmp_path / "x")
    with pytest.raises(ValueError, match="size"):
        build_tiny_model("qwen2", tmp_path / "x", size="huge")
