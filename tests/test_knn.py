"""Weighted kNN against a brute-force reference."""

import math

import pytest
import torch

from raycl.knn import knn_accuracy, knn_class_scores


def brute_force_votes(query, bank, labels, num_classes, k, t):
    """Each query's vote per class: exp(cos / t) summed over its k most similar bank rows."""
    out = []
    for q in query:
        sims = [float(q @ b / (q.norm() * b.norm())) for b in bank]
        order = sorted(range(len(bank)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * num_classes
        for i in order:
            votes[int(labels[i])] += math.exp(sims[i] / t)
        out.append(votes)
    return torch.tensor(out, dtype=torch.float64)


def brute_force_knn(query, bank, labels, num_classes, k, t):
    return brute_force_votes(query, bank, labels, num_classes, k, t).argmax(1)


@pytest.mark.parametrize("k,t", [(1, 0.1), (5, 0.07), (12, 0.5)])
def test_knn_matches_brute_force(k, t):
    g = torch.Generator().manual_seed(k)
    bank, query = torch.randn(40, 6, generator=g), torch.randn(15, 6, generator=g)
    labels = torch.randint(0, 4, (40,), generator=g)
    expected = brute_force_knn(query, bank, labels, 4, k, t)
    got = knn_class_scores(query, bank, labels, 4, k, t, chunk_size=4).argmax(1)
    assert torch.equal(got, expected)
    acc = knn_accuracy(query, expected, bank, labels, 4, k, t)
    assert acc["knn_top1"] == 1.0 and acc["knn_top5"] == 1.0


def test_knn_top5_counts_a_label_among_the_five_highest_votes():
    """With 10 classes a label outside the five best-voted classes is a top-5 miss (with 4 classes,
    as above, top-5 is always 1)."""
    g = torch.Generator().manual_seed(3)
    bank, query = torch.randn(60, 8, generator=g), torch.randn(40, 8, generator=g)
    labels = torch.arange(60) % 10
    truth = torch.randint(0, 10, (40,), generator=g)
    votes = brute_force_votes(query, bank, labels, 10, 60, 0.5)  # every row votes: no ties
    top5 = votes.topk(5, dim=1).indices
    expected1 = (votes.argmax(1) == truth).double().mean().item()
    expected5 = (top5 == truth[:, None]).any(1).double().mean().item()
    acc = knn_accuracy(query, truth, bank, labels, 10, k=60, temperature=0.5)
    assert 0 < expected5 < 1 and expected1 < expected5
    assert acc["knn_top1"] == pytest.approx(expected1) and acc["knn_top5"] == pytest.approx(expected5)


def test_knn_separable_clusters_and_chance():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=g) * 5
    y = torch.arange(200) % 5
    x = centres[y] + torch.randn(200, 16, generator=g)
    acc = knn_accuracy(x[:50], y[:50], x[50:], y[50:], 5, k=10, temperature=0.1)
    assert acc["knn_top1"] > 0.95
    noise = knn_accuracy(torch.randn(400, 16, generator=g), torch.randint(0, 5, (400,), generator=g),
                         x, y, 5, k=10, temperature=0.1)
    assert noise["knn_top1"] < 0.35


def test_knn_rejects_mismatched_dims():
    with pytest.raises(ValueError, match="dim"):
        knn_class_scores(torch.randn(3, 4), torch.randn(5, 6), torch.zeros(5), 2)
