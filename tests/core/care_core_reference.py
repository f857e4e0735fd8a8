"""Slow, obviously-correct CARE reference: one Python loop per group, float64 math, no tensors
beyond input conversion. The batched implementation in care_verl.core must match it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from care_verl.core import CareConfig, Role

M32 = 0xFFFFFFFF


def _mix32(x: int) -> int:
    x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
    return (x >> 16) ^ x


def _combine(h: int, v: int) -> int:
    return _mix32(((h ^ (v & M32)) + 0x9E3779B9) & M32)


def random_key(seed: int, gid: int, pos: int) -> int:
    """hash(seed, group id, position of the row among its group's rows by row index)."""
    h = _mix32(seed & M32)
    h = _combine(h, (seed >> 32) & M32)
    h = _combine(h, gid)
    h = _combine(h, gid >> 32)
    return _combine(h, pos)


@dataclass
class RefResult:
    adv: list[float]
    role: list[int]
    pick: list[int]
    k_prime: list[int]


def _cos_dist(e: list[list[float]], i: int, j: int) -> float:
    a, b = e[i], e[j]
    na = max(math.sqrt(sum(x * x for x in a)), 1e-12)
    nb = max(math.sqrt(sum(x * x for x in b)), 1e-12)
    return 1.0 - sum(x * y for x, y in zip(a, b)) / (na * nb)


def _select(ref: int, cands: list[int], e, cfg: CareConfig, gid: int, pos: dict[int, int]) -> list[int]:
    """Chosen negatives in pick order."""
    k = cfg.k
    if cfg.selector == "random":
        kp = min(k, len(cands))
        return sorted(cands, key=lambda j: (random_key(cfg.seed, gid, pos[j]), j))[:kp]
    d = {j: _cos_dist(e, ref, j) for j in cands}
    asc = sorted(cands, key=lambda j: (d[j], j))
    if cfg.selector == "nearest":
        return asc[: min(k, len(cands))]
    if cfg.selector == "farthest":
        return sorted(cands, key=lambda j: (-d[j], j))[: min(k, len(cands))]
    if cfg.selector == "mixed":
        kp = min(k, len(cands))
        near = asc[: (kp + 1) // 2]
        rest = [j for j in cands if j not in near]
        far = sorted(rest, key=lambda j: (-d[j], j))[: kp - len(near)]
        return near + far
    assert cfg.selector == "cosine_topk"
    pool = asc[: cfg.m]
    kp = min(k, len(pool))
    if kp == 0:
        return []
    picks = [pool[0]]
    while len(picks) < kp:
        best, best_val = None, -math.inf
        for j in pool:  # pool order: the first strictly larger value wins, so ties go earlier
            if j in picks:
                continue
            val = min(_cos_dist(e, j, p) for p in picks)
            if val > best_val:
                best, best_val = j, val
        picks.append(best)
    return picks


def reference_care(
    index, correct, reward, think_len, answer_len, embeddings, old_logprob_mean, cfg: CareConfig,
    subgroups=None, reflected=None,
) -> RefResult:
    idx = [int(x) for x in index.tolist()]
    cor = [bool(x) for x in correct.tolist()]
    rew = [float(x) for x in reward.double().tolist()]
    th = [int(x) for x in think_len.tolist()]
    an = [int(x) for x in answer_len.tolist()]
    emb = embeddings.double().tolist() if embeddings is not None else None
    lp = [(-math.inf if math.isnan(x) else float(x)) for x in old_logprob_mean.double().tolist()] if (
        old_logprob_mean is not None) else None
    refl = [bool(x) for x in reflected.tolist()] if reflected is not None else [False] * len(idx)
    B = len(idx)
    adv, role, pick, kpr = [0.0] * B, [int(Role.OUTSIDE)] * B, [-1] * B, [0] * B

    groups: dict[int, list[int]] = {}
    for i, g in enumerate(idx):
        groups.setdefault(g, []).append(i)

    for gid, rows in groups.items():
        pos = {r: p for p, r in enumerate(rows)}
        if subgroups is not None:
            members = [r for r in rows if int(subgroups.role[r]) != Role.OUTSIDE]
            if not members:
                continue
            ref = next(r for r in members if int(subgroups.role[r]) in (Role.ANCHOR, Role.PSEUDO_ANCHOR))
            negs = sorted((r for r in members if r != ref), key=lambda r: int(subgroups.pick[r]))
            rescue = int(subgroups.role[ref]) == Role.PSEUDO_ANCHOR
        else:
            P = [r for r in rows if cor[r]]
            F = [r for r in rows if not cor[r]]
            if P:
                if not F:
                    continue
                ref = min(P, key=lambda r: (th[r], an[r], r))
                negs = _select(ref, F, emb, cfg, gid, pos)
                rescue = False
            else:
                if cfg.rescue == "off" or len(F) < 2:
                    continue
                ref = min(F, key=lambda r: (-lp[r], r))
                negs = _select(ref, [r for r in F if r != ref], emb, cfg, gid, pos)
                rescue = True
        kp = len(negs)
        role[ref] = int(Role.PSEUDO_ANCHOR if rescue else Role.ANCHOR)
        for p, r in enumerate(negs):
            role[r] = int(Role.PSEUDO_NEGATIVE if rescue else Role.HARD_NEGATIVE)
            pick[r] = p
        for r in rows:
            kpr[r] = kp

        gamma = cfg.rescue_gamma
        if rescue and cfg.rescue == "raw":
            adv[ref] = gamma
            for r in negs:
                adv[r] = -gamma / kp
            continue
        S = [ref] + negs
        if rescue:
            rr = {ref: gamma, **{r: -gamma / kp for r in negs}}
        else:
            rr = {r: rew[r] for r in S}
        mu = sum(rr.values()) / len(S)
        sd = math.sqrt(sum((v - mu) ** 2 for v in rr.values()) / len(S))
        z = {r: (rr[r] - mu) / (sd + cfg.eps) for r in S}
        eq = math.sqrt(cfg.k / kp) if cfg.equalize else 1.0
        adv[ref] = z[ref] * eq
        for r in negs:
            if not rescue and cor[r]:
                adv[r] = z[r] * eq
            else:
                s = cfg.refl_scale if (not rescue and refl[r]) else cfg.neg_scale
                adv[r] = -s * abs(z[r]) * eq
    return RefResult(adv, role, pick, kpr)


def as_tensors(res: RefResult) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(res.adv, dtype=torch.float64),
        torch.tensor(res.role, dtype=torch.long),
        torch.tensor(res.pick, dtype=torch.long),
        torch.tensor(res.k_prime, dtype=torch.long),
    )
