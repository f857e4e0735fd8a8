"""Region-weighted token advantages: spread each sequence advantage over its answer tokens.

a[i, t] = A[i] * w[i, t] / (sum_u w[i, u] + eps_w), with (mode "region", the paper)
    w = 1 on answer tokens,
        tau_pos on think tokens of rows with A > 0,
        0 on think tokens of rows with A <= 0 (no credit to failed rationales),
        0 on every other token (tags, text outside both spans, padding).

Pairing with verl's ``actor.loss_agg_mode``: the weights sum to 1 per row, so sum_t a[i, t] ~ A[i]
(exactly A[i] * W / (W + eps_w)). Use a *sequence-level sum* aggregation such as verl's
``"seq-mean-token-sum"``: it sums the per-token policy terms of a row (recovering A[i] for the
row's gradient weight) and averages rows, so a CARE row carries the same total weight whatever
its length. With ``"token-mean"`` (verl's default, and the released CARE code's choice) every
per-token term is additionally divided by the batch token count, so the policy-gradient term
shrinks by roughly the mean response length relative to the KL loss term, which is not
normalised this way; Adam hides the absolute scale but not that ratio.
"""

from __future__ import annotations

import torch

REGION_MODES = ("region", "answer_only", "uniform")


def region_weights(
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    think_mask: torch.Tensor,
    answer_mask: torch.Tensor,
    mode: str = "region",
    tau_pos: float = 0.005,
) -> torch.Tensor:
    """Unnormalised token weights w[i, t] (see module docstring). Returns FloatTensor[B, T].

    Args:
        advantages: FloatTensor[B]. response_mask, think_mask, answer_mask: Bool/0-1 [B, T].
        mode: "region" (paper), "answer_only" (tau_pos = 0) or "uniform" (w = response_mask).
        tau_pos: weight of think tokens in rows with A > 0 (>= 0).
    """
    if mode not in REGION_MODES:
        raise ValueError(f"mode must be one of {REGION_MODES}, got {mode!r}")
    if not tau_pos >= 0:
        raise ValueError(f"tau_pos must be >= 0, got {tau_pos!r}")
    resp = response_mask.bool()
    dtype = advantages.dtype if advantages.is_floating_point() else torch.float32
    if mode == "uniform":
        return resp.to(dtype)
    ans = answer_mask.bool() & resp
    # A row without an answer span treats its whole response as the answer.
    ans = torch.where(ans.any(dim=1, keepdim=True), ans, resp)
    think = think_mask.bool() & resp & ~ans
    tau = 0.0 if mode == "answer_only" else float(tau_pos)
    think_w = think.to(dtype) * (advantages > 0).to(dtype).unsqueeze(1) * tau
    return ans.to(dtype) + think_w


def region_token_advantages(
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    think_mask: torch.Tensor,
    answer_mask: torch.Tensor,
    mode: str = "region",
    tau_pos: float = 0.005,
    eps_w: float = 1e-6,
) -> torch.Tensor:
    """Token advantages a[i, t] = A[i] w[i, t] / (sum_u w[i, u] + eps_w).

    Args:
        advantages: FloatTensor[B], per-sequence CARE advantages.
        response_mask: Bool/0-1 Tensor[B, T], valid response tokens.
        think_mask, answer_mask: BoolTensor[B, T], spans from `spans.extract_spans`.
        mode: "region" | "answer_only" | "uniform".
        tau_pos: think-token weight for rows with A > 0 (mode "region").
        eps_w: added to each row's weight sum (> 0 keeps empty rows at 0).

    Returns:
        FloatTensor[B, T]; 0 outside the response. Each row sums to A[i] * W_i / (W_i + eps_w).
        Pair with verl's loss_agg_mode "seq-mean-token-sum" (see module docstring).
    """
    if not eps_w >= 0:
        raise ValueError(f"eps_w must be >= 0, got {eps_w!r}")
    w = region_weights(advantages, response_mask, think_mask, answer_mask, mode, tau_pos)
    denom = w.sum(dim=1, keepdim=True) + eps_w
    # A row with no response tokens has w = 0 everywhere; keep it 0 even if eps_w == 0.
    denom = torch.where(denom > 0, denom, torch.ones_like(denom))
    return advantages.to(w.dtype).unsqueeze(1) * w / denom
