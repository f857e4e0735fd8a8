"""Pooling of the LM head's input into reasoning embeddings (care_verl/adapter/step/embeddings.py)."""

import torch
import torch.nn.functional as F

from care_verl.adapter.step.embeddings import packed_hidden, pool_packed


def test_pool_packed_is_the_weighted_mean_per_sequence_normalised():
    torch.manual_seed(0)
    lengths = [3, 5, 2]
    offsets = torch.tensor([0, 3, 8, 10])
    hidden = torch.randn(10, 6)
    weights = torch.tensor([0, 1, 1, 1, 1, 0, 0, 1, 0, 0], dtype=torch.float)
    got = pool_packed(hidden, weights, offsets)
    for i in range(3):
        seg = slice(int(offsets[i]), int(offsets[i + 1]))
        w = weights[seg]
        if w.sum() > 0:
            expected = F.normalize((hidden[seg] * w[:, None]).sum(0) / w.sum(), dim=0)
            assert torch.allclose(got[i], expected, atol=1e-6)
        else:
            assert torch.count_nonzero(got[i]) == 0  # no span: zero vector, not NaN
    assert len(lengths) == got.shape[0]


def test_packed_hidden_matches_both_layouts():
    torch.manual_seed(1)
    offsets = torch.tensor([0, 2, 5])
    rows = [torch.randn(2, 4), torch.randn(3, 4)]
    padded = torch.zeros(2, 3, 4)
    padded[0, :2], padded[1, :3] = rows[0], rows[1]
    packed = torch.cat(rows)[None]
    expected = torch.cat(rows)
    assert torch.equal(packed_hidden(padded, offsets, use_remove_padding=False, unpad=None), expected)
    with_pad = torch.cat([packed, torch.zeros(1, 3, 4)], dim=1)  # engine's static tail padding
    got = packed_hidden(with_pad, offsets, use_remove_padding=True, unpad=lambda t: t[:-3])
    assert torch.equal(got, expected)


def test_check_embeddings_rejects_zero_and_non_finite_rows_by_index():
    import pytest

    from care_verl.adapter.step.embeddings import check_embeddings

    good = F.normalize(torch.randn(4, 6), dim=-1)
    check_embeddings(good)
    zero = good.clone()
    zero[2] = 0
    with pytest.raises(ValueError, match=r"all zero for rows \[2\] of 4"):
        check_embeddings(zero)
    nan = good.clone()
    nan[1, 3] = float("nan")
    nan[3, 0] = float("inf")
    with pytest.raises(FloatingPointError, match=r"NaN/inf for rows \[1, 3\] of 4"):
        check_embeddings(nan)
    with pytest.raises(ValueError, match="must be \\[rows, hidden\\]"):
        check_embeddings(good[0])
