"""Evaluation of representations: the weighted kNN monitor.

kNN follows the InstDisc / MoCo / lightly protocol: L2-normalised backbone features, the k most
cosine-similar training images vote for their class with weight ``exp(sim / T)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_class_scores(query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor,
                     num_classes: int, k: int = 200, temperature: float = 0.1,
                     chunk_size: int = 1024) -> torch.Tensor:
    """Per-class vote ``[Q, num_classes]`` of each query's k nearest bank features.

    ``score[q, c] = Σ_{i ∈ topk(q), y_i = c} exp(cos(q, b_i) / T)``. Queries are processed in chunks so
    memory stays ``chunk_size × N``.
    """
    if query.shape[1] != bank.shape[1]:
        raise ValueError(f"query dim {query.shape[1]} != bank dim {bank.shape[1]}")
    if bank.shape[0] == 0:
        raise ValueError("the kNN bank is empty")
    k = min(k, bank.shape[0])
    bank = F.normalize(bank.float(), dim=1)
    labels = bank_labels.long().to(bank.device)
    out = []
    for q in F.normalize(query.float(), dim=1).split(chunk_size):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        scores = torch.zeros(q.shape[0], num_classes, device=q.device)
        scores.scatter_add_(1, labels[idx], weights)
        out.append(scores)
    return torch.cat(out)


@torch.no_grad()
def knn_accuracy(query: torch.Tensor, query_labels: torch.Tensor, bank: torch.Tensor,
                 bank_labels: torch.Tensor, num_classes: int, k: int = 200,
                 temperature: float = 0.1) -> dict[str, float]:
    """Top-1 and top-5 accuracy of the weighted kNN classifier."""
    scores = knn_class_scores(query, bank, bank_labels, num_classes, k, temperature)
    top = scores.topk(min(5, num_classes), dim=1).indices
    hit = top == query_labels.long().to(top.device)[:, None]
    return {"knn_top1": hit[:, 0].float().mean().item(),
            "knn_top5": hit.any(dim=1).float().mean().item()}

