"""Barlow Twins' loss against the paper's formula written out, in one process."""

import torch
from torch import nn

from raycl.methods.barlow_twins import barlow_twins_loss


def _reference(z1, z2, lambd):
    """The paper's Algorithm 1: c = bn(z1).T @ bn(z2) / N, Σ (1 − c_ii)² + λ Σ_{i≠j} c_ij²."""
    n, d = z1.shape
    bn = nn.BatchNorm1d(d, affine=False).double()
    c = bn(z1).T @ bn(z2) / n
    on = sum((1 - c[i, i]) ** 2 for i in range(d))
    off = sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    return on + lambd * off, c


def test_loss_is_the_papers_formula():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(12, 5, generator=g, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(12, 5, generator=g, dtype=torch.float64)
    loss, c = barlow_twins_loss(z1, z2, lambd=0.3)
    ref_loss, ref_c = _reference(z1, z2, 0.3)
    torch.testing.assert_close(c, ref_c)
    torch.testing.assert_close(loss, ref_loss)


def test_identical_decorrelated_views_have_zero_loss():
    x = torch.randn(64, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z = 3 * torch.linalg.qr(x - x.mean(0))[0]  # centred, orthogonal columns (not unit variance)
    loss, c = barlow_twins_loss(z, z, lambd=1.0)
    torch.testing.assert_close(torch.diagonal(c), torch.ones(4, dtype=torch.float64), atol=1e-4, rtol=0)
    assert loss < 1e-6
