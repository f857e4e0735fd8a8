"""SFT data for the demo: verl multi-turn SFT parquet rows (messages + images) from the synthetic tasks.

Cold start with reflection (the paper's Vision-R1-cold data has self-correction; a 0.8M model
cannot follow an instruction it never saw): a stated share of the rows (``reflect_share``) is

    <think>{a wrong reasoning}{care.rgr.cue}{the item's reasoning}</think><answer>{right answer}</answer>

where the wrong reasoning is the reasoning trace of another item of the same task with a different
answer (a plausible misreading, stated consistently to a wrong conclusion). That is exactly the
text RGR prompts the policy with (prompt + failed reasoning up to ``</think>`` + cue), so the
repaired context is text the model has seen. ``response_context`` holds the wrong reasoning and
the cue: :class:`care_verl.adapter.tools.sft.CachedMultiTurnSFTDataset` gives those tokens loss-mask 0,
so SFT teaches the continuation after the cue, never the wrong reasoning itself.

verl reads the rows with ``care_verl.adapter.tools.sft.CachedMultiTurnSFTDataset``.
"""

from __future__ import annotations

import random

from care_verl.data import synthetic

THINK_OPEN = "<think>"


def sft_row(item: synthetic.SyntheticItem, task: str, difficulty: int, split: str, index: int,
            response: str | None = None, context: str = "") -> dict:
    """One row of verl's multi-turn SFT schema: user (image + question), assistant (think + answer).

    ``context``: the first characters of the assistant turn that get no loss (empty: all of it is trained).
    """
    response = synthetic.sft_response(item) if response is None else response
    if not response.startswith(context):
        raise ValueError(f"row {index}: response_context is not a prefix of the assistant turn")
    return {
        "data_source": f"synthetic_{task}",
        "messages": [
            {"role": "user", "content": synthetic.prompt_text(item.question)},
            {"role": "assistant", "content": response},
        ],
        "images": [{"bytes": synthetic.png_bytes(item.image)}],
        "response_context": context,
        "extra_info": {"split": split, "index": index, "task": task, "difficulty": difficulty, "answer": item.answer,
                       "reflect": bool(context)},
    }


def wrong_reasoning(task: str, difficulty: int, seed: int, split: str, index: int, answer: str) -> str:
    """The reasoning of another item of the same task whose answer differs from ``answer`` (deterministic)."""
    rng = random.Random(f"wrong|{task}|{difficulty}|{seed}|{split}|{index}")
    for _ in range(1000):
        other = synthetic.generate_item(task, difficulty, seed, split, 10_000_000 + rng.randrange(10_000_000))
        if other.answer != answer:
            return other.think
    raise RuntimeError(f"no item of task {task!r} with an answer other than {answer!r}")


def reflection_response(item: synthetic.SyntheticItem, wrong_think: str, cue: str) -> tuple[str, str]:
    """(assistant turn, its untrained context): wrong reasoning, cue, then the item's reasoning and answer."""
    context = f"{THINK_OPEN}{wrong_think}{cue}"
    return f"{context}{item.think}</think><answer>{item.answer}</answer>", context


def is_reflect_row(index: int, share: float) -> bool:
    """Whether row ``index`` is a reflection row: evenly spread, exactly round(n * share) of any n rows."""
    return int((index + 1) * share + 1e-9) > int(index * share + 1e-9)


def build_sft_rows(tasks: tuple[str, ...], difficulty: int, n: int, seed: int, split: str,
                   reflect_share: float = 0.0, cue: str = "") -> list[dict]:
    """``n`` SFT rows cycling through ``tasks``; same items as :func:`synthetic.build_rows`.

    A share ``reflect_share`` of the rows (spread evenly) are reflection rows built around ``cue``
    (RGR's repair cue, ``care.rgr.cue``).
    """
    if not 0.0 <= reflect_share <= 1.0:
        raise ValueError(f"reflect_share must be in [0, 1], got {reflect_share!r}")
    if reflect_share > 0 and not cue:
        raise ValueError("reflection rows need the repair cue (care.rgr.cue)")
    rows = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        item = synthetic.generate_item(task, difficulty, seed, split, i)
        if is_reflect_row(i, reflect_share):
            wrong = wrong_reasoning(task, difficulty, seed, split, i, item.answer)
            response, context = reflection_response(item, wrong, cue)
            rows.append(sft_row(item, task, difficulty, split, i, response, context))
        else:
            rows.append(sft_row(item, task, difficulty, split, i))
    return rows
