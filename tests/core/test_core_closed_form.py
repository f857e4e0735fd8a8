"""Closed forms of official-care-code.md section 2.4, RGR recomputation, rescue modes, zeros."""

import math

import pytest
import torch

from care_verl.core import CareConfig, Role, care_advantages

TOL = dict(rtol=0, atol=1e-4)  # eps = 1e-6 on std ~ 0.4 moves values by ~1e-5


def batch(groups, H=8, seed=0):
    """groups: list of lists of correct flags (binary reward = correct). Rows listed group after
    group; think_len increases with the row so the first correct row of a group is its anchor."""
    g = torch.Generator().manual_seed(seed)
    index, correct = [], []
    for gid, flags in enumerate(groups):
        index += [gid] * len(flags)
        correct += list(flags)
    B = len(index)
    correct_t = torch.tensor(correct, dtype=torch.bool)
    return dict(
        index=torch.tensor(index),
        correct=correct_t,
        reward=correct_t.float(),
        think_len=torch.arange(B) + 10,
        answer_len=torch.full((B,), 5),
        embeddings=torch.randn(B, H, generator=g),
        old_logprob_mean=-torch.rand(B, generator=g),
    )


@pytest.mark.parametrize("kp,neg", [(4, -0.25), (3, -1 / 3), (2, -0.5), (1, -1.0)])
def test_table_with_equalisation(kp, neg):
    b = batch([[1] + [0] * kp])
    adv, sg = care_advantages(**b, config=CareConfig())
    torch.testing.assert_close(adv[0], torch.tensor(2.0), **TOL)
    torch.testing.assert_close(adv[1:], torch.full((kp,), neg), **TOL)
    # Total negative mass s * sqrt(K) = 1.0 whatever K'.
    assert adv[1:].sum().item() == pytest.approx(-1.0, abs=1e-4)
    assert sg.k_prime.tolist() == [kp] * (kp + 1)


@pytest.mark.parametrize("kp", [1, 2, 3, 4])
def test_table_without_equalisation(kp):
    b = batch([[1] + [0] * kp])
    adv, _ = care_advantages(**b, config=CareConfig(equalize=False))
    torch.testing.assert_close(adv[0], torch.tensor(math.sqrt(kp)), **TOL)
    torch.testing.assert_close(adv[1:], torch.full((kp,), -0.5 / math.sqrt(kp)), **TOL)


def test_k_prime_capped_at_k_and_outside_rows_exactly_zero():
    # 2 correct + 6 failures: anchor + 4 negatives; the other positive and 2 failures get 0.
    b = batch([[1, 0, 0, 1, 0, 0, 0, 0]])
    adv, sg = care_advantages(**b, config=CareConfig())
    members = sg.role != Role.OUTSIDE
    assert int(members.sum()) == 5 and sg.role[0] == Role.ANCHOR and sg.role[3] == Role.OUTSIDE
    assert torch.all(adv[~members] == 0.0)
    torch.testing.assert_close(adv[members], torch.tensor([2.0, -0.25, -0.25, -0.25, -0.25]), **TOL)


def test_m_smaller_than_k_limits_k_prime():
    b = batch([[1, 0, 0, 0, 0, 0]])
    adv, sg = care_advantages(**b, config=CareConfig(k=4, m=2))
    assert sg.k_prime[0] == 2 and int((sg.role == Role.HARD_NEGATIVE).sum()) == 2
    neg = adv[sg.role == Role.HARD_NEGATIVE]
    torch.testing.assert_close(neg, torch.full((2,), -0.5), **TOL)  # eq = sqrt(4/2)
    # Selectors other than cosine_topk ignore m.
    _, sg2 = care_advantages(**b, config=CareConfig(k=4, m=2, selector="nearest"))
    assert sg2.k_prime[0] == 4


def _rgr(success: bool, cfg: CareConfig):
    b = batch([[1, 0, 0, 0, 0]])
    _, sg = care_advantages(**b, config=cfg)
    (target,) = sg.rgr_targets().tolist()
    assert sg.role[target] == Role.HARD_NEGATIVE and sg.pick[target] == 0
    # RGR replaces the target row in place with the reflected continuation.
    b["correct"] = b["correct"].clone()
    b["reward"] = b["reward"].clone()
    b["correct"][target] = success
    b["reward"][target] = float(success)
    b["embeddings"] = None  # not needed when subgroups are reused
    b["old_logprob_mean"] = None
    reflected = torch.zeros(5, dtype=torch.bool)
    reflected[target] = True
    adv, sg2 = care_advantages(**b, config=cfg, subgroups=sg, reflected=reflected)
    assert torch.equal(sg2.role, sg.role) and torch.equal(sg2.pick, sg.pick)
    return adv, target


def test_rgr_succeeded_row_of_table():
    adv, t = _rgr(True, CareConfig())
    others = [i for i in range(1, 5) if i != t]
    assert adv[0].item() == pytest.approx(1.2247, abs=1e-3)
    assert adv[t].item() == pytest.approx(1.2247, abs=1e-3)
    torch.testing.assert_close(adv[others], torch.full((3,), -0.4082), atol=1e-3, rtol=0)


