"""Closed-form checks of the fidelity switches: rescue pseudo-anchor score, think credit of correct rows only."""

import pytest
import torch

from care_verl.core import CareConfig, care_advantages, region_token_advantages, rescue_anchor_score


def test_rescue_anchor_score_sum_and_mean_closed_form():
    lp = torch.tensor([[-0.1, -0.1, -0.1, -0.1], [-0.3, 0.0, 0.0, 0.0], [-5.0, -5.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    # padding past the mask must not count, whatever its value
    lp[1, 1:] = -100.0
    assert torch.allclose(rescue_anchor_score(lp, mask, "sum"), torch.tensor([-0.4, -0.3, -10.0]))
    assert torch.allclose(rescue_anchor_score(lp, mask, "mean"), torch.tensor([-0.1, -0.3, -5.0]))
    with pytest.raises(ValueError, match="care.rescue_anchor"):
        rescue_anchor_score(lp, mask, "max")


def _rescue(mode: str) -> torch.Tensor:
    """One all-failed group of 3: a long confident failure (row 0) and a short less confident one (row 1)."""
    lp = torch.tensor([[-0.1] * 8, [-0.3, -0.3, 0, 0, 0, 0, 0, 0], [-2.0] * 8])
    mask = torch.tensor([[1] * 8, [1, 1, 0, 0, 0, 0, 0, 0], [1] * 8])
    cfg = CareConfig(selector="nearest", rescue="raw", rescue_gamma=0.1, rescue_anchor=mode)
    adv, sub = care_advantages(
        torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.bool), torch.zeros(3),
        torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long), torch.eye(3),
        rescue_anchor_score(lp, mask, cfg.rescue_anchor), cfg,
    )
    return adv


def test_rescue_pseudo_anchor_sum_picks_the_highest_sequence_logprob():
    # sums: -0.8, -0.6, -16  -> row 1 (short); means: -0.1, -0.3, -2 -> row 0 (confident)
    adv_sum, adv_mean = _rescue("sum"), _rescue("mean")
    assert adv_sum[1] == pytest.approx(0.1) and adv_sum[0] == pytest.approx(-0.05)
    assert adv_mean[0] == pytest.approx(0.1) and adv_mean[1] == pytest.approx(-0.05)


def test_rescue_anchor_default_is_the_papers_sum_and_is_validated():
    assert CareConfig().rescue_anchor == "sum"
    with pytest.raises(ValueError, match="care.rescue_anchor"):
        CareConfig(rescue_anchor="max")


def test_think_credit_goes_to_correct_rows_only():
    # row 0: correct anchor (A=1); row 1: rescue pseudo-anchor, a failure with A=+0.1; row 2: negative.
    adv = torch.tensor([1.0, 0.1, -0.5])
    resp = torch.ones(3, 4, dtype=torch.bool)
    think = torch.tensor([[1, 1, 0, 0]] * 3, dtype=torch.bool)
    ans = torch.tensor([[0, 0, 1, 1]] * 3, dtype=torch.bool)
    correct = torch.tensor([True, False, False])
    tau = 0.005
    a = region_token_advantages(adv, resp, think, ans, "region", tau_pos=tau, eps_w=0.0, correct=correct)
    w0 = 2 + 2 * tau
    assert torch.allclose(a[0], torch.tensor([tau / w0, tau / w0, 1 / w0, 1 / w0]))
    # the failed pseudo-anchor gets answer credit only: 0.1 spread over its 2 answer tokens
    assert torch.allclose(a[1], torch.tensor([0.0, 0.0, 0.05, 0.05]))
    assert torch.allclose(a[2], torch.tensor([0.0, 0.0, -0.25, -0.25]))
    # without the correctness mask the sign of A alone decides (the pseudo-anchor's think gets tau)
    legacy = region_token_advantages(adv, resp, think, ans, "region", tau_pos=tau, eps_w=0.0)
    assert legacy[1, 0] > 0
