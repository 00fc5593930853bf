"""NT-Xent against the paper's formula written out as a plain double loop."""

import math

import pytest
import torch

from raycl.losses import nt_xent, topk_accuracy


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """SimCLR eq. (1): ℓ(i,j) = −log exp(sim(z_i,z_j)/τ) / Σ_{k≠i} exp(sim(z_i,z_k)/τ), mean over 2N."""
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    n = n2 // 2

    def sim(u, v):
        return float(u @ v / (u.norm() * v.norm()))

    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        denom = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim(z[i], z[j]) / tau) / denom)
    return total / n2


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5, 1.0])
def test_nt_xent_matches_double_loop(tau):
    g = torch.Generator().manual_seed(int(tau * 100))
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    got = nt_xent(z1.double(), z2.double(), tau).loss.item()
    assert got == pytest.approx(reference_nt_xent(z1, z2, tau), rel=1e-10)


def test_nt_xent_is_scale_invariant_and_low_for_identical_views():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 16, generator=g)
    same = nt_xent(z, 3 * z, 0.1).loss
    other = nt_xent(z, torch.randn(8, 16, generator=g), 0.1).loss
    assert same < other
    assert nt_xent(z, z, 0.1).loss.item() == pytest.approx(same.item(), rel=1e-5)


def test_nt_xent_masks_self_and_targets_positive():
    z1, z2 = torch.eye(4), torch.eye(4)
    out = nt_xent(z1, z2, 0.5)
    assert torch.isinf(out.logits.diagonal()).all()
    assert out.targets.tolist() == [4, 5, 6, 7, 0, 1, 2, 3]
    assert topk_accuracy(out.logits, out.targets)[1] == 1.0


def test_nt_xent_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3), 0.5)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), 0.0)


def test_topk_accuracy_counts_hits():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    acc = topk_accuracy(logits, torch.tensor([1, 1, 0]), ks=(1, 2))
    assert acc[1] == pytest.approx(1 / 3)
    assert acc[2] == pytest.approx(2 / 3)
