"""CARE sequence-level advantages: anchored contrastive subgroups and full-negative rescue.

Everything is batched over groups in a padded [G, N] layout (see `grouping`); the only Python
loop is the greedy farthest-first selection, over K' <= K rounds.

Per group (see docs/core.md for the derivation and the closed forms):

* a correct rollout and >= 1 failure: S = anchor + K' hard negatives;
  z = (r - mean_S) / (std_S + eps) (population std), eq = sqrt(K / K') if equalize else 1;
  anchor and correct members: z * eq; failed members: -s * |z| * eq (s_refl if reflected).
* no correct rollout, >= 2 rollouts (rescue): pseudo-anchor t (highest old log-prob score:
  the sequence sum by default, care.rescue_anchor) and K'
  pseudo-negatives (the selector with t as reference); raw: +gamma / -gamma/K';
  zscore: the pseudo-rewards +gamma / -gamma/K' go through the formula above.
* anything else, and every row outside S: 0.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch

from care_verl.core.config import CareConfig
from care_verl.core.grouping import GroupLayout, group_layout
from care_verl.core.selectors import (
    choose_anchor,
    choose_pseudo_anchor,
    cosine_distances,
    random_keys,
    select_negatives,
)


class Role(enum.IntEnum):
    """Role of a row in its group's CARE subgroup."""

    OUTSIDE = 0
    ANCHOR = 1
    HARD_NEGATIVE = 2
    PSEUDO_ANCHOR = 3
    PSEUDO_NEGATIVE = 4


@dataclass(frozen=True)
class Subgroups:
    """Subgroup membership, per row. Returned by `care_advantages`; pass it back to reuse roles.

    Attributes:
        role: LongTensor[B] of `Role` values.
        k_prime: LongTensor[B], K' of the row's group (for every row of that group, members or
            not); 0 for rows of groups without a subgroup.
        group: LongTensor[B], the caller's group id (`index`) of each row.
        pick: LongTensor[B], pick order 0..K'-1 of (pseudo-)negatives (0 = first chosen, which
            for cosine_topk is the failure nearest to the anchor); -1 for other rows.
    """

    role: torch.Tensor
    k_prime: torch.Tensor
    group: torch.Tensor
    pick: torch.Tensor

    def rgr_targets(self) -> torch.Tensor:
        """Rows of the first chosen hard negative of each anchored group (RGR's targets).

        Returns:
            LongTensor[E], ascending row indices, one per group with an anchor and >= 1 hard
            negative. `group[rows]` gives their group ids.
        """
        hit = (self.role == Role.HARD_NEGATIVE) & (self.pick == 0)
        return hit.nonzero().squeeze(1)

    def anchor_rows(self) -> torch.Tensor:
        """LongTensor[E], ascending rows with role ANCHOR (same groups as `rgr_targets`)."""
        return (self.role == Role.ANCHOR).nonzero().squeeze(1)

    def members(self) -> torch.Tensor:
        """BoolTensor[B], True for rows inside a subgroup (any role but OUTSIDE)."""
        return self.role != Role.OUTSIDE


