"""NT-Xent against the paper's formula written out as a plain double loop."""

import math

import pytest
import torch

from raycl.losses import (byol_loss, info_nce, multi_crop_nt_xent, nt_xent, sinkhorn, swav_loss,
                          topk_accuracy)


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float, cosine: bool = True) -> float:
    """SimCLR eq. (1): ℓ(i,j) = −log exp(sim(z_i,z_j)/τ) / Σ_{k≠i} exp(sim(z_i,z_k)/τ), mean over 2N;
    sim is the cosine, or the plain dot product (Table 5's rows without ℓ2 normalisation)."""
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    n = n2 // 2

    def sim(u, v):
        return float(u @ v / (u.norm() * v.norm())) if cosine else float(u @ v)

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


@pytest.mark.parametrize("tau", [1.0, 10.0])
def test_nt_xent_without_l2_normalisation_uses_dot_products(tau):
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    got = nt_xent(z1.double(), z2.double(), tau, normalize=False).loss.item()
    assert got == pytest.approx(reference_nt_xent(z1, z2, tau, cosine=False), rel=1e-10)
    if tau == 1.0:  # at τ = 10 both losses sit near log(2N − 1)
        assert got != pytest.approx(nt_xent(z1.double(), z2.double(), tau).loss.item(), rel=1e-3)


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


def reference_multi_crop(views: list[torch.Tensor], tau: float, large: int = 2) -> float:
    """Every view of image i is an anchor; its positives are image i's large views other than
    itself; the denominator runs over every other view of the batch."""
    z = [torch.nn.functional.normalize(v.double(), dim=1) for v in views]
    n, terms = z[0].shape[0], []
    for v in range(len(z)):
        for i in range(n):
            denom = sum(math.exp(float(z[v][i] @ z[u][k]) / tau)
                        for u in range(len(z)) for k in range(n) if (u, k) != (v, i))
            for pos in (u for u in range(large) if u != v):
                terms.append(-math.log(math.exp(float(z[v][i] @ z[pos][i]) / tau) / denom))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("count", [3, 4])
def test_multi_crop_nt_xent_matches_double_loop(count):
    g = torch.Generator().manual_seed(count)
    views = [torch.randn(5, 4, generator=g).double() for _ in range(count)]
    out = multi_crop_nt_xent(views, 0.3)
    assert out.loss.item() == pytest.approx(reference_multi_crop(views, 0.3), rel=1e-10)
    # the first positive of every anchor: the other large view, then view 0 for the small ones
    assert out.targets.tolist() == [*range(5, 10), *range(0, 5), *(list(range(5)) * (count - 2))]


def test_multi_crop_nt_xent_with_two_views_is_nt_xent():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 5, generator=g).double(), torch.randn(6, 5, generator=g).double()
    for normalize in (True, False):
        assert multi_crop_nt_xent([z1, z2], 0.5, normalize=normalize).loss.item() == pytest.approx(
            nt_xent(z1, z2, 0.5, normalize=normalize).loss.item(), rel=1e-12)


def test_multi_crop_nt_xent_rejects_bad_input():
    with pytest.raises(ValueError, match="2 large views"):
        multi_crop_nt_xent([torch.randn(4, 3)] * 3, 0.5, large=1)
    with pytest.raises(ValueError, match="one shape"):
        multi_crop_nt_xent([torch.randn(4, 3), torch.randn(4, 3), torch.randn(5, 3)], 0.5)
    with pytest.raises(ValueError, match="temperature"):
        multi_crop_nt_xent([torch.randn(4, 3)] * 3, -1.0)


def test_topk_accuracy_counts_hits():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    acc = topk_accuracy(logits, torch.tensor([1, 1, 0]), ks=(1, 2))
    assert acc[1] == pytest.approx(1 / 3)
    assert acc[2] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- NT-Xent with memory
def test_nt_xent_memory_adds_negatives_to_every_anchor():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(4, 6, generator=g).double(), torch.randn(4, 6, generator=g).double()
    memory = torch.randn(5, 6, generator=g).double()
    tau = 0.2
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    mem = torch.nn.functional.normalize(memory, dim=1)
    total = 0.0
    for i in range(8):
        j = (i + 4) % 8
        denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(8) if k != i)
        denom += sum(math.exp(float(z[i] @ m) / tau) for m in mem)
        total += -math.log(math.exp(float(z[i] @ z[j]) / tau) / denom)
    out = nt_xent(z1, z2, tau, memory=memory)
    assert out.logits.shape == (8, 8 + 5)
    assert out.loss.item() == pytest.approx(total / 8, rel=1e-10)


# --------------------------------------------------------------------------- MoCo InfoNCE
def reference_info_nce(q, k, queue, tau) -> float:
    """MoCo eq. (1): −log exp(q·k+/τ) / (exp(q·k+/τ) + Σ_queue exp(q·k/τ)), normalised vectors."""
    def unit(v):
        return v / v.norm()

    total = 0.0
    for i in range(q.shape[0]):
        qi = unit(q[i])
        pos = math.exp(float(qi @ unit(k[i])) / tau)
        neg = sum(math.exp(float(qi @ unit(kj)) / tau) for kj in queue)
        total += -math.log(pos / (pos + neg))
    return total / q.shape[0]


