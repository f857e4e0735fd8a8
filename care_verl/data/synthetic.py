"""Synthetic verifiable visual tasks, drawn locally with PIL (no downloads).

Used by the CPU recipes and tests: every row is a verl RL parquet row (same schema as the
real-data builders) whose answer our verifier checks as a number.

Tasks (``difficulty`` 1..3 widens the value range and adds distractors):
- ``bars``:   two (or more) vertical bars; "What is the height of the tallest bar?"
- ``count``:  shapes scattered on a grid; "How many shapes are in the image?"
- ``barval``: read one value off a bar chart: "What is the height of the red bar?" (2-3 coloured bars)
- ``barsum``: add values drawn in the image: "What is the sum of the bar heights?" (2-3 bars)
- ``lines``:  compare lengths: "What is the length of the longest line?" (2-3 horizontal lines)

Every answer is an integer the verifier checks as ``answer_type: numeric``; every reasoning trace
states what it reads off the image, then combines it (max, lookup, sum), so a wrong answer can be a
near miss (one value misread) or a slip in the last step.

A row's image and answer are a pure function of ``(task, difficulty, seed, index)``; the train
and test splits use disjoint seed streams, so they never share an item.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

TASKS = ("bars", "count", "barval", "barsum", "lines")
_SPLIT_OFFSET = {"train": 0, "test": 1_000_003}  # disjoint per-split seed streams


@dataclass(frozen=True)
class SyntheticItem:
    """One generated problem: the image, its question, the reasoning trace and the answer."""

    image: Image.Image
    question: str
    think: str
    answer: str


def _rng(task: str, difficulty: int, seed: int, split: str, index: int) -> random.Random:
    # String seeds hash deterministically in `random` (unlike hash()), so items are reproducible.
    return random.Random(f"{task}|{difficulty}|{seed}|{_SPLIT_OFFSET[split] + index}")


def make_bars(rng: random.Random, difficulty: int, size: int = 56) -> SyntheticItem:
    """Bars of distinct heights 1..(9*difficulty capped at 9); answer the tallest height."""
    n_bars = 2 if difficulty < 3 else 3
    heights = rng.sample(range(1, 10), n_bars)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    width = size // (2 * n_bars + 1)
    unit = (size - 4) / 9
    for i, h in enumerate(heights):
        x0 = width * (2 * i + 1)
        color = (40, 80, 200) if difficulty == 1 else rng.choice([(40, 80, 200), (200, 60, 40), (40, 160, 60)])
        draw.rectangle([x0, size - 2 - h * unit, x0 + width - 1, size - 2], fill=color)
    names = ["left", "middle", "right"] if n_bars == 3 else ["left", "right"]
    parts = [f"The {name} bar is {h}." for name, h in zip(names, heights)]
    tallest = max(heights)
    think = " ".join(parts) + f" The tallest is {tallest}."
    return SyntheticItem(img, "What is the height of the tallest bar?", think, str(tallest))


def make_count(rng: random.Random, difficulty: int, size: int = 56) -> SyntheticItem:
    """1..(3+2*difficulty) shapes in distinct cells of a 3x3 grid; answer the count."""
    n = rng.randint(1, min(9, 3 + 2 * difficulty))
    cells = rng.sample(range(9), n)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    cell = size // 3
    for c in cells:
        x, y = (c % 3) * cell + cell // 4, (c // 3) * cell + cell // 4
        box = [x, y, x + cell // 2, y + cell // 2]
        if difficulty > 1 and rng.random() < 0.5:
            draw.rectangle(box, fill=(200, 60, 40))
        else:
            draw.ellipse(box, fill=(40, 80, 200))
    think = "I count the shapes: " + " ".join(str(i) for i in range(1, n + 1)) + f". The total is {n}."
    return SyntheticItem(img, "How many shapes are in the image?", think, str(n))


COLORS = {"red": (200, 60, 40), "blue": (40, 80, 200), "green": (40, 160, 60)}


def _draw_bars(heights: list[int], colors: list[tuple[int, int, int]], size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    n = len(heights)
    width = size // (2 * n + 1)
    unit = (size - 4) / 9
    for i, (h, color) in enumerate(zip(heights, colors)):
        x0 = width * (2 * i + 1)
        draw.rectangle([x0, size - 2 - h * unit, x0 + width - 1, size - 2], fill=color)
    return img


def make_barval(rng: random.Random, difficulty: int, size: int = 56) -> SyntheticItem:
    """2 (difficulty 1) or 3 bars of distinct colours; answer the height of the named colour.

    Difficulty 3 also allows equal heights, so the colour (not the rank) must decide."""
    n_bars = 2 if difficulty == 1 else 3
    names = rng.sample(sorted(COLORS), n_bars)
    heights = [rng.randint(1, 9) for _ in range(n_bars)] if difficulty == 3 else rng.sample(range(1, 10), n_bars)
    target = rng.randrange(n_bars)
    img = _draw_bars(heights, [COLORS[c] for c in names], size)
    parts = [f"The {c} bar is {h}." for c, h in zip(names, heights)]
    think = " ".join(parts) + f" So the {names[target]} bar is {heights[target]}."
    return SyntheticItem(img, f"What is the height of the {names[target]} bar?", think, str(heights[target]))


def make_barsum(rng: random.Random, difficulty: int, size: int = 56) -> SyntheticItem:
    """Two bars of heights 1..5 (difficulty 1) or 1..9 (2), or three bars of 1..6 (3); answer the sum."""
    n_bars, top = {1: (2, 5), 2: (2, 9), 3: (3, 6)}[difficulty]
    heights = [rng.randint(1, top) for _ in range(n_bars)]
    img = _draw_bars(heights, [COLORS["blue"]] * n_bars, size)
    names = ["left", "middle", "right"] if n_bars == 3 else ["left", "right"]
    parts = [f"The {name} bar is {h}." for name, h in zip(names, heights)]
    total = sum(heights)
    think = " ".join(parts) + " " + " + ".join(str(h) for h in heights) + f" = {total}."
    return SyntheticItem(img, "What is the sum of the bar heights?", think, str(total))


def make_lines(rng: random.Random, difficulty: int, size: int = 56) -> SyntheticItem:
    """2 (difficulty 1-2) or 3 (3) horizontal lines of distinct lengths 1..9; answer the longest.

    Difficulty 2+ shifts each line's start to the right at random, so the ends do not line up."""
    n_lines = 2 if difficulty < 3 else 3
    lengths = rng.sample(range(1, 10), n_lines)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    unit = (size - 8) / 12
    rows = [size * (i + 1) // (n_lines + 1) for i in range(n_lines)]
    for y, length in zip(rows, lengths):
        x0 = 2 + (rng.randint(0, int((9 - length) * unit)) if difficulty > 1 else 0)
        draw.rectangle([x0, y - 2, x0 + length * unit + 4, y + 2], fill=COLORS["blue"])
    names = ["top", "middle", "bottom"] if n_lines == 3 else ["top", "bottom"]
    parts = [f"The {name} line is {n}." for name, n in zip(names, lengths)]
    longest = max(lengths)
    think = " ".join(parts) + f" The longest is {longest}."
    return SyntheticItem(img, "What is the length of the longest line?", think, str(longest))


_MAKERS = {"bars": make_bars, "count": make_count, "barval": make_barval, "barsum": make_barsum, "lines": make_lines}


def generate_item(task: str, difficulty: int, seed: int, split: str, index: int) -> SyntheticItem:
    """Deterministically generate item ``index`` of a task/difficulty/seed/split."""
    if task not in _MAKERS:
        raise ValueError(f"unknown synthetic task {task!r}; choose from {TASKS}")
    if difficulty not in (1, 2, 3):
        raise ValueError(f"difficulty must be 1, 2 or 3, got {difficulty}")
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _MAKERS[task](_rng(task, difficulty, seed, split, index), difficulty)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def prompt_text(question: str) -> str:
    """The user turn: one image placeholder, the question, the output-format instruction."""
    return (
        f"<image>{question} Think inside <think></think>, "
        "then give the final answer inside <answer></answer>."
    )


def verl_row(item: SyntheticItem, task: str, difficulty: int, split: str, index: int) -> dict:
    """One row in verl's RL parquet schema (see docs/data.md)."""
    return {
        "data_source": f"synthetic_{task}",
        "prompt": [{"role": "user", "content": prompt_text(item.question)}],
        "images": [{"bytes": png_bytes(item.image)}],
        "ability": "visual_reasoning",
        "reward_model": {"style": "rule", "ground_truth": item.answer},
        "extra_info": {
            "split": split,
            "index": index,
            "answer_type": "numeric",
            "task": task,
            "difficulty": difficulty,
            "reference_think": item.think,
        },
    }


def sft_response(item: SyntheticItem) -> str:
    """The cold-start SFT target: a short think trace then the tagged answer."""
    return f"<think>{item.think}</think><answer>{item.answer}</answer>"


def build_rows(tasks: tuple[str, ...], difficulty: int, n: int, seed: int, split: str) -> list[dict]:
    """``n`` rows cycling through ``tasks`` (row i uses task i % len(tasks))."""
    rows = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        rows.append(verl_row(generate_item(task, difficulty, seed, split, i), task, difficulty, split, i))
    return rows


def write_parquet(rows: list[dict], path: str) -> str:
    """Write rows to a parquet file verl's RLHFDataset reads; returns the path."""
    import pandas as pd  # lazy: keeps `import care_verl.data.synthetic` light

    pd.DataFrame(rows).to_parquet(path)
    return path
