"""CARE reduces to verl's GRPO when every rollout is in the subgroup.

Degenerate case: one correct row per group, K and M >= group size (every failure is a hard
negative), neg_scale = 1 (failures sit below the subgroup mean, so -|z| = z), no equalisation.
Then CARE's advantage is (r - mean) / (std_pop + eps) over the whole group, while verl's
`compute_grpo_outcome_advantage` divides by torch.std, the UNBIASED std (n - 1 denominator).
The honest statement is therefore not equality but, per group of size n,

    A_grpo * (std_unbiased + eps) == A_care * (std_pop + eps) == r - mean,

and, as eps -> 0, A_grpo / A_care == sqrt((n - 1) / n). Both are checked, for groups of mixed
sizes in shuffled row order and with non-binary (format-term) rewards.
"""

import math

import numpy as np
import pytest
import torch

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")

from care_verl.core import CareConfig, care_advantages  # noqa: E402


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = [2, 3, 5, 8, 8, 6]
    index = torch.tensor([gid * 11 + 3 for gid, n in enumerate(sizes) for _ in range(n)])
    first = torch.tensor([i == 0 for n in sizes for i in range(n)])
    B = len(index)
    correct = first.clone()
    # Correct rows score 1 (+0.1 format); failures score 0 or 0.1: always below the group mean.
    reward = correct.float() + 0.1 * (torch.rand(B, generator=g) < 0.5).float()
    perm = torch.randperm(B, generator=g)
    return dict(
        index=index[perm], correct=correct[perm], reward=reward[perm],
        think_len=torch.randint(1, 50, (B,), generator=g)[perm],
        answer_len=torch.randint(1, 9, (B,), generator=g)[perm],
        embeddings=torch.randn(B, 16, generator=g)[perm],
        old_logprob_mean=-torch.rand(B, generator=g)[perm],
    ), sizes


@pytest.mark.parametrize("selector", ["cosine_topk", "nearest", "random"])
def test_care_equals_grpo_up_to_the_std_convention(selector):
    b, sizes = _batch()
    eps = 1e-6
    cfg = CareConfig(k=8, m=8, neg_scale=1.0, equalize=False, eps=eps, selector=selector)
    adv_care, sg = care_advantages(**b, config=cfg)
    assert bool(sg.members().all())  # everything is in a subgroup

    T = 4
    token_rewards = torch.zeros(len(b["reward"]), T)
    token_rewards[:, -1] = b["reward"]
    mask = torch.ones(len(b["reward"]), T)
    adv_grpo, _ = core_algos.compute_grpo_outcome_advantage(
        token_rewards, mask, np.array(b["index"].tolist(), dtype=object), epsilon=eps
    )
    adv_grpo = adv_grpo[:, 0]

    for gid in b["index"].unique():
        rows = b["index"] == gid
        r = b["reward"][rows].double()
        n = int(rows.sum())
        centred = r - r.mean()
        std_pop, std_unb = r.std(unbiased=False), r.std(unbiased=True)
        torch.testing.assert_close(adv_care[rows].double() * (std_pop + eps), centred, atol=1e-6, rtol=0)
        torch.testing.assert_close(adv_grpo[rows].double() * (std_unb + eps), centred, atol=1e-6, rtol=0)
        ratio = adv_grpo[rows].double() / adv_care[rows].double()
        torch.testing.assert_close(ratio, torch.full_like(ratio, math.sqrt((n - 1) / n)), atol=1e-4, rtol=0)
