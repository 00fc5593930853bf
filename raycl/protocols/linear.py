"""The linear probe: multinomial logistic regression on frozen, standardised features, fitted with
full-batch L-BFGS, its weight decay chosen on the validation split."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from raycl.losses import topk_accuracy


def topk_scores(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``{"top1", "top5"}`` accuracy of ``logits`` against labels ``y``."""
    acc = topk_accuracy(logits, y.long(), (1, 5))
    return {"top1": acc[1], "top5": acc[5]}


@dataclass
class LinearModel:
    """A fitted linear classifier on standardised features."""

    mean: torch.Tensor
    std: torch.Tensor
    linear: nn.Linear
    weight_decay: float

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x.float() - self.mean) / self.std)


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float = 0.0,
               steps: int = 200) -> LinearModel:
    """Multinomial logistic regression on standardised ``x`` (full-batch L-BFGS, strong Wolfe).

    Minimises ``mean CE + weight_decay / 2 · ‖W‖²``; standardisation uses the training statistics.
    """
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    xs = (x - mean) / std
    y = y.long()
    # zero start (the problem is convex): no random initialisation, the global RNG is untouched
    linear = nn.utils.skip_init(nn.Linear, x.shape[1], num_classes)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(xs), y) + 0.5 * weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), _threads(1 if xs.numel() < 4_000_000 else None):
        opt.step(closure)
    return LinearModel(mean, std, linear, float(weight_decay))


@contextlib.contextmanager
def _threads(n: int | None):
    """Run with ``n`` torch threads (None: unchanged). Small L-BFGS problems are many tiny ops, where
    extra threads only add synchronisation."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def linear_probe(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                 num_classes: int, weight_decays: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1),
                 steps: int = 200, test: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> dict[str, Any]:
    """Fit one classifier per weight decay, keep the best on ``val`` (top-1, ties: larger decay),
    then score ``test`` once with it. Returns ``{"val": {top1, top5}, "test": ..., "weight_decay",
    "val_top1_by_weight_decay"}``."""
    best, best_key, scores = None, None, {}
    for wd in weight_decays:
        model = fit_linear(*train, num_classes, wd, steps)
        acc = topk_scores(model.logits(val[0]), val[1])
        scores[float(wd)] = acc["top1"]
        key = (acc["top1"], acc["top5"], wd)
        if best_key is None or key > best_key:
            best, best_key, best_val = model, key, acc
    out = {"val": best_val, "weight_decay": best.weight_decay, "val_top1_by_weight_decay": scores,
           "model": best}
    if test is not None:
        out["test"] = topk_scores(best.logits(test[0]), test[1])
    return out
