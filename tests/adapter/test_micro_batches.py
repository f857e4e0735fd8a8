"""Micro-batches of rows of similar length (care_verl/adapter/runtime/micro_batches.py) and the patch
that makes verl's padded engine use them (patches.patch_padded_micro_batches)."""

import itertools
import random

import pytest
import torch

import care_verl.adapter.entry.register  # noqa: F401  (applies the patches, as the verl plugin does)
from care_verl.adapter.runtime.micro_batches import padded_cost, padded_partition
from care_verl.adapter.runtime.patches import SORTED_MICRO_BATCHES_ENV


def set_partitions(items):
    """Every partition of ``items`` into non-empty blocks."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1:]
        yield [[first]] + part


def test_every_row_once_and_within_the_budget():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 40))]
        budget = rng.randint(max(lengths), 400)
        parts = padded_partition(lengths, budget, overhead_tokens=rng.choice([0, 16, 256]))
        assert sorted(i for p in parts for i in p) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in p) <= budget for p in parts)
        # runs of the length order: every row of a part is no longer than every row of the next
        for a, b in zip(parts, parts[1:]):
            assert max(lengths[i] for i in a) <= min(lengths[i] for i in b)


@pytest.mark.parametrize("overhead", [0, 10, 40])
def test_minimum_padded_cost_over_all_partitions(overhead):
    """Without a binding budget the runs of the sorted rows are optimal over every partition."""
    rng = random.Random(overhead)
    for _ in range(30):
        lengths = [rng.randint(1, 30) for _ in range(rng.randint(1, 7))]
        parts = padded_partition(lengths, 10_000, overhead_tokens=overhead)
        best = min(padded_cost(lengths, p, overhead) for p in set_partitions(list(range(len(lengths)))))
        assert padded_cost(lengths, parts, overhead) == best, lengths


def test_long_rows_get_their_own_micro_batch():
    """The demo's update mini-batch: 26 rows of 43 + 35 tokens and 6 RGR rows of 43 + 112."""
    lengths = [78] * 13 + [155] * 3 + [78] * 13 + [155] * 3
    parts = padded_partition(lengths, 16384)
    long_rows = [i for i, n in enumerate(lengths) if n == 155]
    assert parts == [[i for i in range(32) if i not in long_rows], long_rows]
    assert padded_cost(lengths, parts) < padded_cost(lengths, [list(range(32))])


def test_one_micro_batch_when_splitting_saves_less_than_its_overhead():
    assert padded_partition([40, 41, 42, 43] * 8, 16384) == [sorted(range(32), key=lambda i: ([40, 41, 42, 43] * 8)[i])]
    assert padded_partition([], 100) == []


def test_the_budget_splits_equal_rows():
    parts = padded_partition([10] * 10, 35, overhead_tokens=0)
    assert [len(p) for p in parts] and all(len(p) <= 3 for p in parts)
    assert sorted(itertools.chain(*parts)) == list(range(10))


def test_a_row_over_the_budget_is_an_error():
    with pytest.raises(ValueError, match="exceeds the micro-batch budget"):
        padded_partition([10, 50], 40)


def _mini_batch(lengths, remove_padding: bool):
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    rows = [torch.arange(n) + 100 * i for i, n in enumerate(lengths)]
    td = TensorDict({"input_ids": torch.nested.as_nested_tensor(rows, layout=torch.jagged)}, batch_size=len(rows))
    tu.assign_non_tensor(td, use_dynamic_bsz=True, max_token_len_per_gpu=16384, use_remove_padding=remove_padding)
    return td


def _first_ids(micro_batches):
    return [[int(r[0]) // 100 for r in mb["input_ids"].unbind()] for mb in micro_batches]


def test_verls_prepare_micro_batches_splits_padded_batches_by_length(monkeypatch):
    """Through verl's own ``prepare_micro_batches``: a padded batch (no remove-padding) is split by
    length and verl's ``restore_dynamic_batch`` puts per-row outputs back in the original order; a
    remove-padding batch, or ``$CARE_VERL_SORTED_MICRO_BATCHES=0``, keeps verl's one micro-batch."""
    from verl.utils.seqlen_balancing import restore_dynamic_batch
    from verl.workers.engine.utils import prepare_micro_batches

    lengths = [78, 155, 78, 78, 155, 78, 78, 78] * 4
    micro, idx = prepare_micro_batches(_mini_batch(lengths, remove_padding=False))
    assert _first_ids(micro) == idx  # each micro-batch holds the rows its index list names
    assert [sorted({lengths[i] for i in p}) for p in idx] == [[78], [155]]
    outputs = torch.cat([mb["input_ids"].offsets().diff() for mb in micro])  # a per-row "output"
    assert restore_dynamic_batch(outputs, idx).tolist() == lengths

    for remove_padding, env in ((True, "1"), (False, "0")):
        monkeypatch.setenv(SORTED_MICRO_BATCHES_ENV, env)
        micro, idx = prepare_micro_batches(_mini_batch(lengths, remove_padding))
        assert len(micro) == 1 and sorted(idx[0]) == list(range(32))


def test_split_padded_forward_gives_the_same_log_probs_and_gradients():
    """What the patch relies on: the tiny Qwen2.5-VL's per-row log-probs do not depend on how far a
    micro-batch is padded (right padding, attention mask), and a token-mean loss normalised by the
    mini-batch's token count gives the same gradient summed over sorted micro-batches."""
    from transformers import AutoModelForImageTextToText

    from care_verl.models import build_tiny_model

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(build_tiny_model("qwen2_5_vl"), attn_implementation="sdpa")
    vocab = model.config.get_text_config().vocab_size
    lengths = [20, 60, 20, 20, 60, 20, 20, 20]
    rows = [torch.randint(10, vocab - 10, (n,)) for n in lengths]
    total = sum(n - 1 for n in lengths)

    def loss_and_lp(idx):
        longest = max(lengths[i] for i in idx)
        ids = torch.zeros(len(idx), longest, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for k, i in enumerate(idx):
            ids[k, : lengths[i]], mask[k, : lengths[i]] = rows[i], 1
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]
        return -lp.sum() / total, [lp[k, : lengths[i] - 1] for k, i in enumerate(idx)]

    whole_loss, whole_lp = loss_and_lp(list(range(8)))
    whole_loss.backward()
    text_params = [p for p in model.parameters() if p.grad is not None]  # no image: the vision tower gets none
    assert text_params
    whole_grad = [p.grad.clone() for p in text_params]
    model.zero_grad()
    parts = padded_partition(lengths, 16384, overhead_tokens=50)
    assert sorted(map(sorted, parts)) == [[0, 2, 3, 5, 6, 7], [1, 4]]
    split_lp = {}
    for p in parts:
        loss, lp = loss_and_lp(p)
        loss.backward()
        split_lp.update(zip(p, lp))
    for i in range(8):
        torch.testing.assert_close(split_lp[i], whole_lp[i], rtol=0, atol=1e-5)
    for g, p in zip(whole_grad, text_params):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
