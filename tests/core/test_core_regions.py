import pytest
import torch

from care_verl.core import region_token_advantages, region_weights

# Row layout (T = 10): think tokens 1..4, answer tokens 6..7, padding from `length` on.
T = 10


def masks(lengths, answer=True):
    B = len(lengths)
    pos = torch.arange(T).expand(B, T)
    resp = pos < torch.tensor(lengths).unsqueeze(1)
    think = (pos >= 1) & (pos <= 4) & resp
    ans = (pos >= 6) & (pos <= 7) & resp if answer else torch.zeros(B, T, dtype=torch.bool)
    return resp, think, ans


def test_region_mode_values_and_sums():
    A = torch.tensor([2.0, -0.5, 0.0])
    resp, think, ans = masks([9, 9, 9])
    a = region_token_advantages(A, resp, think, ans, "region", tau_pos=0.005, eps_w=1e-6)
    w_pos = 2 + 4 * 0.005
    torch.testing.assert_close(a[0, 6], torch.tensor(2.0 / (w_pos + 1e-6)))
    torch.testing.assert_close(a[0, 1], torch.tensor(2.0 * 0.005 / (w_pos + 1e-6)))
    assert a[0, 0] == 0 and a[0, 5] == 0 and a[0, 8] == 0  # tags / text outside spans: 0
    # Failed row: think tokens exactly 0, answer tokens carry everything.
    assert torch.all(a[1, 1:5] == 0)
    torch.testing.assert_close(a[1, 6:8], torch.full((2,), -0.5 / (2 + 1e-6)))
    assert torch.all(a[2] == 0)
    # Each row sums to A * W / (W + eps_w).
    W = torch.tensor([w_pos, 2.0, 2.0])
    torch.testing.assert_close(a.sum(1), A * W / (W + 1e-6))
    assert torch.all(a[~resp] == 0)


def test_answer_only_and_uniform_modes():
    A = torch.tensor([1.0, -1.0])
    resp, think, ans = masks([9, 8])
    a = region_token_advantages(A, resp, think, ans, "answer_only")
    assert torch.all(a[:, 1:5] == 0)
    torch.testing.assert_close(a[0, 6:8], torch.full((2,), 1 / (2 + 1e-6)))
    u = region_token_advantages(A, resp, think, ans, "uniform")
    torch.testing.assert_close(u[0, :9], torch.full((9,), 1 / (9 + 1e-6)))
    torch.testing.assert_close(u[1, :8], torch.full((8,), -1 / (8 + 1e-6)))
    assert torch.all(u[1, 8:] == 0)
    torch.testing.assert_close(u.sum(1), A * torch.tensor([9.0, 8.0]) / (torch.tensor([9.0, 8.0]) + 1e-6))


def test_row_without_answer_span_uses_whole_response():
    A = torch.tensor([-1.0, 1.0])
    resp, think, _ = masks([9, 9])
    ans = torch.zeros(2, T, dtype=torch.bool)
    ans[1, 6] = True  # only row 1 has an answer span
    w = region_weights(A, resp, think, ans, "region")
    assert torch.equal(w[0], resp[0].float())  # failed row, but its whole response is "answer"
    assert w[1, 6] == 1 and w[1, 7] == 0 and w[1, 2] == pytest.approx(0.005)
    # Answer tokens outside the response mask do not count.
    ans_pad = torch.zeros(2, T, dtype=torch.bool)
    ans_pad[:, 9] = True
    w2 = region_weights(A, resp, think, ans_pad, "region")
    assert torch.equal(w2, resp.float())


def test_empty_response_row_is_zero_even_with_eps_zero():
    A = torch.tensor([1.0])
    z = torch.zeros(1, T, dtype=torch.bool)
    a = region_token_advantages(A, z, z, z, "region", eps_w=0.0)
    assert torch.all(a == 0) and torch.isfinite(a).all()


def test_bad_arguments():
    A = torch.tensor([1.0])
    resp, think, ans = masks([9])
    with pytest.raises(ValueError, match="mode"):
        region_token_advantages(A, resp, think, ans, "paper")
    with pytest.raises(ValueError, match="tau_pos"):
        region_token_advantages(A, resp, think, ans, "region", tau_pos=-1.0)
    with pytest.raises(ValueError, match="eps_w"):
        region_token_advantages(A, resp, think, ans, "region", eps_w=-1.0)
