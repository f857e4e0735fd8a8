"""Benchmark rows in each dataset's real (Hub) schema, with PIL-generated images, for the tests.

Parquet files mimic what ``datasets`` writes for Image columns (``{"bytes", "path"}`` structs);
the MathVista JSON variant uses relative image paths, as the original release does.
Every image has its own solid colour (`COLORS`), so tests can tell which image went where.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

COLORS = {
    "red": (220, 20, 20),
    "green": (20, 200, 20),
    "blue": (20, 20, 220),
    "yellow": (230, 230, 20),
    "purple": (150, 20, 150),
    "cyan": (20, 200, 200),
}


def png(color: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """PNG bytes of a solid image."""
    buffer = io.BytesIO()
    Image.new("RGB", size, COLORS[color]).save(buffer, format="PNG")
    return buffer.getvalue()


def color_of(data: bytes) -> str:
    """The `COLORS` name of a solid image."""
    pixel = Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))
    return min(COLORS, key=lambda name: sum(abs(a - b) for a, b in zip(COLORS[name], pixel)))


def image_cell(color: str | None) -> dict[str, Any] | None:
    return None if color is None else {"bytes": png(color), "path": None}


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def mathvista_rows() -> list[dict[str, Any]]:
    base = {"precision": None, "unit": None, "choices": None, "metadata": {"split": "testmini"}}
    return [
        {**base, "pid": "1", "question": "Which shape is red?", "image": "images/1.png",
         "decoded_image": image_cell("red"), "choices": ["circle", "square", "triangle"], "answer": "square",
         "question_type": "multi_choice", "answer_type": "text"},
        {**base, "pid": "2", "question": "How many dots are there?", "image": "images/2.png",
         "decoded_image": image_cell("green"), "answer": "3", "question_type": "free_form", "answer_type": "integer"},
        {**base, "pid": "3", "question": "What is the slope?", "image": "images/3.png",
         "decoded_image": image_cell("blue"), "answer": "1.45", "precision": 2.0, "question_type": "free_form",
         "answer_type": "float"},
        {**base, "pid": "4", "question": "List the values.", "image": "images/4.png",
         "decoded_image": image_cell("yellow"), "answer": "[1, 2, 3]", "question_type": "free_form",
         "answer_type": "list"},
        {**base, "pid": "5", "question": "How long is the side?", "image": "images/5.png",
         "decoded_image": image_cell("purple"), "answer": "12", "unit": "cm", "question_type": "free_form",
         "answer_type": "integer"},
    ]


def mathverse_rows() -> list[dict[str, Any]]:
    mc = "In triangle ABC, angle A = 80.0, angle B = 60.0, then angle CED is ()\nChoices:\nA:40°\nB:60°\nC:120°\nD:140°"
    common = {"metadata": {"split": "testmini"}, "query_cot": "", "query_wo": ""}
    return [
        {**common, "sample_index": "1", "problem_index": "1", "problem_version": "Text Dominant", "question": mc,
         "image": image_cell("red"), "answer": "D", "question_type": "multi-choice", "question_for_eval": mc},
        {**common, "sample_index": "5", "problem_index": "1", "problem_version": "Vision Only", "question": "",
         "image": image_cell("green"), "answer": "B", "question_type": "multi-choice", "question_for_eval": mc},
        {**common, "sample_index": "6", "problem_index": "2", "problem_version": "Text Lite",
         "question": "Find the ratio of AB to BC.", "image": image_cell("blue"), "answer": "\\frac{1}{2}",
         "question_type": "free-form", "question_for_eval": "Find the ratio of AB to BC."},
    ]


def mathvision_rows() -> list[dict[str, Any]]:
    common = {"solution": "", "level": 2, "subject": "arithmetic"}
    return [
        {**common, "id": "1", "question": "How many squares are there?\n<image1>",
         "options": ["2", "4", "6", "8", "10"],
         "image": "images/1.jpg", "decoded_image": image_cell("red"), "answer": "B"},
        {**common, "id": "2", "question": "<image1>\nWhat is the missing number?", "options": [],
         "image": "images/2.jpg", "decoded_image": image_cell("green"), "answer": "7"},
        {**common, "id": "3", "question": "Which picture shows the cube unfolded?",
         "options": ["A", "B", "C", "D", "E"],
         "image": "images/3.jpg", "decoded_image": image_cell("blue"), "answer": "E"},
    ]


def _mmmu_images(*colors: str | None) -> dict[str, Any]:
    cells = {f"image_{k}": None for k in range(1, 8)}
    for k, color in enumerate(colors, start=1):
        cells[f"image_{k}"] = image_cell(color)
    return cells


def mmmu_rows() -> list[dict[str, Any]]:
    common = {"explanation": "", "img_type": "['Diagrams']", "topic_difficulty": "Easy", "subfield": "Geometry"}
    return [
        # Mentions image 2 before image 1, and image 1 twice; options are images too.
        {**common, "id": "validation_Math_1", "question": "Compare <image 2> with <image 1>. Which matches <image 1>?",
         "options": "['<image 3>', 'none of them']", "answer": "A", "question_type": "multiple-choice",
         **_mmmu_images("red", "green", "blue")},
        {**common, "id": "validation_Math_2", "question": "<image 1> What is x?", "options": "[]",
         "answer": "['24', '24.0']", "question_type": "open", **_mmmu_images("yellow")},
        {**common, "id": "validation_Art_3", "question": "Who painted this?", "options": "['Monet', 'Manet', 'Degas']",
         "answer": "C", "question_type": "multiple-choice", **_mmmu_images("purple")},
    ]


def mmmu_pro_std_rows() -> list[dict[str, Any]]:
    options = [f"option {i}" for i in range(10)]
    return [
        {"id": "test_Physics_1", "question": "<image 1> Which option is last?", "options": str(options),
         "answer": "J", "explanation": "", "img_type": "['Plots']", "topic_difficulty": "Hard", "subject": "Physics",
         **_mmmu_images("cyan")},
        {"id": "test_Physics_2", "question": "<image 1> Which option is first?", "options": str(options),
         "answer": "A", "explanation": "", "img_type": "['Plots']", "topic_difficulty": "Hard", "subject": "Physics",
         **_mmmu_images("red")},
    ]


def mmmu_pro_vision_rows() -> list[dict[str, Any]]:
    return [
        {"id": "test_Art_1", "image": image_cell("green"), "options": "['Monet', 'Manet', 'Degas', 'Renoir']",
         "answer": "C", "subject": "Art"},
        {"id": "test_Art_2", "image": image_cell("blue"), "options": "['1', '2', '3', '4']", "answer": "A",
         "subject": "Art"},
    ]


ROWS = {
    "mathvista": mathvista_rows,
    "mathverse": mathverse_rows,
    "mathvision": mathvision_rows,
    "mmmu": mmmu_rows,
    "mmmu_pro_std": mmmu_pro_std_rows,
    "mmmu_pro_vision": mmmu_pro_vision_rows,
}


def write_all(root: Path) -> dict[str, str]:
    """Write one parquet per benchmark under `root`; returns ``{benchmark: path}``."""
    return {name: str(write_parquet(root / name / "test.parquet", make())) for name, make in ROWS.items()}


def write_mathvista_json(root: Path) -> Path:
    """MathVista as a JSON list with only relative image paths, images on disk next to it."""
    rows = []
    for row in mathvista_rows():
        color = color_of(row["decoded_image"]["bytes"])
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / row["image"]).write_bytes(png(color))
        rows.append({k: v for k, v in row.items() if k != "decoded_image"})
    path = root / "testmini.json"
    path.write_text(json.dumps(rows))
    return path
