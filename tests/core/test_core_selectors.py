"""Anchor / pseudo-anchor tie rules and each selector on hand-made embeddings with exact distances."""

import math

import pytest
import torch

from care_verl.core import CareConfig, Role, care_advantages


def run(index, correct, emb, cfg, think=None, answer=None, logp=None):
    B = len(index)
    adv, sg = care_advantages(
        torch.tensor(index),
        torch.tensor(correct, dtype=torch.bool),
        torch.tensor(correct, dtype=torch.float32),
        torch.tensor(think if think is not None else [10] * B),
        torch.tensor(answer if answer is not None else [5] * B),
        torch.tensor(emb, dtype=torch.float32),
        torch.tensor(logp if logp is not None else [-1.0] * B),
        cfg,
    )
    return adv, sg


def picks(sg):
    """Rows of the chosen negatives, in pick order."""
    rows = [i for i in range(len(sg.pick)) if sg.pick[i] >= 0]
    return sorted(rows, key=lambda i: int(sg.pick[i]))


def test_anchor_shortest_think_then_answer_then_lowest_row():
    # Rows of group 7 sit at batch positions 1, 3, 4, 6, 7 (interleaved with group 2).
    index = [2, 7, 2, 7, 7, 2, 7, 7]
    correct = [1, 1, 0, 1, 1, 0, 1, 0]
    think = [1, 5, 9, 3, 3, 9, 3, 9]
    answer = [1, 1, 1, 4, 2, 1, 2, 1]
    emb = torch.eye(8).tolist()
    _, sg = run(index, correct, emb, CareConfig(), think, answer)
    # group 7 correct rows 1,3,4,6: think 3 -> {3,4,6}; answer 2 -> {4,6}; lowest row -> 4.
    assert sg.role[4] == Role.ANCHOR and sg.role[0] == Role.ANCHOR
    assert [int(r) for r in sg.role[[1, 3, 6]]] == [Role.OUTSIDE] * 3


def test_anchor_ignores_reward_value():
    adv, sg = care_advantages(
        torch.tensor([0, 0, 0]), torch.tensor([True, True, False]), torch.tensor([1.0, 0.2, 0.0]),
        torch.tensor([9, 3, 1]), torch.tensor([1, 1, 1]), torch.eye(3), torch.zeros(3), CareConfig(),
    )
    assert sg.role[1] == Role.ANCHOR


def test_pseudo_anchor_highest_logprob_then_lowest_row():
    emb = torch.eye(6).tolist()
    logp = [-2.0, -0.5, -3.0, -0.5, float("nan"), -1.0]
    _, sg = run([0] * 6, [0] * 6, emb, CareConfig(), logp=logp)
    assert sg.role[1] == Role.PSEUDO_ANCHOR
    assert int((sg.role == Role.PSEUDO_NEGATIVE).sum()) == 4


# Embeddings with 4 entries of +-1 among 8 dims: norm 2 exactly, so every cosine is dot/4 and
# equal distances are bit-identical.
def v(*nz):
    out = [0.0] * 8
    for i in nz:
        out[abs(i) - 1] = 1.0 if i > 0 else -1.0
    return out


ANCHOR = v(1, 2, 3, 4)


def test_nearest_farthest_mixed_with_ties():
    # distances to the anchor: row1 1.0, row2 0.0, row3 1.0, row4 2.0, row5 0.5
    emb = [ANCHOR, v(5, 6, 7, 8), v(1, 2, 3, 4), v(5, 6, 7, -8), v(-1, -2, -3, -4), v(1, 2, 5, 6)]
    correct = [1, 0, 0, 0, 0, 0]
    _, sg = run([0] * 6, correct, emb, CareConfig(k=3, selector="nearest"))
    assert picks(sg) == [2, 5, 1]  # tie 1.0 between rows 1 and 3 -> lower row
    _, sg = run([0] * 6, correct, emb, CareConfig(k=3, selector="farthest"))
    assert picks(sg) == [4, 1, 3]
    _, sg = run([0] * 6, correct, emb, CareConfig(k=3, selector="mixed"))
    assert picks(sg) == [2, 5, 4]  # ceil(3/2) = 2 nearest, then the farthest of the rest
    _, sg = run([0] * 6, correct, emb, CareConfig(k=4, selector="mixed"))
    assert picks(sg) == [2, 5, 4, 1]
    # mixed when every distance ties: the nearest are the lowest rows, the "farthest of the
    # rest" never re-picks them.
    emb_t = [ANCHOR] + [v(5, 6, 7, 8)] * 5
    _, sg = run([0] * 6, correct, emb_t, CareConfig(k=4, selector="mixed"))
    assert picks(sg) == [1, 2, 3, 4]


def test_cosine_topk_pool_then_farthest_first():
    def unit(deg):
        return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]

    # Failures at angles 30, 175, 10, 100, 20, 170 (rows 1..6); anchor at 0 degrees.
    angles = [0, 30, 175, 10, 100, 20, 170]
    emb = [unit(a) for a in angles]
    correct = [1, 0, 0, 0, 0, 0, 0]
    adv, sg = run([0] * 7, correct, emb, CareConfig(k=3, m=4))
    # pool (M=4 nearest): 10, 20, 30, 100 -> picks 10 (nearest), then 100, then 30.
    assert picks(sg) == [3, 4, 1]
    assert sg.rgr_targets().tolist() == [3]
    _, sg_near = run([0] * 7, correct, emb, CareConfig(k=3, selector="nearest"))
    assert picks(sg_near) == [3, 5, 1]
    assert torch.all(adv[[2, 5, 6]] == 0)


