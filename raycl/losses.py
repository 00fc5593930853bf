"""Loss functions, written as small pure functions over tensors.

Losses that need the global batch take the local tensors and gather what they need through
:mod:`raycl.distributed`; with one process that is the identity.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from raycl import distributed


class ContrastiveOutput(NamedTuple):
    loss: torch.Tensor  # mean over this rank's anchors
    logits: torch.Tensor  # [anchors, candidates], self-similarity masked with -inf
    targets: torch.Tensor  # index of each anchor's positive among the candidates


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float,
            memory: torch.Tensor | None = None, normalize: bool = True) -> ContrastiveOutput:
    """NT-Xent (SimCLR, Chen et al. 2020, eq. 1) over the global batch of 2N views.

    ``z1[i]`` and ``z2[i]`` are the projections of two views of local image i. With cosine similarity
    ``sim(u, v) = uᵀv / (‖u‖‖v‖)``, each anchor ``i`` with positive ``j`` contributes::

        ℓ(i, j) = −log  exp(sim(z_i, z_j)/τ) / Σ_{k ≠ i} exp(sim(z_i, z_k)/τ)

    where k runs over all 2N views of the *global* batch (gathered from every worker, with gradients).
    The loss is the mean of ℓ over this rank's 2B anchors (both orders of every positive pair); the mean
    over ranks is the paper's loss over the global batch, so N workers equal one worker with batch N·B.

    ``memory`` ([M, D], no gradient, e.g. SimCLRv2's queue of past projections) adds M negatives to
    every anchor's denominator; its columns follow the 2N batch columns in ``logits``.
    ``normalize=False`` uses the dot product ``uᵀv`` instead of the cosine (SimCLR Table 5's rows
    without ℓ2 normalisation, with τ = 10 or 100).
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must be [batch, dim] of the same shape, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature = {temperature!r} must be > 0")
    b = z1.shape[0]
    if normalize:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    g1, g2 = distributed.gather(z1), distributed.gather(z2)
    n = g1.shape[0]  # global batch
    offset = distributed.rank() * b

    anchors = torch.cat([z1, z2])  # [2B, D]
    candidates = torch.cat([g1, g2])  # [2N, D]
    logits = anchors @ candidates.T / temperature

    local = torch.arange(b, device=z1.device) + offset
    self_idx = torch.cat([local, local + n])
    targets = torch.cat([local + n, local])
    logits = logits.masked_fill(
        F.one_hot(self_idx, num_classes=2 * n).bool(), float("-inf"))
    if memory is not None and memory.numel():
        logits = torch.cat([logits, anchors @ F.normalize(memory, dim=1).T / temperature], dim=1)
    return ContrastiveOutput(F.cross_entropy(logits, targets), logits, targets)


def multi_crop_nt_xent(views: list[torch.Tensor], temperature: float, large: int = 2,
                       normalize: bool = True) -> ContrastiveOutput:
    """NT-Xent with multi-crop (SwAV, Caron et al. 2020, §4: multi-crop applied to SimCLR): every view
    of an image is an anchor whose positives are that image's *large* views other than itself.

    ``views`` are the V projections ``[B, D]`` of local images, the ``large`` ones first. For anchor
    view ``v`` of image ``i`` and each large view ``l ≠ v`` of the same image::

        ℓ(v, l) = −log  exp(sim(z_v^i, z_l^i)/τ) / Σ_{(u, k) ≠ (v, i)} exp(sim(z_v^i, z_u^k)/τ)

    where ``(u, k)`` runs over all V·N views of the *global* batch; the loss is the mean of ℓ over
    this rank's (anchor, positive) pairs. Small crops are never each other's positives (as in SwAV,
    where only large crops give codes). With two views this is :func:`nt_xent` exactly.
    ``targets`` are each anchor's first positive (large anchors: the other large view).
    """
    if not 2 <= large <= len(views):
        raise ValueError(f"multi_crop_nt_xent needs at least 2 large views among the {len(views)} "
                         f"views, got large = {large}")
    b = views[0].shape[0]
    if any(v.shape != views[0].shape or v.dim() != 2 for v in views):
        raise ValueError("every view must be [batch, dim] of one shape, got "
                         f"{[tuple(v.shape) for v in views]}")
    if not temperature > 0:
        raise ValueError(f"temperature = {temperature!r} must be > 0")
    if normalize:
        views = [F.normalize(v, dim=1) for v in views]
    gathered = [distributed.gather(v) for v in views]
    n, count = gathered[0].shape[0], len(views)
    local = torch.arange(b, device=views[0].device) + distributed.rank() * b

    anchors = torch.cat(views)  # [V·B, D], view-major
    logits = anchors @ torch.cat(gathered).T / temperature  # [V·B, V·N]
    self_idx = torch.cat([local + v * n for v in range(count)])
    logits = logits.masked_fill(F.one_hot(self_idx, num_classes=count * n).bool(), float("-inf"))
    log_prob = logits.log_softmax(dim=1)
    terms, targets = [], []
    for v in range(count):
        rows = log_prob[v * b:(v + 1) * b]
        positives = [u for u in range(large) if u != v]
        terms += [rows.gather(1, (local + u * n)[:, None]).squeeze(1) for u in positives]
        targets.append(local + positives[0] * n)
    return ContrastiveOutput(-torch.cat(terms).mean(), logits, torch.cat(targets))


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float
             ) -> ContrastiveOutput:
    """InfoNCE with a queue of negatives (MoCo, He et al. 2020, eq. 1).

    For each query ``q_i`` with its positive key ``k_i`` (no gradient) and the K keys of the queue::

        ℓ_i = −log  exp(q_i·k_i/τ) / (exp(q_i·k_i/τ) + Σ_j exp(q_i·queue_j/τ))

    on L2-normalised vectors, so the (K+1)-way logits hold the positive at index 0. Every rank uses the
    same queue, so the mean over ranks is the loss of one worker with the global batch.
    """
    if q.shape != k.shape or q.dim() != 2:
        raise ValueError(f"q and k must be [batch, dim] of the same shape, got {tuple(q.shape)} and "
                         f"{tuple(k.shape)}")
    if queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be [K, {q.shape[1]}], got {tuple(queue.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature = {temperature!r} must be > 0")
    q, k = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negatives = q @ F.normalize(queue.detach(), dim=1).T
    logits = torch.cat([positive, negatives], dim=1) / temperature
    targets = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return ContrastiveOutput(F.cross_entropy(logits, targets), logits, targets)


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al. 2020, eq. 2): ‖p̄ − z̄‖² = 2 − 2·cos(p, z) per pair.

    ``p`` is the online prediction, ``z`` the target projection of the other view (gradient stopped
    here). Returns the per-pair losses ``[B]``; BYOL sums the two symmetric terms.
    """
    if p.shape != z.shape or p.dim() != 2:
        raise ValueError(f"p and z must be [batch, dim] of the same shape, got {tuple(p.shape)} and "
                         f"{tuple(z.shape)}")
    return 2.0 - 2.0 * F.cosine_similarity(p, z.detach(), dim=1)


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Sinkhorn-Knopp codes Q over the *global* batch (SwAV, Caron et al. 2020, eq. 3 and App. A.1).

    ``scores`` are this rank's ``[B, K]`` prototype scores zᵀc (rows may include queued embeddings).
    Solves ``max_Q Tr(Qᵀ Cᵀ Z) + ε H(Q)`` over the transportation polytope: Q ∝ exp(scores/ε), then
    ``iterations`` rounds of normalising prototype rows to total 1/K and sample columns to 1/B_global,
    where the row sums are all-reduced over ranks (so N workers equal one worker with the whole
    batch). Returns ``[B, K]`` codes with each sample's row summing to 1 (the paper's Q·B).

    Works in the log domain in float64: no overflow for large 1/ε and no 0/0 for tiny batches.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [batch, prototypes], got {tuple(scores.shape)}")
    if not epsilon > 0:
        raise ValueError(f"epsilon = {epsilon!r} must be > 0")
    if iterations < 1:
        raise ValueError(f"iterations = {iterations!r} must be >= 1")
    log_q = scores.double() / epsilon  # [B, K]
    b_local, k = log_q.shape
    b_total = distributed.all_reduce_sum(torch.tensor(float(b_local), dtype=torch.float64,
                                                      device=scores.device))
    for _ in range(iterations):
        # prototypes (columns here): each sums to 1/K over the global batch
        log_q = log_q - _global_logsumexp_over_batch(log_q) - math.log(k)
        # samples (rows here): each sums to 1/B
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - torch.log(b_total)
    return (log_q + torch.log(b_total)).exp().to(scores.dtype)


def _global_logsumexp_over_batch(log_q: torch.Tensor) -> torch.Tensor:
    """log Σ_b exp(log_q[b, k]) over the rows of every rank: ``[1, K]``."""
    m = distributed.all_reduce_max(log_q.max(dim=0, keepdim=True).values)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    total = distributed.all_reduce_sum((log_q - m).exp().sum(dim=0, keepdim=True))
    return total.log() + m


def swav_loss(scores: list[torch.Tensor], codes: list[torch.Tensor], temperature: float
              ) -> torch.Tensor:
    """Swapped prediction (SwAV eq. 1–2): predict view s's code from every other view t.

    ``scores[t]`` are ``[B, K]`` scores of view t (all crops, large first); ``codes[s]`` the Sinkhorn
    codes of the large crops s = 0, 1 (no gradient). With ``p_t = softmax(scores[t]/τ)``::

        L = 1/|S| Σ_s 1/(V−1) Σ_{t≠s} mean_b  −Σ_k q_s[b, k] log p_t[b, k]
    """
    if len(codes) < 1 or len(scores) <= len(codes) - 1 or len(scores) < 2:
        raise ValueError(f"need at least 2 views and codes for the large ones, got {len(scores)} "
                         f"score tensors and {len(codes)} codes")
    total = scores[0].new_zeros(())
    for s, q in enumerate(codes):
        sub = scores[0].new_zeros(())
        for t, x in enumerate(scores):
            if t == s:
                continue
            sub = sub - (q.detach() * F.log_softmax(x / temperature, dim=1)).sum(dim=1).mean()
        total = total + sub / (len(scores) - 1)
    return total / len(codes)


@torch.no_grad()
def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)
                  ) -> dict[int, float]:
    """Fraction of rows whose target is among the k largest logits, for each k (k capped at width)."""
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hit = top == targets[:, None]
    return {k: hit[:, :min(k, maxk)].any(dim=1).float().mean().item() for k in ks}
