"""The rows RGR sends back through the log-prob workers (care_verl.adapter.step.trainer.pad_rows_to_multiple)."""

import pytest

from care_verl.adapter.step.trainer import pad_rows_to_multiple


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