def care_advantages(
    index: torch.Tensor,
    correct: torch.Tensor,
    reward: torch.Tensor,
    think_len: torch.Tensor,
    answer_len: torch.Tensor,
    embeddings: torch.Tensor | None,
    old_logprob_mean: torch.Tensor | None,
    config: CareConfig,
    subgroups: Subgroups | None = None,
    reflected: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Subgroups]:
    """Compute CARE per-sequence advantages for a batch of grouped rollouts.

    Args:
        index: LongTensor[B], group (prompt) id of each row; any ids, any order, any group sizes.
        correct: BoolTensor[B], verifier accuracy; decides positive vs failure.
        reward: FloatTensor[B], score used in the z-score (may include a format term).
        think_len, answer_len: LongTensor[B], token counts of the think and answer spans.
        embeddings: FloatTensor[B, H], reasoning embeddings (normalised here). May be None when
            `subgroups` is given or the selector is `random`.
        old_logprob_mean: FloatTensor[B], each row's old-policy log-prob score for the rescue
            pseudo-anchor (`selectors.rescue_anchor_score`: the sequence sum, or the per-token mean,
            per ``config.rescue_anchor``). May be None when `subgroups` is given or rescue is off.
        config: CareConfig.
        subgroups: the `Subgroups` of an earlier call on the same rows; when given, membership,
            roles and K' are kept and only the z-scores are recomputed (after RGR replaced rows).
        reflected: BoolTensor[B] or None, rows produced by RGR (a failed one gets s_refl).

    Returns:
        advantages: FloatTensor[B] (float32, or float64 for float64 rewards); 0 outside subgroups.
        subgroups: `Subgroups`.
    """
    B = index.shape[0]
    _check_rows(B, correct=correct, reward=reward, think_len=think_len, answer_len=answer_len)
    if reflected is not None:
        _check_rows(B, reflected=reflected)
    if B == 0:
        empty = torch.empty(0, dtype=torch.long, device=index.device)
        dtype = torch.float64 if reward.dtype == torch.float64 else torch.float32
        return torch.empty(0, dtype=dtype, device=index.device), Subgroups(empty, empty, empty, empty)
    layout = group_layout(index)
    valid = layout.valid
    correct_s = layout.to_slots(correct.bool(), fill=False) & valid

    if subgroups is None:
        role_s, pick_s, kp = _build_subgroups(
            layout, correct_s, think_len, answer_len, embeddings, old_logprob_mean, config
        )
    else:
        _check_rows(B, role=subgroups.role, pick=subgroups.pick, group=subgroups.group)
        if not torch.equal(subgroups.group.to(index.device), index):
            raise ValueError("subgroups.group does not match index: subgroups belong to other rows")
        role_s = layout.to_slots(subgroups.role.to(index.device), fill=int(Role.OUTSIDE))
        pick_s = layout.to_slots(subgroups.pick.to(index.device), fill=-1)
        neg = (role_s == Role.HARD_NEGATIVE) | (role_s == Role.PSEUDO_NEGATIVE)
        kp = neg.sum(dim=1)

    dtype = torch.float64 if reward.dtype == torch.float64 else torch.float32
    reward_s = layout.to_slots(reward.to(dtype))
    reflected_s = (
        layout.to_slots(reflected.bool(), fill=False) if reflected is not None else torch.zeros_like(valid)
    )
    adv_s = _subgroup_advantages(role_s, kp, correct_s, reflected_s, reward_s, config)

    advantages = layout.to_rows(adv_s)
    if subgroups is None:
        k_row = torch.where(role_s.ne(Role.OUTSIDE).any(dim=1), kp, 0)
        subgroups = Subgroups(
            role=layout.to_rows(role_s),
            k_prime=k_row[layout.row_group],
            group=index.clone(),
            pick=layout.to_rows(pick_s),
        )
    return advantages, subgroups


