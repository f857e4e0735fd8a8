"""Scalar CARE diagnostics for the tracker (keys prefixed "care/").

Every value is a finite Python float. Means, fractions, variances and ratios over an empty set
are reported as 0.0 (e.g. `care/zeta` in a batch without anchors, `care/var_ratio` when the
positive advantages are constant, which is the usual case with binary rewards and equalisation:
every anchor gets sqrt(K) up to eps; "constant" means Var <= 1e-8 * mean(A_pos^2)).
"""

from __future__ import annotations

import math

import torch

from care_verl.core.advantages import Role, Subgroups, subgroup_raw_z
from care_verl.core.grouping import group_layout


# Var(pos) below this fraction of mean(pos^2) is float noise (eps = 1e-6 perturbs equal anchors).
_CONST_REL = 1e-8


def _mean(x: torch.Tensor) -> float:
    return float(x.double().mean()) if x.numel() else 0.0


def _var(x: torch.Tensor) -> float:
    # Population variance; 0.0 for an empty set.
    return float(x.double().var(unbiased=False)) if x.numel() else 0.0


def _finite(v: float) -> float:
    return v if math.isfinite(v) else 0.0


def care_diagnostics(
    advantages: torch.Tensor,
    subgroups: Subgroups,
    index: torch.Tensor,
    correct: torch.Tensor,
    reward: torch.Tensor,
    eps: float = 1e-6,
    reflected: torch.Tensor | None = None,
) -> dict[str, float]:
    """Batch diagnostics of a `care_advantages` result.

    Args:
        advantages: FloatTensor[B]. subgroups: the returned `Subgroups`. index, correct, reward:
            the inputs of that call (reward as used in the z-score). eps: the config's eps.
        reflected: optional BoolTensor[B] of RGR rows.

    Returns (all floats):
        care/frac_groups_with_positive, care/frac_groups_all_failed, care/frac_groups_all_correct:
            fractions of groups.
        care/mean_k_prime: mean K' over anchored groups; care/mean_k_prime_rescue: over rescued.
        care/zeta: mean over anchors of raw z(anchor) / sqrt(K') (1 for binary rewards).
        care/var_adv_neg, care/var_adv_pos, care/var_ratio: population variance of A over failed
            subgroup members (hard negatives that failed) and over correct members (anchors and
            successful reflected rows), and R = var_neg / var_pos (0.0 if the positives are constant).
        care/neg_abs_mass_share: sum |A| over failed rows / sum |A| over all rows.
        care/n_outside, care/n_anchor, care/n_hard_negative, care/n_pseudo_anchor,
            care/n_pseudo_negative: counts by role; care/n_reflected: RGR rows (if given).
    """
    correct = correct.bool()
    role = subgroups.role
    layout = group_layout(index)
    G = layout.num_groups
    pos_per_group = torch.zeros(G, dtype=torch.long, device=index.device)
    pos_per_group.index_add_(0, layout.row_group, correct.long())
    frac = (lambda m: float(m.double().mean()) if G else 0.0)  # noqa: E731

    anchor = role == Role.ANCHOR
    hard = role == Role.HARD_NEGATIVE
    z = subgroup_raw_z(index, reward, subgroups, eps)
    kp = subgroups.k_prime.double()
    zeta = z[anchor].double() / kp[anchor].clamp(min=1).sqrt()

    adv = advantages.double()
    neg_adv = adv[hard & ~correct]
    pos_adv = adv[(anchor | hard) & correct]
    var_neg, var_pos = _var(neg_adv), _var(pos_adv)
    total = float(adv.abs().sum())

    out = {
        "care/frac_groups_with_positive": frac(pos_per_group > 0),
        "care/frac_groups_all_failed": frac(pos_per_group == 0),
        "care/frac_groups_all_correct": frac(pos_per_group == layout.counts),
        "care/mean_k_prime": _mean(kp[anchor]),
        "care/mean_k_prime_rescue": _mean(kp[role == Role.PSEUDO_ANCHOR]),
        "care/zeta": _mean(zeta),
        "care/var_adv_neg": var_neg,
        "care/var_adv_pos": var_pos,
        "care/var_ratio": var_neg / var_pos if var_pos > _CONST_REL * _mean(pos_adv**2) else 0.0,
        "care/neg_abs_mass_share": float(adv[~correct].abs().sum()) / total if total > 0 else 0.0,
    }
    for r in Role:
        out[f"care/n_{r.name.lower()}"] = float((role == r).sum())
    if reflected is not None:
        out["care/n_reflected"] = float(reflected.bool().sum())
    return {k: _finite(v) for k, v in out.items()}
