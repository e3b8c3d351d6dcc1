"""Local response normalisation against the formula of §3.3, computed independently."""

import pytest
import torch
from torch import nn

from alexnet.models import LocalResponseNorm


def lrn_by_the_formula(a: torch.Tensor, n: int, alpha: float, beta: float, k: float, over_n: bool) -> torch.Tensor:
    """b_c = a_c / (k + alpha * sum_{j = max(0, c - n/2)}^{min(N-1, c + n/2)} a_j^2)^beta, a loop per channel."""
    channels = a.shape[1]
    out = torch.empty_like(a)
    for c in range(channels):
        window = a[:, max(0, c - n // 2) : min(channels - 1, c + n // 2) + 1]
        total = (window**2).sum(dim=1)
        scale = alpha / n if over_n else alpha
        out[:, c] = a[:, c] / (k + scale * total) ** beta
    return out


@pytest.mark.parametrize("over_n", [False, True])
def test_matches_the_formula_in_both_conventions(over_n):
    torch.manual_seed(0)
    a = torch.randn(2, 12, 5, 5, dtype=torch.float64) * 30  # large activations so the sum matters
    lrn = LocalResponseNorm(12, size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_over_n=over_n)
    expected = lrn_by_the_formula(a, 5, 1e-4, 0.75, 2.0, over_n)
    torch.testing.assert_close(lrn(a), expected, rtol=1e-12, atol=0)
    assert not torch.allclose(expected, a / 2.0**0.75)  # the normalisation is not negligible here


def test_printed_formula_equals_torch_lrn_with_alpha_times_n():
    a = torch.randn(4, 96, 11, 11) * 10
    ours = LocalResponseNorm(96, size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_over_n=False)
    torch.testing.assert_close(ours(a), nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(a))


def test_alpha_over_n_equals_torch_lrn_with_the_same_alpha():
    a = torch.randn(4, 96, 11, 11) * 10
    ours = LocalResponseNorm(96, size=5, alpha=1e-4, beta=0.75, k=2.0, alpha_over_n=True)
    torch.testing.assert_close(ours(a), nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a))


def test_groups_normalise_each_column_on_its_own():
    a = torch.randn(2, 8, 3, 3, dtype=torch.float64) * 30
    grouped = LocalResponseNorm(8, groups=2, size=5)(a)
    single = LocalResponseNorm(4, size=5)
    torch.testing.assert_close(grouped, torch.cat([single(a[:, :4]), single(a[:, 4:])], dim=1))


@pytest.mark.parametrize("size", [0, 4, -3])
def test_rejects_windows_that_are_not_odd_and_positive(size):
    with pytest.raises(ValueError, match="odd and positive"):
        LocalResponseNorm(8, size=size)