def _build_subgroups(
    layout: GroupLayout,
    correct_s: torch.Tensor,
    think_len: torch.Tensor,
    answer_len: torch.Tensor,
    embeddings: torch.Tensor | None,
    old_logprob_mean: torch.Tensor | None,
    config: CareConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Choose (pseudo-)anchors and negatives. Returns role [G, N], pick [G, N], K' [G]."""
    G, N = layout.slot_row.shape
    valid = layout.valid
    device = valid.device
    failed_s = valid & ~correct_s
    n_fail = failed_s.sum(dim=1)

    anchor, has_pos = choose_anchor(
        correct_s, layout.to_slots(think_len.long()), layout.to_slots(answer_len.long())
    )
    anchored = has_pos & (n_fail >= 1)
    rescue_on = config.rescue != "off"
    if rescue_on:
        if old_logprob_mean is None:
            raise ValueError("old_logprob_mean is required when care.rescue != 'off'")
        _check_rows(layout.row_group.shape[0], old_logprob_mean=old_logprob_mean)
        pseudo = choose_pseudo_anchor(failed_s, layout.to_slots(old_logprob_mean.float()))
        rescued = ~has_pos & (n_fail >= 2)
        ref = torch.where(has_pos, anchor, pseudo)
    else:
        rescued = torch.zeros_like(has_pos)
        ref = anchor
    active = anchored | rescued
    slots = torch.arange(N, device=device).unsqueeze(0)
    is_ref = slots == ref.unsqueeze(1)
    cand = failed_s & ~is_ref & active.unsqueeze(1)

    dist = dist_ref = keys = None
    if config.selector == "random":
        keys = random_keys(layout.group_ids, N, config.seed)
    else:
        if embeddings is None:
            raise ValueError(f"embeddings are required by care.selector={config.selector!r}")
        if embeddings.dim() != 2 or embeddings.shape[0] != layout.row_group.shape[0]:
            raise ValueError(f"embeddings must be [B, H] with B={layout.row_group.shape[0]}")
        dist = cosine_distances(layout, embeddings)
        dist_ref = dist.gather(1, ref.view(G, 1, 1).expand(G, 1, N)).squeeze(1)
    pick, kp = select_negatives(cand, dist_ref, dist, keys, config.k, config.m, config.selector)

    ref_role = torch.where(has_pos, int(Role.ANCHOR), int(Role.PSEUDO_ANCHOR)).unsqueeze(1)
    neg_role = torch.where(has_pos, int(Role.HARD_NEGATIVE), int(Role.PSEUDO_NEGATIVE)).unsqueeze(1)
    role = torch.where(pick >= 0, neg_role, int(Role.OUTSIDE))
    role = torch.where(is_ref & (kp >= 1).unsqueeze(1) & active.unsqueeze(1), ref_role, role)
    return role, pick, kp


def _subgroup_advantages(
    role: torch.Tensor,
    kp: torch.Tensor,
    correct: torch.Tensor,
    reflected: torch.Tensor,
    reward: torch.Tensor,
    config: CareConfig,
) -> torch.Tensor:
    """Advantages in the [G, N] layout from roles (all [G, N]) and K' [G]."""
    dtype = reward.dtype
    member = role != Role.OUTSIDE
    pseudo_anchor = role == Role.PSEUDO_ANCHOR
    pseudo_neg = role == Role.PSEUDO_NEGATIVE
    rescue_grp = (pseudo_anchor | pseudo_neg).any(dim=1, keepdim=True)
    kp_f = kp.clamp(min=1).to(dtype).unsqueeze(1)
    gamma = config.rescue_gamma

    # Rescue pseudo-rewards: +gamma for t, -gamma/K' for each pseudo-negative (zero-sum).
    pseudo_r = torch.where(pseudo_anchor, gamma, -gamma / kp_f).to(dtype)
    if config.rescue == "raw":
        z_input = reward
    else:
        z_input = torch.where(rescue_grp, pseudo_r, reward)
    z = subgroup_zscore(z_input, member, config.eps)
    eq = torch.sqrt(config.k / kp_f) if config.equalize else torch.ones_like(kp_f)

    positive = (role == Role.ANCHOR) | pseudo_anchor | ((role == Role.HARD_NEGATIVE) & correct)
    scale = torch.where(
        (role == Role.HARD_NEGATIVE) & reflected,
        torch.tensor(config.refl_scale, dtype=dtype),
        torch.tensor(config.neg_scale, dtype=dtype),
    )
    adv = torch.where(positive, z * eq, -scale * z.abs() * eq)
    if config.rescue == "raw":
        # Paper: zero-sum pseudo-contrast, no equalisation, no scaling.
        adv = torch.where(rescue_grp, pseudo_r, adv)
    return torch.where(member, adv, torch.zeros((), dtype=dtype))


def subgroup_zscore(reward: torch.Tensor, member: torch.Tensor, eps: float) -> torch.Tensor:
    """z = (r - mean_S) / (population std_S + eps) over each group's members; 0 elsewhere.

    Args:
        reward: FloatTensor[G, N]. member: BoolTensor[G, N].

    Returns:
        FloatTensor[G, N].
    """
    w = member.to(reward.dtype)
    n = w.sum(dim=1, keepdim=True).clamp(min=1)
    r = reward * w
    mean = r.sum(dim=1, keepdim=True) / n
    dev = (reward - mean) * w
    std = torch.sqrt((dev * dev).sum(dim=1, keepdim=True) / n)
    return dev / (std + eps)


def subgroup_raw_z(
    index: torch.Tensor, reward: torch.Tensor, subgroups: Subgroups, eps: float
) -> torch.Tensor:
    """Per-row raw z-score of `reward` inside its subgroup (0 outside). FloatTensor[B].

    Rescue groups are scored on the real rewards here (used by diagnostics for real anchors).
    """
    layout = group_layout(index)
    member = layout.to_slots(subgroups.role.ne(Role.OUTSIDE), fill=False)
    r = layout.to_slots(reward.float())
    return layout.to_rows(subgroup_zscore(r, member, eps))


def _check_rows(B: int, **tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.dim() != 1 or t.shape[0] != B:
            raise ValueError(f"{name} must have shape [B]=[{B}], got {tuple(t.shape)}")


__all__ = ["Role", "Subgroups", "care_advantages", "subgroup_zscore", "subgroup_raw_z"]
