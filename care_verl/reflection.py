"""Reflection-Guided Resampling (RGR), the pure part: which rows, which context, what the new row is.

For every group with a correct anchor and at least one failure, one failure is re-decoded once
from a *repaired context*: the original prompt, the failed response's reasoning up to its
``</think>`` (when unclosed: up to its first ``<answer>``, end-of-turn tokens dropped), and a
repair cue. The new row replaces the old one in
place; its response is ``failed-think prefix + cue + continuation`` and the cue's tokens get
response-mask 0 (the policy never produced them, so they get no loss). The generation call
itself, verification and log-prob recomputation live in the verl adapter.

Modes (the paper's ablation): ``repair`` (cue inserted), ``promptless`` (same prefix, no cue),
``random`` (a uniformly chosen failure of the group, no cue, written into the first hard
negative's slot so training sees the same subgroup structure), ``off``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RepairPlan:
    """One RGR re-decode.

    Attributes:
        row: the batch row that will be replaced (the group's first hard negative).
        source_row: the failure whose reasoning is reused (== row except in ``random`` mode).
        prefix: token ids of the reused reasoning (the response up to its think-close tag).
        cue: token ids of the repair cue (empty for promptless/random).
        budget: the continuation's token budget (the response length).
        unclosed: the reused response had no think-close tag (its prefix was cut, see `think_prefix`).
    """

    row: int
    source_row: int
    prefix: list[int]
    cue: list[int]
    budget: int
    unclosed: bool = False

    @property
    def context_response(self) -> list[int]:
        """What precedes the continuation inside the assistant turn."""
        return self.prefix + self.cue


def find_subsequence(ids: list[int], pattern: tuple[int, ...]) -> int:
    """Index of the first occurrence of ``pattern`` in ``ids``, or -1."""
    n = len(pattern)
    for i in range(len(ids) - n + 1):
        if tuple(ids[i : i + n]) == pattern:
            return i
    return -1


def _first_hit(ids: list[int], variants: tuple[tuple[int, ...], ...]) -> int:
    hits = [i for i in (find_subsequence(ids, v) for v in variants) if i >= 0]
    return min(hits) if hits else -1


def think_prefix(
    response: list[int],
    close_variants: tuple[tuple[int, ...], ...],
    answer_open_variants: tuple[tuple[int, ...], ...] = (),
    stop_ids: tuple[int, ...] = (),
) -> list[int]:
    """The reasoning RGR reuses: the response up to (excluding) its first think-close tag.

    An unclosed response (a format failure) is cut before its first answer-open tag, and its
    trailing ``stop_ids`` (EOS, end-of-turn, padding) are dropped: otherwise the old answer would
    be graded again and the continuation would start after an end-of-turn token.
    """
    close = _first_hit(response, close_variants)
    if close >= 0:
        return response[:close]
    answer = _first_hit(response, answer_open_variants)
    prefix = list(response[:answer] if answer >= 0 else response)
    while prefix and prefix[-1] in stop_ids:
        prefix.pop()
    return prefix


def is_unclosed(response: list[int], close_variants: tuple[tuple[int, ...], ...]) -> bool:
    """True when ``response`` has no think-close tag."""
    return _first_hit(response, close_variants) < 0


def content_key(*parts) -> int:
    """A stable 63-bit key of token lists / ints / strings: the same content gives the same key in
    every process and launch (unlike ``hash``, which Python salts per process)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 1


def choose_sources(
    targets: torch.Tensor, index: torch.Tensor, correct: torch.Tensor, mode: str, seed: int,
    row_keys: list[int] | None = None,
) -> torch.Tensor:
    """Row whose reasoning each RGR target reuses.

    Args:
        targets: LongTensor[E], the first hard negative of each eligible group.
        index: LongTensor[B] group ids. correct: BoolTensor[B].
        mode: ``random`` picks a uniform failure of the target's group; other modes reuse the target.
        seed: the draw's seed (the run's seed and step).
        row_keys: B content keys (`content_key` of each row's prompt and response). The draw
            depends on these, not on the rows' positions: verl does not fix the order of rows
            across launches, and a resumed step must draw the same failure. Rows with equal keys
            hold the same tokens, so either is the same draw. Default: positions.
    Returns:
        LongTensor[E].
    """
    if mode != "random":
        return targets.clone()
    keys = list(range(len(index))) if row_keys is None else list(row_keys)
    sources = []
    for row in targets.tolist():  # one draw per eligible group (E is small: one per prompt)
        pool = sorted(((index == index[row]) & ~correct).nonzero().flatten().tolist(), key=lambda r: keys[r])
        generator = torch.Generator().manual_seed(content_key(seed, keys[row]))
        sources.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
    return torch.tensor(sources, dtype=torch.long)


def plan_repairs(
    targets: list[int],
    sources: list[int],
    prompts: dict[int, list[int]],
    responses: dict[int, list[int]],
    close_variants: tuple[tuple[int, ...], ...],
    cue: list[int],
    max_prompt_length: int,
    max_response_length: int,
    answer_open_variants: tuple[tuple[int, ...], ...] = (),
    stop_ids: tuple[int, ...] = (),
) -> tuple[list[RepairPlan], list[int]]:
    """Plans for every target whose repaired context fits the prompt length limit.

    The repaired context (prompt + reused reasoning + cue) is what the engine is prompted with,
    so it must fit ``max_prompt_length``; the continuation gets up to ``max_response_length``.
    The whole row therefore stays within ``max_prompt_length + max_response_length`` tokens.
    A response without a think-close tag is cut by `think_prefix` and its plan is marked
    ``unclosed`` (counted by the adapter as ``rgr/unclosed_think``).

    Returns:
        (plans, skipped_rows).
    """
    plans, skipped = [], []
    for row, src in zip(targets, sources):
        prefix = think_prefix(responses[src], close_variants, answer_open_variants, stop_ids)
        context = len(prompts[src]) + len(prefix) + len(cue)
        if context > max_prompt_length:
            skipped.append(row)
            continue
        unclosed = is_unclosed(responses[src], close_variants)
        plans.append(RepairPlan(row, src, prefix, list(cue), max_response_length, unclosed))
    return plans, skipped


def repaired_response(plan: RepairPlan, continuation: list[int]) -> tuple[list[int], list[int]]:
    """The new row's response ids and response mask (0 on the cue's tokens)."""
    ids = plan.prefix + plan.cue + list(continuation)
    mask = [1] * len(plan.prefix) + [0] * len(plan.cue) + [1] * len(continuation)
    return ids, mask


def extend_positions(prompt_positions: torch.Tensor, n_new: int) -> torch.Tensor:
    """Position ids for ``n_new`` text tokens after a prompt.

    Text tokens after the prompt continue from the last prompt position on every axis, for plain
    1-D positions and for Qwen-VL's stacked ``(4, P)`` (text + 3 M-RoPE) positions alike: the
    last prompt token is text, so its position is the running maximum.

    Args:
        prompt_positions: LongTensor[P] or LongTensor[R, P].
    Returns:
        LongTensor[P + n_new] or LongTensor[R, P + n_new].
    """
    last = prompt_positions[..., -1:]
    steps = torch.arange(1, n_new + 1, dtype=prompt_positions.dtype, device=prompt_positions.device)
    return torch.cat([prompt_positions, last + steps], dim=-1)
