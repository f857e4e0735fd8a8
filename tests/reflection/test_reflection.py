"""RGR's pure logic: what is reused, what is skipped, and the shape of the replacement row."""

import torch

from care_verl.reflection import (
    choose_sources,
    extend_positions,
    plan_repairs,
    repaired_response,
    think_prefix,
)

CLOSE = ((9,), (5, 9))  # two encodings of "</think>"


def test_think_prefix_cuts_at_the_first_close_tag_variant():
    assert think_prefix([1, 2, 5, 9, 7, 8], CLOSE) == [1, 2]
    assert think_prefix([1, 9, 2, 9], CLOSE) == [1]
    assert think_prefix([1, 2, 3], CLOSE) == [1, 2, 3]  # unclosed: all of it
    assert think_prefix([], CLOSE) == []


def test_plan_repairs_respects_the_prompt_limit_and_keeps_the_response_budget():
    prompts = {0: [100] * 10, 1: [100] * 10}
    responses = {0: [1, 2, 3, 9, 4], 1: [1] * 20}
    plans, skipped = plan_repairs([0, 1], [0, 1], prompts, responses, CLOSE, cue=[50, 51],
                                  max_prompt_length=20, max_response_length=8)
    assert skipped == [1]  # 10 + 20 + 2 > 20
    (plan,) = plans
    assert (plan.row, plan.prefix, plan.cue, plan.budget) == (0, [1, 2, 3], [50, 51], 8)
    assert plan.context_response == [1, 2, 3, 50, 51]


def test_repaired_response_masks_only_the_cue():
    plans, _ = plan_repairs([0], [0], {0: [7]}, {0: [1, 2, 9, 3]}, CLOSE, [50, 51, 52], 64, 8)
    ids, mask = repaired_response(plans[0], [4, 5])
    assert ids == [1, 2, 50, 51, 52, 4, 5]
    assert mask == [1, 1, 0, 0, 0, 1, 1]


def test_extend_positions_text_and_mrope():
    assert extend_positions(torch.tensor([0, 1, 2]), 2).tolist() == [0, 1, 2, 3, 4]
    mrope = torch.tensor([[0, 1, 2, 6], [0, 1, 1, 6], [0, 1, 2, 6], [0, 1, 2, 6]])
    out = extend_positions(mrope, 2)
    assert out.shape == (4, 6)
    assert out[:, 4:].tolist() == [[7, 8]] * 4


def test_choose_sources_random_picks_a_failure_of_the_same_group():
    index = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    correct = torch.tensor([True, False, False, False, True, False, True, False])
    targets = torch.tensor([1, 5])
    assert choose_sources(targets, index, correct, "repair", torch.Generator()).tolist() == [1, 5]
    picks = set()
    for seed in range(30):
        src = choose_sources(targets, index, correct, "random", torch.Generator().manual_seed(seed))
        assert int(src[0]) in (1, 2, 3) and int(src[1]) in (5, 7)
        picks.add(tuple(src.tolist()))
    assert len(picks) > 1
    a = choose_sources(targets, index, correct, "random", torch.Generator().manual_seed(3))
    b = choose_sources(targets, index, correct, "random", torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
