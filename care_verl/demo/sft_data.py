"""SFT data for the demo: verl multi-turn SFT parquet rows (messages + images) from the synthetic tasks.

verl reads them with ``care_verl.adapter.sft.CachedMultiTurnSFTDataset``.
"""

from __future__ import annotations

from care_verl.data import synthetic


def sft_row(item: synthetic.SyntheticItem, task: str, difficulty: int, split: str, index: int) -> dict:
    """One row of verl's multi-turn SFT schema: user (image + question), assistant (think + answer)."""
    return {
        "data_source": f"synthetic_{task}",
        "messages": [
            {"role": "user", "content": synthetic.prompt_text(item.question)},
            {"role": "assistant", "content": synthetic.sft_response(item)},
        ],
        "images": [{"bytes": synthetic.png_bytes(item.image)}],
        "extra_info": {"split": split, "index": index, "task": task, "difficulty": difficulty, "answer": item.answer},
    }


def build_sft_rows(tasks: tuple[str, ...], difficulty: int, n: int, seed: int, split: str) -> list[dict]:
    """``n`` SFT rows cycling through ``tasks``; same items as :func:`synthetic.build_rows`."""
    rows = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        rows.append(sft_row(synthetic.generate_item(task, difficulty, seed, split, i), task, difficulty, split, i))
    return rows