@pytest.mark.parametrize("tau", [0.07, 0.2])
def test_info_nce_matches_formula(tau):
    g = torch.Generator().manual_seed(7)
    q, k = torch.randn(5, 8, generator=g).double(), torch.randn(5, 8, generator=g).double()
    queue = torch.randn(12, 8, generator=g).double()
    out = info_nce(q, k, queue, tau)
    assert out.logits.shape == (5, 13) and out.targets.tolist() == [0] * 5
    assert out.loss.item() == pytest.approx(reference_info_nce(q, k, queue, tau), rel=1e-10)


def test_info_nce_gradient_flows_to_queries_only():
    q = torch.randn(4, 8, requires_grad=True)
    k = torch.randn(4, 8, requires_grad=True)
    info_nce(q, k, torch.randn(16, 8), 0.1).loss.backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


def test_info_nce_rejects_bad_input():
    with pytest.raises(ValueError, match="queue"):
        info_nce(torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 7), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8), -1.0)


# --------------------------------------------------------------------------- BYOL
def test_byol_loss_is_squared_distance_of_normalised_vectors():
    g = torch.Generator().manual_seed(1)
    p, z = torch.randn(6, 10, generator=g).double(), torch.randn(6, 10, generator=g).double()
    ref = [float(((p[i] / p[i].norm() - z[i] / z[i].norm()) ** 2).sum()) for i in range(6)]
    assert byol_loss(p, z).tolist() == pytest.approx(ref, rel=1e-10)
    assert byol_loss(p, 2 * p).abs().max().item() < 1e-12  # scale-invariant, 0 when aligned


def test_byol_loss_stops_gradient_of_target():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    byol_loss(p, z).sum().backward()
    assert p.grad.abs().sum() > 0 and z.grad is None


# --------------------------------------------------------------------------- SwAV
def reference_sinkhorn(scores: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """SwAV's Algorithm (appendix A.1), written out as in the paper: Q = exp(Cᵀz/ε), alternately
    normalise the K prototype rows to 1/K and the B sample columns to 1/B; return Q·B transposed."""
    q = torch.exp(scores.double() / eps).T  # [K, B]
    k, b = q.shape
    q = q / q.sum()
    for _ in range(iters):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).T


@pytest.mark.parametrize("batch,protos,eps", [(8, 5, 0.05), (32, 10, 0.1), (3, 7, 0.5)])
def test_sinkhorn_equals_reference(batch, protos, eps):
    g = torch.Generator().manual_seed(batch)
    scores = torch.nn.functional.normalize(torch.randn(batch, protos, generator=g), dim=1)
    got = sinkhorn(scores.double(), eps, 3)
    torch.testing.assert_close(got, reference_sinkhorn(scores, eps, 3), rtol=1e-9, atol=1e-12)


def test_sinkhorn_marginals_are_uniform():
    g = torch.Generator().manual_seed(0)
    scores = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=1)
    q = sinkhorn(scores, 0.05, 3)
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-5)  # each sample: a distribution
    q = sinkhorn(scores, 0.05, 50)  # converged: prototypes equally used
    assert torch.allclose(q.sum(dim=1), torch.ones(64), atol=1e-3)
    assert torch.allclose(q.sum(dim=0), torch.full((16,), 64 / 16), atol=1e-3 * 64 / 16)


@pytest.mark.parametrize("batch,eps", [(2, 0.05), (1, 1e-4), (4, 1e-6)])
def test_sinkhorn_is_finite_for_small_batches_and_large_inverse_epsilon(batch, eps):
    scores = torch.nn.functional.normalize(torch.randn(batch, 30), dim=1)
    q = sinkhorn(scores, eps, 3)
    assert torch.isfinite(q).all()
    assert torch.allclose(q.sum(dim=1), torch.ones(batch), atol=1e-5)


def test_sinkhorn_rejects_bad_input():
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn(torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError, match="iterations"):
        sinkhorn(torch.randn(4, 3), 0.05, 0)


def test_swav_loss_matches_swapped_prediction_formula():
    g = torch.Generator().manual_seed(5)
    views = [torch.randn(6, 9, generator=g).double() for _ in range(4)]  # 2 large + 2 small
    codes = [torch.softmax(torch.randn(6, 9, generator=g).double(), dim=1) for _ in range(2)]
    tau = 0.1
    total = 0.0
    for s in range(2):
        sub = 0.0
        for t in range(4):
            if t == s:
                continue
            logp = torch.log_softmax(views[t] / tau, dim=1)
            sub += -sum(float((codes[s][b] * logp[b]).sum()) for b in range(6)) / 6
        total += sub / 3
    assert swav_loss(views, codes, tau).item() == pytest.approx(total / 2, rel=1e-10)
