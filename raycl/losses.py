"""Loss functions, written as small pure functions over tensors.

Losses that need the global batch take the local tensors and gather what they need through
:mod:`raycl.distributed`; with one process that is the identity.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from raycl import distributed


class ContrastiveOutput(NamedTuple):
    loss: torch.Tensor  # mean over this rank's anchors
    logits: torch.Tensor  # [anchors, candidates], self-similarity masked with -inf
    targets: torch.Tensor  # index of each anchor's positive among the candidates


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> ContrastiveOutput:
    """NT-Xent (SimCLR, Chen et al. 2020, eq. 1) over the global batch of 2N views.

    ``z1[i]`` and ``z2[i]`` are the projections of two views of local image i. With cosine similarity
    ``sim(u, v) = uᵀv / (‖u‖‖v‖)``, each anchor ``i`` with positive ``j`` contributes::

        ℓ(i, j) = −log  exp(sim(z_i, z_j)/τ) / Σ_{k ≠ i} exp(sim(z_i, z_k)/τ)

    where k runs over all 2N views of the *global* batch (gathered from every worker, with gradients).
    The loss is the mean of ℓ over this rank's 2B anchors (both orders of every positive pair); the mean
    over ranks is the paper's loss over the global batch, so N workers equal one worker with batch N·B.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must be [batch, dim] of the same shape, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature = {temperature!r} must be > 0")
    b = z1.shape[0]
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
    return ContrastiveOutput(F.cross_entropy(logits, targets), logits, targets)


@torch.no_grad()
def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)
                  ) -> dict[int, float]:
    """Fraction of rows whose target is among the k largest logits, for each k (k capped at width)."""
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hit = top == targets[:, None]
    return {k: hit[:, :min(k, maxk)].any(dim=1).float().mean().item() for k in ks}
