"""Fixture writers: tiny files in each source's real schema, plus a tiny tokenizer/processor.

Schemas (verified against the dataset cards where possible):

* ChartQA (HuggingFaceM4/ChartQA): image (datasets Image -> struct{bytes, path}), query (str),
  label (list[str]), human_or_machine (class label int).
* Geometry3K (hiyouga/geometry3k): images (Sequence(Image)), problem (str with <image>),
  answer (str), id (int64), choices (list[str]), ground_truth (str).
* ViRL39K (TIGER-Lab/ViRL39K): 39Krelease.parquet with question, answer, image (list of
  relative paths), category, source, PassRate_32BTrained, PassRate_7BTrained, qid; the images
  ship in images.zip (we write both an images/ folder and a zip).
* Vision-R1-cold: LLaVA/ShareGPT JSON (conversations with from/value; image or images paths).
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

_HF_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def chart_image(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A distinct synthetic 'chart': random bars on a white background."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    n_bars = rng.randint(3, 6)
    width = size[0] // (n_bars + 1)
    for i in range(n_bars):
        height = rng.randint(5, size[1] - 5)
        color = tuple(rng.randint(0, 200) for _ in range(3))
        draw.rectangle([i * width + 4, size[1] - height, i * width + width, size[1] - 1], fill=color)
    return image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    """Encode a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def hf_image(data: bytes | None, path: str | None = None) -> dict[str, Any] | None:
    """A datasets Image cell as stored in parquet."""
    return None if data is None else {"bytes": data, "path": path}


def write_chartqa(path: Path, rows: list[dict[str, Any]]) -> Path:
    """rows: dicts with image (bytes|None), query, label (list), human_or_machine."""
    schema = pa.schema([("image", _HF_IMAGE), ("query", pa.string()), ("label", pa.list_(pa.string())),
                        ("human_or_machine", pa.int64())])
    table = pa.Table.from_pylist(
        [{**row, "image": hf_image(row["image"])} for row in rows], schema=schema
    )
    pq.write_table(table, path)
    return path


def write_geometry3k(path: Path, rows: list[dict[str, Any]]) -> Path:
    """rows: dicts with images (list of bytes), problem, answer, id, choices, ground_truth."""
    schema = pa.schema([("images", pa.list_(_HF_IMAGE)), ("problem", pa.string()), ("answer", pa.string()),
                        ("id", pa.int64()), ("choices", pa.list_(pa.string())), ("ground_truth", pa.string())])
    table = pa.Table.from_pylist(
        [{**row, "images": [hf_image(b) for b in row["images"]]} for row in rows], schema=schema
    )
    pq.write_table(table, path)
    return path


def write_virl39k(root: Path, rows: list[dict[str, Any]], images: dict[str, bytes], as_zip: bool = False) -> Path:
    """Write 39Krelease.parquet under `root` and the images as images/... files or images.zip."""
    root.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("question", pa.string()), ("answer", pa.string()), ("image", pa.list_(pa.string())),
                        ("category", pa.string()), ("source", pa.string()), ("PassRate_32BTrained", pa.float64()),
                        ("PassRate_7BTrained", pa.float64()), ("qid", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "39Krelease.parquet")
    if as_zip:
        with zipfile.ZipFile(root / "images.zip", "w") as archive:
            for rel, data in images.items():
                archive.writestr(rel, data)
    else:
        for rel, data in images.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
    return root / "39Krelease.parquet"


def write_json(path: Path, records: list[dict[str, Any]], lines: bool = False) -> Path:
    """A JSON array file, or JSON lines."""
    if lines:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    return path


SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """A byte-level BPE trained on a few strings, with Qwen2-VL's special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["what is the value of the bar <think> </think> <answer> </answer> find x"], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    return fast


def tiny_processor():
    """A Qwen2.5-VL processor around `tiny_tokenizer`, with small images (<= 112x112 pixels)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = tiny_tokenizer()
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


ANSWER = "<think>\nThe bar for 2019 reaches 12.\n</think>\n\nThe value is 12."


def write_vision_r1(root: Path) -> tuple[Path, Path]:
    """Two files mirroring vision_r1_llava_cot_full.json and vision_r1_mulberry_sft_full.json."""
    (root / "llava_cot_images" / "coco").mkdir(parents=True)
    (root / "mulberry_images" / "chartqa").mkdir(parents=True)
    (root / "llava_cot_images" / "coco" / "1.jpg").write_bytes(encode(chart_image(41), "JPEG"))
    (root / "llava_cot_images" / "coco" / "2.jpg").write_bytes(encode(chart_image(42), "JPEG"))
    (root / "llava_cot_images" / "coco" / "bad.jpg").write_bytes(b"not an image")
    (root / "mulberry_images" / "chartqa" / "3.png").write_bytes(encode(chart_image(43)))
    llava = write_json(root / "vision_r1_llava_cot_full.json", [
        {"id": "a1", "image": "coco/1.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is the value in 2019?"}, {"from": "gpt", "value": ANSWER}]},
        {"id": "a2", "image": "coco/2.jpg", "conversations": [
            {"from": "human", "value": "How many bars?"}, {"from": "gpt", "value": "<think>count</think> 4"}]},
        {"id": "a3", "image": "coco/missing.jpg", "conversations": [
            {"from": "human", "value": "<image>?"}, {"from": "gpt", "value": "x"}]},
        {"id": "a4", "image": "coco/bad.jpg", "conversations": [
            {"from": "human", "value": "<image>?"}, {"from": "gpt", "value": "x"}]},
        {"id": "a5", "image": "coco/1.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is the value in 2019?"}, {"from": "gpt", "value": ""}]},
        {"id": "a6", "image": "coco/1.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is the value in 2019?"}, {"from": "gpt", "value": ANSWER}]},
    ])
    mulberry = write_json(root / "vision_r1_mulberry_sft_full.json", [
        {"id": "m1", "images": ["chartqa/3.png"], "conversations": [
            {"from": "user", "value": "<image>Which is larger?"}, {"from": "assistant", "value": "<think>r</think>B"},
            {"from": "user", "value": "And the smallest?"}, {"from": "assistant", "value": "<think>r</think>A"}]},
        {"id": "m2", "images": ["chartqa/3.png", "chartqa/3.png"], "conversations": [
            {"from": "user", "value": "<image>Only one placeholder"}, {"from": "assistant", "value": "x"}]},
    ])
    return llava, mulberry


def vision_r1_roots(root: Path) -> list[str]:
    """The image folders `write_vision_r1` creates."""
    return [str(root / "llava_cot_images"), str(root / "mulberry_images")]