def test_cosine_topk_ties_go_to_earlier_pool_order_not_lower_row():
    # A: d(anchor)=0.25 (row 3); C: 0.75 (row 2); B: 1.0 (row 1). d(A,C) = d(A,B) = 0.75.
    A, C, B = v(1, 2, 3, 5), v(1, 6, 7, 8), v(5, 6, 7, -8)
    emb = [ANCHOR, B, C, A]
    _, sg = run([0] * 4, [1, 0, 0, 0], emb, CareConfig(k=2, m=3))
    assert picks(sg) == [3, 2]
    # Pool ties on the anchor distance go to the lower row.
    emb2 = [ANCHOR, B, B, A]
    _, sg2 = run([0] * 4, [1, 0, 0, 0], emb2, CareConfig(k=2, m=2))
    assert picks(sg2) == [3, 1]


def test_random_selector_deterministic_and_order_independent():
    torch.manual_seed(0)
    G, n = 64, 8
    index = torch.arange(G).repeat_interleave(n) * 7919 - 100000  # arbitrary ids
    correct = (torch.arange(G * n) % n == 0).tolist()
    emb = torch.randn(G * n, 4)
    cfg = CareConfig(selector="random", k=3)
    _, sg = run(index.tolist(), correct, emb.tolist(), cfg)
    _, sg_again = run(index.tolist(), correct, emb.tolist(), cfg)
    assert torch.equal(sg.pick, sg_again.pick)
    # Interleave the groups differently, keeping each group's internal row order.
    perm = torch.argsort(torch.arange(G * n) % n * G + torch.randperm(G).repeat_interleave(n), stable=True)
    _, sg_p = run(index[perm].tolist(), [correct[i] for i in perm], emb[perm].tolist(), cfg)
    assert torch.equal(sg_p.pick, sg.pick[perm])
    # Another seed changes the choice somewhere.
    _, sg_s = run(index.tolist(), correct, emb.tolist(), CareConfig(selector="random", k=3, seed=1))
    assert not torch.equal(sg_s.pick, sg.pick)


def test_random_selector_is_roughly_uniform():
    G, n = 2000, 5
    index = torch.arange(G).repeat_interleave(n)
    correct = (torch.arange(G * n) % n == 0).tolist()
    _, sg = run(index.tolist(), correct, torch.ones(G * n, 2).tolist(), CareConfig(selector="random", k=1))
    chosen = (sg.pick.view(G, n) == 0).float().sum(0)[1:]
    assert chosen.sum() == G
    assert torch.all((chosen > 400) & (chosen < 600)), chosen  # expected 500 each, sd ~ 19


@pytest.mark.parametrize("selector", ["cosine_topk", "nearest", "farthest", "mixed", "random"])
def test_rescue_uses_selector_with_pseudo_anchor_as_reference(selector):
    # All failed; pseudo-anchor = row 2 (highest logp); distances from row 2 as in the nearest test.
    emb = [v(5, 6, 7, 8), v(1, 2, 3, 4), ANCHOR, v(5, 6, 7, -8), v(-1, -2, -3, -4), v(1, 2, 5, 6)]
    logp = [-3.0, -2.0, -0.1, -2.0, -2.0, -2.0]
    _, sg = run([0] * 6, [0] * 6, emb, CareConfig(k=2, selector=selector), logp=logp)
    assert sg.role[2] == Role.PSEUDO_ANCHOR and sg.k_prime[0] == 2
    expected = {"cosine_topk": [1, 4], "nearest": [1, 5], "farthest": [4, 0], "mixed": [1, 4]}
    if selector in expected:
        assert picks(sg) == expected[selector]


def test_chunked_gather_matches_direct_cosine():
    from care_verl.core.grouping import group_layout
    from care_verl.core.selectors import cosine_distances

    g = torch.Generator().manual_seed(3)
    sizes = [3, 8, 1, 5, 8, 2, 7]
    index = torch.tensor([i * 5 - 9 for i, n in enumerate(sizes) for _ in range(n)])
    index = index[torch.randperm(len(index), generator=g)]
    emb = torch.randn(len(index), 16, generator=g, dtype=torch.float64)
    lay = group_layout(index)
    assert not lay.contiguous
    want = cosine_distances(lay, emb, chunk_bytes=1 << 30)  # one block
    for chunk in (1, 8 * 16 * 8 * 2, 8 * 16 * 8 * 3):  # one group per block, 2 and 3 groups
        torch.testing.assert_close(cosine_distances(lay, emb, chunk_bytes=chunk), want)
    e = torch.nn.functional.normalize(emb, dim=1)
    for gi in range(lay.num_groups):
        rows = lay.slot_row[gi][lay.valid[gi]]
        torch.testing.assert_close(want[gi, : len(rows), : len(rows)], 1 - e[rows] @ e[rows].T)
    # Contiguous layout (rows group after group, equal sizes) takes the no-copy path.
    idx_c = torch.tensor([7, 7, 3, 3, 9, 9])
    lay_c = group_layout(idx_c)
    assert lay_c.contiguous and lay_c.group_ids.tolist() == [7, 3, 9]
    e6 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    dc = cosine_distances(lay_c, e6)
    en = torch.nn.functional.normalize(e6, dim=1)
    torch.testing.assert_close(dc[1], 1 - en[2:4] @ en[2:4].T)
