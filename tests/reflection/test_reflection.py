"""RGR's pure logic: what is reused, what is skipped, and the shape of the replacement row."""

import torch

from care_verl.reflection import (
    choose_sources,
    content_key,
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
    assert choose_sources(targets, index, correct, "repair", 0).tolist() == [1, 5]
    picks = set()
    for seed in range(30):
        src = choose_sources(targets, index, correct, "random", seed)
        assert int(src[0]) in (1, 2, 3) and int(src[1]) in (5, 7)
        picks.add(tuple(src.tolist()))
    assert len(picks) > 1
    assert torch.equal(choose_sources(targets, index, correct, "random", 3),
                       choose_sources(targets, index, correct, "random", 3))


def test_choose_sources_random_follows_content_not_row_order():
    """A relaunch may receive the same rows in another order: the draw must pick the same content."""
    index = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    correct = torch.tensor([True, False, False, False, True, False, True, False])
    keys = [content_key("row", i) for i in range(8)]
    perm = [6, 3, 0, 7, 2, 5, 1, 4]  # new position j holds old row perm[j]
    inverse = {old: new for new, old in enumerate(perm)}
    moved = 0
    for seed in range(20):
        src = choose_sources(torch.tensor([1, 5]), index, correct, "random", seed, keys)
        src_perm = choose_sources(torch.tensor([inverse[1], inverse[5]]), index[perm], correct[perm], "random", seed,
                                  [keys[i] for i in perm])
        assert [perm[j] for j in src_perm.tolist()] == src.tolist()
        # without keys the draw follows positions, so some seed picks another row after the shuffle
        by_pos = choose_sources(torch.tensor([inverse[1], inverse[5]]), index[perm], correct[perm], "random", seed)
        moved += [perm[j] for j in by_pos.tolist()] != src.tolist()
    assert moved > 0


def test_content_key_is_stable_and_discriminating():
    assert content_key([1, 2, 3], [4]) == content_key([1, 2, 3], [4])
    assert content_key([1, 2, 3], [4]) != content_key([1, 2], [3, 4])
    assert 0 <= content_key("x") < 2**63
    # fixed across processes (Python's hash() is salted per process; this must not be)
    assert content_key(0, 7) == 8164178574686010183


ANSWER_OPEN = ((20,),)
EOS = 2


def test_unclosed_think_prefix_is_cut_before_the_answer_and_eos():
    # <think>=1 a b <answer>=20 x </answer>=21 EOS: no close tag (9)
    assert think_prefix([1, 3, 4, 20, 5, 21, EOS], CLOSE, ANSWER_OPEN, (EOS,)) == [1, 3, 4]
    # no answer either: only the trailing end-of-turn tokens go
    assert think_prefix([1, 3, 4, EOS, EOS], CLOSE, ANSWER_OPEN, (EOS,)) == [1, 3, 4]
    # a closed response is unchanged by the new arguments
    assert think_prefix([1, 3, 9, 20, 5, EOS], CLOSE, ANSWER_OPEN, (EOS,)) == [1, 3]


def test_plan_marks_unclosed_targets_and_never_reuses_their_answer():
    responses = {0: [1, 3, 20, 5, 21, EOS], 1: [1, 3, 9, 20, 5, 21, EOS]}
    plans, skipped = plan_repairs([0, 1], [0, 1], {0: [7], 1: [7]}, responses, CLOSE, [50], 64, 8,
                                  ANSWER_OPEN, (EOS,))
    assert skipped == []
    by_row = {p.row: p for p in plans}
    assert by_row[0].unclosed and by_row[0].prefix == [1, 3]
    assert not by_row[1].unclosed and by_row[1].prefix == [1, 3]
    assert 20 not in by_row[0].context_response and EOS not in by_row[0].context_response
