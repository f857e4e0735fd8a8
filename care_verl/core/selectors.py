"""Anchor, pseudo-anchor and hard-negative selection, vectorised over groups in the [G, N] layout.

Slots inside a group are in ascending row-index order (see `grouping`), so "ties: lower row index"
is implemented by first-occurrence argmax/argmin and by stable sorts over slots.
"""

from __future__ import annotations

import torch

from care_verl.core.grouping import GroupLayout, first_true, ranks_from_order

_I64_MAX = torch.iinfo(torch.long).max
_MASK32 = 0xFFFFFFFF


def choose_anchor(
    correct: torch.Tensor, think_len: torch.Tensor, answer_len: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor = the correct rollout with the shortest think span; ties: shorter answer, lower row.

    Args:
        correct: BoolTensor[G, N], False on padding.
        think_len, answer_len: LongTensor[G, N].

    Returns:
        slot: LongTensor[G], the anchor's slot (0, meaningless, where `has` is False).
        has: BoolTensor[G], whether the group has a correct rollout.
    """
    t = torch.where(correct, think_len, _I64_MAX)
    cand = correct & (t == t.min(dim=1, keepdim=True).values)
    a = torch.where(cand, answer_len, _I64_MAX)
    cand &= a == a.min(dim=1, keepdim=True).values
    return first_true(cand), correct.any(dim=1)


def choose_pseudo_anchor(failed: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """Rescue pseudo-anchor = the failure with the highest old log-prob score; ties: lower row.

    Args:
        failed: BoolTensor[G, N], False on padding.
        logp: FloatTensor[G, N], each row's score from `rescue_anchor_score` (NaN counts as -inf).

    Returns:
        slot: LongTensor[G] (meaningless for groups without failures).
    """
    lp = torch.where(failed, torch.nan_to_num(logp, nan=-torch.inf), -torch.inf)
    cand = failed & (lp == lp.max(dim=1, keepdim=True).values)
    return first_true(cand)


def rescue_anchor_score(old_log_probs: torch.Tensor, response_mask: torch.Tensor, mode: str = "sum") -> torch.Tensor:
    """Per-row score of the rescue pseudo-anchor under the old policy.

    ``sum``: the sequence log-prob log pi_old(y) = sum_t log pi_old(y_t) (the paper's "highest
    log pi_old", and the released code's); it favours short failures. ``mean``: the per-token
    mean; it favours confident failures whatever their length.

    Args:
        old_log_probs: FloatTensor[B, T]. response_mask: Bool/0-1 Tensor[B, T].
        mode: "sum" | "mean".
    Returns:
        FloatTensor[B].
    """
    mask = response_mask.to(old_log_probs.dtype)
    total = (old_log_probs * mask).sum(dim=-1)
    if mode == "sum":
        return total
    if mode == "mean":
        return total / mask.sum(dim=-1).clamp_min(1)
    raise ValueError(f"care.rescue_anchor must be 'sum' or 'mean', got {mode!r}")


def cosine_distances(
    layout: GroupLayout, embeddings: torch.Tensor, chunk_bytes: int = 4 << 20
) -> torch.Tensor:
    """Within-group cosine distances d[g, i, j] = 1 - <e_i, e_j> / (|e_i| |e_j|).

    The Gram matrices come from batched matmuls [G, N, H] x [G, H, N]; norms are read off their
    diagonals, so the [B, H] embeddings are read once and never normalised into a new tensor.
    When the rows are not already stored group after group, groups are gathered in blocks of
    about `chunk_bytes` into one reused buffer (a loop over ~B*H*4/chunk_bytes memory tiles, not
    over groups): a full [G, N, H] copy would cost more than everything else here, mostly in page
    faults of the fresh allocation.

    Args:
        embeddings: FloatTensor[B, H] (any float dtype; computed in float32, or float64 if given).

    Returns:
        FloatTensor[G, N, N]; entries involving padding slots are finite but meaningless.
    """
    e = embeddings if embeddings.dtype in (torch.float32, torch.float64) else embeddings.float()
    e = e.contiguous()
    G, N = layout.slot_row.shape
    H = e.shape[1]
    if layout.contiguous:
        es = e.view(G, N, H)
        gram = torch.bmm(es, es.transpose(1, 2))
    else:
        gram = torch.empty(G, N, N, dtype=e.dtype, device=e.device)
        step = max(1, chunk_bytes // max(1, N * H * e.element_size()))
        buf = torch.empty(min(step, G) * N, H, dtype=e.dtype, device=e.device)
        for g0 in range(0, G, step):
            g1 = min(G, g0 + step)
            idx = layout.slot_row[g0:g1].clamp(min=0).reshape(-1)  # padding -> row 0 (masked later)
            blk = buf[: idx.numel()]
            torch.index_select(e, 0, idx, out=blk)
            bv = blk.view(g1 - g0, N, H)
            torch.bmm(bv, bv.transpose(1, 2), out=gram[g0:g1])
    # Same clamp as F.normalize: a zero embedding has cosine 0 to everything (distance 1).
    norms = torch.diagonal(gram, dim1=1, dim2=2).clamp_min(0).sqrt().clamp_min(1e-12)
    return 1.0 - gram / (norms.unsqueeze(2) * norms.unsqueeze(1))


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # 32-bit integer finaliser; constants < 2**27 keep every product inside int64 (no overflow).
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def _combine(h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _mix32((h ^ (v & _MASK32)) + 0x9E3779B9 & _MASK32)


def random_keys(group_ids: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Deterministic pseudo-random keys hash(seed, group id, slot), LongTensor[G, n] in [0, 2**32).

    The keys depend only on the seed, the caller's group id and the member's rank by row index
    inside its group, not on where the group sits in the batch or on other groups.
    """
    G = group_ids.shape[0]
    dev = group_ids.device
    h = _mix32(torch.full((G,), seed & _MASK32, dtype=torch.long, device=dev))
    h = _combine(h, torch.full_like(h, (seed >> 32) & _MASK32))
    h = _combine(h, group_ids)
    h = _combine(h, group_ids >> 32)
    slots = torch.arange(n, device=dev).expand(G, n)
    return _combine(h.unsqueeze(1).expand(G, n), slots)


def _stable_rank(key: torch.Tensor) -> torch.Tensor:
    """Rank of each slot when sorting `key` [G, N] ascending, ties by slot (stable)."""
    return ranks_from_order(torch.sort(key, dim=1, stable=True).indices)


def select_negatives(
    cand: torch.Tensor,
    dist_ref: torch.Tensor | None,
    dist: torch.Tensor | None,
    keys: torch.Tensor | None,
    k: int,
    m: int,
    selector: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick up to K negatives per group among the candidates.

    Args:
        cand: BoolTensor[G, N], candidate negatives (failures, minus the reference row).
        dist_ref: FloatTensor[G, N], cosine distance of each slot to the (pseudo-)anchor.
        dist: FloatTensor[G, N, N], within-group cosine distances (cosine_topk only).
        keys: LongTensor[G, N], random keys (random only).
        k, m: K and the cosine_topk pool size M.
        selector: cosine_topk | nearest | farthest | mixed | random.

    Returns:
        pick: LongTensor[G, N], pick order 0..K'-1 of chosen slots, -1 elsewhere.
        k_prime: LongTensor[G], number picked: min(K, |cand|) (cosine_topk: min(K, M, |cand|)).
    """
    G, N = cand.shape
    n_cand = cand.sum(dim=1)
    neg1 = torch.full_like(cand, -1, dtype=torch.long)
    if selector == "random":
        assert keys is not None
        kp = n_cand.clamp(max=k)
        rank = _stable_rank(torch.where(cand, keys, _I64_MAX))
        return torch.where(rank < kp.unsqueeze(1), rank, neg1), kp

    assert dist_ref is not None
    inf = torch.tensor(torch.inf, dtype=dist_ref.dtype, device=dist_ref.device)
    if selector in ("nearest", "farthest", "mixed"):
        kp = n_cand.clamp(max=k)
        if selector == "farthest":
            rank = _stable_rank(torch.where(cand, -dist_ref, inf))
            return torch.where(rank < kp.unsqueeze(1), rank, neg1), kp
        rank = _stable_rank(torch.where(cand, dist_ref, inf))
        if selector == "nearest":
            return torch.where(rank < kp.unsqueeze(1), rank, neg1), kp
        # mixed: ceil(K'/2) nearest, then the farthest of the remaining candidates.
        n_near = ((kp + 1) // 2).unsqueeze(1)
        near = rank < n_near
        rest = cand & ~near
        far_rank = _stable_rank(torch.where(rest, -dist_ref, inf))
        far = rest & (far_rank < kp.unsqueeze(1) - n_near)
        pick = torch.where(near, rank, torch.where(far, n_near + far_rank, neg1))
        return pick, kp

    if selector != "cosine_topk":
        raise ValueError(f"unknown selector {selector!r}")
    assert dist is not None
    # Pool = the M nearest candidates, in (distance, row) order.
    order = torch.sort(torch.where(cand, dist_ref, inf), dim=1, stable=True).indices
    pool = n_cand.clamp(max=m)
    kp = pool.clamp(max=k)
    # Distances re-indexed into pool order, so first-occurrence argmax = "earlier in pool order".
    dp = dist.gather(1, order.unsqueeze(2).expand(G, N, N)).gather(2, order.unsqueeze(1).expand(G, N, N))
    free = torch.arange(N, device=cand.device).unsqueeze(0) < pool.unsqueeze(1)
    pick_p = torch.full_like(neg1, -1)
    pick_p[:, 0] = torch.where(kp >= 1, 0, -1)
    free[:, 0] = False  # pool[0], the nearest failure, is always the first pick
    min_d = dp[:, 0, :]
    rows = torch.arange(G, device=cand.device)
    # Greedy farthest-first: K'-1 rounds (K is small), vectorised over groups.
    for s in range(1, min(k, N)):
        j = torch.where(free, min_d, -inf).argmax(dim=1)
        active = kp > s
        pick_p[rows, j] = torch.where(active, s, pick_p[rows, j])
        free[rows, j] &= ~active
        min_d = torch.minimum(min_d, dp[rows, j, :])
    pick = torch.empty_like(pick_p).scatter_(1, order, pick_p)
    return pick, kp