def test_rgr_failed_row_of_table():
    adv, t = _rgr(False, CareConfig())
    others = [i for i in range(1, 5) if i != t]
    assert adv[0].item() == pytest.approx(2.0, abs=1e-4)
    assert adv[t].item() == pytest.approx(-0.125, abs=1e-4)
    torch.testing.assert_close(adv[others], torch.full((3,), -0.25), **TOL)
    adv2, t2 = _rgr(False, CareConfig(refl_neg_scale=0.1))
    assert adv2[t2].item() == pytest.approx(-0.05, abs=1e-4)


def test_reused_subgroups_keep_roles_even_if_a_fresh_call_would_differ():
    b = batch([[1, 0, 0, 0, 0, 0, 0]])
    _, sg = care_advantages(**b, config=CareConfig())
    out = [i for i in range(7) if sg.role[i] == Role.OUTSIDE]
    assert len(out) == 2
    b["correct"] = b["correct"].clone()
    b["correct"][out[0]] = True  # an outside row turns correct: it stays outside (A = 0)
    b["reward"] = b["correct"].float()
    b["think_len"] = b["think_len"].clone()
    b["think_len"][out[0]] = 0  # a fresh call would make it the anchor
    adv, sg2 = care_advantages(**b, config=CareConfig(), subgroups=sg)
    assert adv[out[0]] == 0 and torch.equal(sg2.role, sg.role)
    fresh, _ = care_advantages(**b, config=CareConfig())
    assert not torch.allclose(fresh, adv)
    with pytest.raises(ValueError, match="subgroups.group"):
        care_advantages(**{**b, "index": b["index"] + 1}, config=CareConfig(), subgroups=sg)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_raw_rescue_values(n):
    b = batch([[0] * n])
    adv, sg = care_advantages(**b, config=CareConfig(rescue="raw", rescue_gamma=0.1))
    kp = min(4, n - 1)
    t = int(b["old_logprob_mean"].argmax())
    assert sg.role[t] == Role.PSEUDO_ANCHOR and adv[t].item() == pytest.approx(0.1, abs=1e-7)
    negs = sg.role == Role.PSEUDO_NEGATIVE
    assert int(negs.sum()) == kp
    torch.testing.assert_close(adv[negs], torch.full((kp,), -0.1 / kp), atol=1e-7, rtol=0)
    assert abs(adv.sum().item()) < 1e-6
    assert torch.all(adv[sg.role == Role.OUTSIDE] == 0)


@pytest.mark.parametrize("n,neg", [(5, -0.25), (3, -0.5), (2, -1.0), (8, -0.25)])
def test_zscore_rescue_has_success_group_magnitudes(n, neg):
    for gamma in (0.1, 3.0):  # delta has no effect (D3)
        b = batch([[0] * n])
        adv, sg = care_advantages(**b, config=CareConfig(rescue="zscore", rescue_gamma=gamma))
        assert adv[sg.role == Role.PSEUDO_ANCHOR].item() == pytest.approx(2.0, abs=1e-4)
        negs = adv[sg.role == Role.PSEUDO_NEGATIVE]
        torch.testing.assert_close(negs, torch.full_like(negs, neg), **TOL)


def test_zero_groups():
    b = batch([[1, 1, 1], [1], [0], [0, 0, 0], [1, 0]])
    adv, sg = care_advantages(**b, config=CareConfig(rescue="off"))
    assert torch.all(adv[:8] == 0) and torch.all(sg.role[:8] == Role.OUTSIDE)
    assert torch.all(sg.k_prime[:8] == 0)
    assert adv[8].item() == pytest.approx(2.0, abs=1e-4) and adv[9].item() == pytest.approx(-1.0, abs=1e-4)
    adv2, sg2 = care_advantages(**b, config=CareConfig(rescue="raw"))
    assert torch.all(adv2[:5] == 0)  # all-correct and singleton groups
    assert torch.all(adv2[5:8] != 0)  # the all-failed group of 3 is rescued (K' = 2)
    assert sg2.k_prime.tolist() == [0] * 5 + [2] * 3 + [1] * 2


def test_empty_batch():
    b = batch([])
    b["embeddings"] = torch.zeros(0, 8)
    adv, sg = care_advantages(**b, config=CareConfig())
    assert adv.shape == (0,) and sg.role.shape == (0,)


def test_shape_errors():
    b = batch([[1, 0]])
    with pytest.raises(ValueError, match="reward"):
        care_advantages(**{**b, "reward": torch.zeros(3)}, config=CareConfig())
    with pytest.raises(ValueError, match="embeddings"):
        care_advantages(**{**b, "embeddings": None}, config=CareConfig())
    with pytest.raises(ValueError, match="old_logprob_mean"):
        care_advantages(**{**b, "old_logprob_mean": None}, config=CareConfig())
    # Neither is needed by the random selector with rescue off.
    care_advantages(**{**b, "embeddings": None, "old_logprob_mean": None},
                    config=CareConfig(selector="random", rescue="off"))
