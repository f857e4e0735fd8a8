"""Padded per-group layout: the batch [B] viewed as [G, N] (N = largest group) without Python loops.

Within a group, slots follow ascending row index, so "first slot" == "lowest row index"; every
tie-break in CARE ("then the lowest row index") is therefore a first-occurrence argmax/sort in
slot order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GroupLayout:
    """Mapping between rows [B] and padded slots [G, N].

    Attributes:
        group_ids: LongTensor[G], the caller's group ids, in order of first appearance.
        row_group: LongTensor[B], dense group 0..G-1 of each row.
        row_slot: LongTensor[B], slot of each row inside its group (rank by row index).
        slot_row: LongTensor[G, N], row of each slot, -1 on padding.
        valid: BoolTensor[G, N], True where the slot holds a row.
        flat_slot: LongTensor[B], row_group * N + row_slot (the row's position in [G * N]).
        counts: LongTensor[G], group sizes.
        contiguous: True when rows are already laid out as [G, N] (each group's rows adjacent,
            all groups of size N), so per-row tensors are viewed instead of scattered.
    """

    group_ids: torch.Tensor
    row_group: torch.Tensor
    row_slot: torch.Tensor
    slot_row: torch.Tensor
    valid: torch.Tensor
    flat_slot: torch.Tensor
    counts: torch.Tensor
    contiguous: bool

    @property
    def num_groups(self) -> int:
        return self.slot_row.shape[0]

    @property
    def max_size(self) -> int:
        return self.slot_row.shape[1]

    def to_slots(self, x: torch.Tensor, fill: float | int | bool = 0) -> torch.Tensor:
        """Scatter a per-row tensor x[B, ...] into [G, N, ...], padding with `fill`."""
        G, N = self.slot_row.shape
        if self.contiguous:
            return x.reshape(G, N, *x.shape[1:])
        out = torch.full((G * N, *x.shape[1:]), fill, dtype=x.dtype, device=x.device)
        out.index_copy_(0, self.flat_slot, x)
        return out.view(G, N, *x.shape[1:])

    def gather_slots(self, x: torch.Tensor) -> torch.Tensor:
        """Like `to_slots` but padding slots hold a copy of row 0 instead of `fill`.

        One index_select (read + write once) instead of fill + scatter (two writes): the cheap
        way to lay out large per-row tensors such as embeddings [B, H]. Callers must mask out
        padding slots themselves.
        """
        G, N = self.slot_row.shape
        if self.contiguous:
            return x.reshape(G, N, *x.shape[1:])
        return x.index_select(0, self.slot_row.clamp(min=0).reshape(-1)).view(G, N, *x.shape[1:])

    def to_rows(self, y: torch.Tensor) -> torch.Tensor:
        """Gather a slot tensor y[G, N, ...] back to rows [B, ...]."""
        if self.contiguous:
            return y.reshape(-1, *y.shape[2:])
        return y.reshape(-1, *y.shape[2:]).index_select(0, self.flat_slot)


def group_layout(index: torch.Tensor) -> GroupLayout:
    """Build the [G, N] layout of `index` (LongTensor[B]; ids need not be contiguous or sorted).

    Cost: one unique (a sort) and one stable argsort over B, plus O(B) scatters.
    """
    if index.dim() != 1:
        raise ValueError(f"index must be 1-D [B], got shape {tuple(index.shape)}")
    device = index.device
    B = index.shape[0]
    uniq, inv = torch.unique(index, sorted=True, return_inverse=True)
    G = uniq.shape[0]
    # Number groups by first appearance, so a batch already stored group after group (verl's
    # interleaved repeat) is contiguous whatever its ids are.
    first = torch.full((G,), B, dtype=torch.long, device=device)
    first.scatter_reduce_(0, inv, torch.arange(B, device=device), reduce="amin")
    by_first = torch.argsort(first)
    dense = torch.empty_like(by_first)
    dense[by_first] = torch.arange(G, device=device)
    group_ids = uniq[by_first]
    row_group = dense[inv]
    counts = torch.bincount(row_group, minlength=G)
    if B == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return GroupLayout(
            group_ids,
            empty,
            empty,
            torch.empty(0, 0, dtype=torch.long, device=device),
            torch.empty(0, 0, dtype=torch.bool, device=device),
            empty,
            counts,
            True,
        )
    # Stable sort by group keeps row-index order inside each group.
    order = torch.argsort(row_group, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot_sorted = torch.arange(B, device=device) - starts[row_group[order]]
    row_slot = torch.empty_like(slot_sorted)
    row_slot[order] = slot_sorted
    N = int(counts.max())
    contiguous = B == G * N and bool((order == torch.arange(B, device=device)).all())
    slot_row = torch.full((G, N), -1, dtype=torch.long, device=device)
    slot_row[row_group, row_slot] = torch.arange(B, device=device)
    valid = slot_row >= 0
    flat_slot = row_group * N + row_slot
    return GroupLayout(group_ids, row_group, row_slot, slot_row, valid, flat_slot, counts, contiguous)


def ranks_from_order(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation along dim 1: rank[g, order[g, i]] = i. order: LongTensor[G, N]."""
    G, N = order.shape
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=order.device).expand(G, N))
    return rank


def first_true(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first True along dim 1 (0 for an all-False row). mask: BoolTensor[G, N]."""
    # argmax returns the first maximal index, which is the lowest-row-index tie-break.
    return mask.to(torch.uint8).argmax(dim=1)
