"""Micro-batches of rows of similar length, for engines that pad each micro-batch.

Without remove-padding (the CPU runtime: no flash-attn varlen kernel), verl's FSDP engine pads every
micro-batch to its longest row (``prepare_model_inputs``,
verl/workers/engine/fsdp/transformer_impl.py:1281-1299), so a forward or backward costs about
``rows x longest row``. verl's dynamic-batch split (``rearrange_micro_batches``,
verl/utils/seqlen_balancing.py:348) only balances the *unpadded* token sums and makes one
micro-batch whenever they fit the budget: one long row pads every other row to its length. CARE's
RGR rows are such rows (failed reasoning + repair cue + continuation: ~110 response tokens in the
demo against ~35), so in the demo a 32-row update mini-batch with one of them computes ~4960 padded
tokens for ~2900 real ones.

:func:`padded_partition` splits the rows, sorted by length, into contiguous runs that minimise the
padded tokens plus a fixed cost per extra micro-batch (the engine's per-forward overhead, in
token-equivalents), under verl's own rule that a micro-batch's unpadded tokens fit the budget.
The loss is unchanged: verl normalises every micro-batch's loss by the whole mini-batch's token
count (``batch_num_tokens``, transformer_impl.py:726-732) and restores row order from the returned
index lists; only the float summation order of the gradient changes.
"""

from __future__ import annotations

from collections.abc import Sequence

# A micro-batch's fixed cost in padded-token equivalents: one more micro-batch of the demo's model
# costs ~13 ms in forward + backward (~250 tokens at 52 us each) and ~5 ms forward-only (~300
# tokens at 16 us): benchmarks/RESULTS.md, issue 13, "Micro-batches that pad less".
OVERHEAD_TOKENS = 256

# Above this many rows per call the quadratic search is not worth it; verl's split is used.
MAX_ROWS = 1024


def padded_cost(lengths: Sequence[int], parts: Sequence[Sequence[int]], overhead_tokens: int = OVERHEAD_TOKENS) -> int:
    """Padded tokens of ``parts`` (each ``len(part) x`` its longest row) plus ``overhead_tokens`` per part."""
    return sum(len(p) * max(lengths[i] for i in p) + overhead_tokens for p in parts if p)


def padded_partition(lengths: Sequence[int], max_tokens: int, overhead_tokens: int = OVERHEAD_TOKENS) -> list[list[int]]:
    """Row indices split into micro-batches of similar length.

    Args:
        lengths: ``(N,)`` unpadded tokens of each row (prompt + response), every one ``<= max_tokens``.
        max_tokens: the most unpadded tokens a micro-batch may hold (verl's ``max_token_len``).
        overhead_tokens: the cost of one more micro-batch, in padded tokens.

    Returns:
        Lists of row indices (every row exactly once), shortest rows first; each list's rows in
        ascending length (ties by index). Exact minimum of :func:`padded_cost` over contiguous runs of
        the rows sorted by length, which without the budget is the minimum over all partitions.
    """
    n = len(lengths)
    if n == 0:
        return []
    if max(lengths) > max_tokens:
        raise ValueError(f"a row of {max(lengths)} tokens exceeds the micro-batch budget of {max_tokens}")
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    sorted_len = [lengths[i] for i in order]
    inf = float("inf")
    best = [0.0] + [inf] * n  # best[j]: cost of the first j sorted rows
    cut = [0] * (n + 1)  # cut[j]: where the last run of the first j rows starts
    for j in range(1, n + 1):
        longest, tokens = sorted_len[j - 1], 0
        for i in range(j - 1, -1, -1):  # the last run is rows i..j-1; its longest row is j-1
            tokens += sorted_len[i]
            if tokens > max_tokens:
                break
            cost = best[i] + (j - i) * longest + overhead_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    runs, j = [], n
    while j > 0:
        runs.append(order[cut[j]:j])
        j = cut[j]
    return runs[::-1]
