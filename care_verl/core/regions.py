"""Region-weighted token advantages: spread each sequence advantage over its answer tokens.

a[i, t] = A[i] * w[i, t] / (sum_u w[i, u] + eps_w), with (mode "region", the paper)
    w = 1 on answer tokens,
        tau_pos on think tokens of *correct* rows with A > 0,
        0 on think tokens of every other row (no credit to failed rationales: the rescue
          pseudo-anchor is a failure with A = +gamma, so it gets answer credit only),
        0 on every other token (tags, text outside both spans, padding).
Without a ``correct`` mask, "positive" falls back to A > 0.

Loss aggregation (one statement, also in docs/care_trainer.md): the weights sum to 1 per row,
so sum_t a[i, t] ~ A[i]. verl 0.9.1 aggregates the KL loss with the same
``actor.loss_agg_mode`` as the policy loss, so the choice of mode (``token-mean``, the recipes'
and the released code's, or ``seq-mean-token-sum``) does not change the policy:KL balance. What
does: each answer token carries ~A/L_answer instead of GRPO's A, while the KL acts on every
response token, so at the same ``kl_loss_coef`` the KL weighs relatively more than under GRPO.
If KL dominates (watch actor/kl_loss vs actor/pg_loss), lower ``kl_loss_coef``.
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
    correct: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unnormalised token weights w[i, t] (see module docstring). Returns FloatTensor[B, T].

    Args:
        advantages: FloatTensor[B]. response_mask, think_mask, answer_mask: Bool/0-1 [B, T].
        mode: "region" (paper), "answer_only" (tau_pos = 0) or "uniform" (w = response_mask).
        tau_pos: weight of think tokens in correct rows with A > 0 (>= 0).
        correct: BoolTensor[B] verifier correctness, or None (then A > 0 alone decides).
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
    credited = advantages > 0
    if correct is not None:
        credited = credited & correct.bool().to(credited.device)
    think_w = think.to(dtype) * credited.to(dtype).unsqueeze(1) * tau
    return ans.to(dtype) + think_w


def region_token_advantages(
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    think_mask: torch.Tensor,
    answer_mask: torch.Tensor,
    mode: str = "region",
    tau_pos: float = 0.005,
    eps_w: float = 1e-6,
    correct: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token advantages a[i, t] = A[i] w[i, t] / (sum_u w[i, u] + eps_w).

    Args:
        advantages: FloatTensor[B], per-sequence CARE advantages.
        response_mask: Bool/0-1 Tensor[B, T], valid response tokens.
        think_mask, answer_mask: BoolTensor[B, T], spans from `spans.extract_spans`.
        mode: "region" | "answer_only" | "uniform".
        tau_pos: think-token weight for correct rows with A > 0 (mode "region").
        eps_w: added to each row's weight sum (> 0 keeps empty rows at 0).
        correct: BoolTensor[B] verifier correctness; None falls back to A > 0 (see module docstring).

    Returns:
        FloatTensor[B, T]; 0 outside the response. Each row sums to A[i] * W_i / (W_i + eps_w).
    """
    if not eps_w >= 0:
        raise ValueError(f"eps_w must be >= 0, got {eps_w!r}")
    w = region_weights(advantages, response_mask, think_mask, answer_mask, mode, tau_pos, correct)
    denom = w.sum(dim=1, keepdim=True) + eps_w
    # A row with no response tokens has w = 0 everywhere; keep it 0 even if eps_w == 0.
    denom = torch.where(denom > 0, denom, torch.ones_like(denom))
    return advantages.to(w.dtype).unsqueeze(1) * w / denom
