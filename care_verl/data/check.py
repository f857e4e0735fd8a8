"""Start-up check of RL parquet files: every row verl's ``RLHFDataset`` and our reward will read.

verl reads rows lazily inside a Ray worker, so a malformed row (no prompt, a non-chat prompt, no
ground truth, an image that does not decode, ``<image>`` placeholders that do not match the
images) would crash a run hours in, or be scored silently as wrong. ``check_rl_file`` reads the
file once, in record batches, and reports each bad row by file and row number.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_PLACEHOLDER = "<image>"
BATCH_ROWS = 256


@dataclass
class FileCheck:
    """Problems found in one file: ``(row, message)``; ``rows`` rows were read."""

    path: str
    rows: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    total_problems: int = 0

    def add(self, row: int, message: str, keep: int) -> None:
        self.total_problems += 1
        if len(self.problems) < keep:
            self.problems.append((row, message))

    def summary(self) -> str:
        lines = [f"{self.path} row {row}: {msg}" if row >= 0 else f"{self.path}: {msg}" for row, msg in self.problems]
        more = self.total_problems - len(self.problems)
        if more > 0:
            lines.append(f"... and {more} more bad rows in {self.path}")
        return "\n  ".join(lines)


def _prompt_problem(prompt: Any) -> str | None:
    if isinstance(prompt, str):
        return None if prompt.strip() else "empty prompt"
    if not isinstance(prompt, list) or not prompt:
        return f"prompt must be a non-empty list of chat messages, got {type(prompt).__name__}"
    for j, msg in enumerate(prompt):
        if not isinstance(msg, dict) or msg.get("role") is None or "content" not in msg:
            return f"prompt message {j} needs 'role' and 'content'"
        if msg["content"] is None:
            return f"prompt message {j} has no content"
    return None


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    parts = []
    for msg in prompt:
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"]
            parts += [IMAGE_PLACEHOLDER for c in content if isinstance(c, dict) and c.get("type") == "image"]
    return "".join(parts)


def _image_problem(image: Any, base: Path) -> str | None:
    from PIL import Image

    try:
        if isinstance(image, dict) and image.get("bytes"):
            with Image.open(io.BytesIO(image["bytes"])) as im:
                im.verify()
        elif isinstance(image, dict) and image.get("path") or isinstance(image, str):
            path = Path(image["path"] if isinstance(image, dict) else image)
            path = path if path.is_absolute() else base / path
            with Image.open(path) as im:
                im.verify()
        else:
            return "image has neither bytes nor a path"
    except Exception as exc:  # PIL raises many types for bad data
        return f"image does not decode ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def row_problems(row: dict, prompt_key: str, image_key: str | None, base: Path) -> list[str]:
    """Everything wrong with one row (empty if it is usable)."""
    problems = []
    if prompt_key not in row:
        return [f"no '{prompt_key}' column"]
    prompt = row[prompt_key]
    bad_prompt = _prompt_problem(prompt)
    if bad_prompt:
        problems.append(bad_prompt)
    reward_model = row.get("reward_model")
    truth = reward_model.get("ground_truth") if isinstance(reward_model, dict) else None
    if truth is None or (isinstance(truth, str) and not truth.strip()) or (isinstance(truth, list) and not truth):
        problems.append("reward_model.ground_truth is missing or empty")
    images = row.get(image_key) if image_key else None
    images = list(images) if images is not None else []
    for j, image in enumerate(images):
        bad = _image_problem(image, base)
        if bad:
            problems.append(f"image {j}: {bad}")
    if not bad_prompt:
        placeholders = _prompt_text(prompt).count(IMAGE_PLACEHOLDER)
        if images and placeholders != len(images):
            problems.append(f"{placeholders} '{IMAGE_PLACEHOLDER}' placeholders for {len(images)} images")
    return problems


def check_rl_file(path: str | Path, prompt_key: str = "prompt", image_key: str | None = "images",
                  keep: int = 5) -> FileCheck:
    """Read ``path`` (parquet) in record batches and collect the bad rows (first ``keep`` kept)."""
    import pyarrow.parquet as pq

    path = Path(path)
    result = FileCheck(str(path))
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        result.add(-1, f"not a readable parquet file ({type(exc).__name__}: {str(exc)[:200]})", keep)
        return result
    names = set(pf.schema_arrow.names)
    if prompt_key not in names:
        result.add(-1, f"no '{prompt_key}' column (columns: {sorted(names)})", keep)
        return result
    columns = [c for c in (prompt_key, image_key, "reward_model") if c and c in names]
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        for row in batch.to_pylist():
            for problem in row_problems(row, prompt_key, image_key, path.parent):
                result.add(result.rows, problem, keep)
            result.rows += 1
    if result.rows == 0:
        result.add(-1, "the file has no rows", keep)
    return result
