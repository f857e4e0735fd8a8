"""The rows RGR sends back through the log-prob workers (care_verl.adapter.step.trainer.recompute_rows,
pad_rows_to_multiple)."""

import itertools

import pytest

from care_verl.adapter.step.trainer import pad_rows_to_multiple, recompute_rows


@pytest.mark.parametrize("rows, batch, multiple", [([5], 16, 4), ([3, 9], 16, 4), ([0, 1, 2, 3], 16, 4),
                                                   ([15, 2, 7], 32, 8), ([4], 16, 1)])
def test_topped_up_with_distinct_rows_to_the_multiple(rows, batch, multiple):
    out = pad_rows_to_multiple(rows, batch, multiple)
    assert out[: len(rows)] == rows  # the replaced rows first, in order
    assert len(out) % multiple == 0 and len(out) < batch
    assert len(set(out)) == len(out)  # no key twice
    assert all(0 <= i < batch for i in out)


@pytest.mark.parametrize("rows, batch, multiple", [([1, 2, 3], 4, 4), ([7], 8, 8), ([1, 2, 3, 4, 5], 6, 4)])
def test_whole_batch_when_the_padded_size_reaches_it(rows, batch, multiple):
    assert pad_rows_to_multiple(rows, batch, multiple) == list(range(batch))


@pytest.mark.parametrize("rows, batch, ranks, micro, sent, size", [
    ([5], 64, 1, 16, [5], 1),                    # one row, one micro-batch of 1 (was: 16 rows)
    ([9, 3], 64, 1, 4, [9, 3], 2),               # (was: 4 rows)
    ([40, 2, 7, 11, 63], 64, 1, 4, [40, 2, 7, 11, 63, 0], 3),  # 2 micro-batches of 3, not 2 of 4
    ([5], 16, 2, 4, [5, 0], 1),                  # one row per rank (was: 8 rows)
    ([3, 9, 20], 64, 2, 4, [3, 9, 20, 0], 2),
    ([1, 2, 3], 16, 1, 16, [1, 2, 3], 3),        # micro 16 = the batch: was the whole batch
])
def test_only_the_replaced_rows_with_a_call_sized_micro_batch(rows, batch, ranks, micro, sent, size):
    assert recompute_rows(rows, batch, ranks, micro) == (sent, size)


def test_whole_batch_with_the_configured_micro_batch_when_topping_up_reaches_it():
    assert recompute_rows(list(range(15)), 16, 1, 4) == (list(range(16)), None)
    assert recompute_rows([0, 1, 2, 5, 4], 6, 2, 4) == (list(range(6)), None)  # 3 per rank x 2 ranks


def test_dynamic_batch_size_splits_over_the_ranks_only():
    assert recompute_rows([5], 16, 1, None) == ([5], None)
    assert recompute_rows([5, 6, 7], 16, 2, None) == ([5, 6, 7, 0], None)


@pytest.mark.parametrize("ranks, micro", [(1, 1), (1, 4), (1, 16), (2, 4), (2, 8), (4, 3)])
def test_every_count_of_replaced_rows(ranks, micro):
    """What verl's worker accepts (each rank's rows a whole number of micro-batches no larger than the
    configured one, engine/utils.py:125), the replaced rows first and no key twice, and never more
    rows or micro-batches than a rank's share of the replaced rows needs."""
    batch = 8 * ranks * micro
    for k in range(1, batch + 1):
        rows = list(itertools.islice(itertools.cycle(range(batch - 1, -1, -3)), k)) if k <= batch // 3 else \
            list(range(batch - k, batch))
        sent, size = recompute_rows(rows, batch, ranks, micro)
        if size is None:  # whole batch, with the configured micro-batch (which divides it)
            # only when less than a row per micro-batch would be left out (each rank has at most
            # batch / (ranks x micro) micro-batches, each topped up by less than one row)
            assert sent == list(range(batch)) and k > batch - batch // micro, k
            continue
        assert sent[:k] == rows and len(set(sent)) == len(sent) and all(0 <= i < batch for i in sent)
        per_rank = len(sent) // ranks
        need = -(-k // ranks)
        assert len(sent) % ranks == 0 and per_rank % size == 0 and size <= micro
        assert per_rank // size == -(-need // micro)  # as few micro-batches as the configured size allows
        assert per_rank - need < per_rank // size  # less than one row of top-up per micro-batch
