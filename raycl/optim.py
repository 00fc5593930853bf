"""Optimizers (SGD, AdamW, LARS) and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from raycl.config import Config


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak: float,
                  schedule: str = "cosine", min_ratio: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based).

    Linear warm-up ``peak · (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps, then
    ``schedule == "cosine"``: ``lo + (peak − lo) · ½ (1 + cos(π t))`` with t going from 0 to 1 over
    the remaining steps and ``lo = min_ratio · peak`` (SGDR without restarts, as SimCLR/MoCo v2/BYOL
    use), ``"step"``: ``peak`` × 0.1 after 60% and again after 80% of the steps (MoCo v1: epochs 120
    and 160 of 200), or ``"constant"``: ``peak``.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    if schedule == "step":
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return peak * 0.1 ** ((t >= 0.6) + (t >= 0.8))
    decay_steps = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / decay_steps)
    lo = min_ratio * peak
    return lo + (peak - lo) * 0.5 * (1.0 + math.cos(math.pi * t))


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017) as used by SimCLR and BYOL.

    For each parameter p with gradient g in an adapted group: ``g ← g + wd·p``, then
    ``g ← η·‖p‖/‖g‖ · g`` (trust ratio; 1 when either norm is 0), then SGD with momentum.
    Groups with ``lars_exclude=True`` (biases and norm parameters) get neither weight decay nor
    adaptation, as in the papers.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((p_norm > 0) & (g_norm > 0),
                                        group["trust_coefficient"] * p_norm / g_norm,
                                        torch.ones_like(p_norm))
                    g = g * trust
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = torch.clone(g).detach()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def _is_excluded(name: str, p: nn.Parameter) -> bool:
    """Biases and normalisation parameters (1-D tensors)."""
    return p.ndim <= 1 or name.endswith(".bias")


# name -> (param groups, lr, OptimConfig) -> optimizer; the names are raycl.config.OPTIMIZERS
# (tests/test_config.py checks they agree)
OPTIMIZER_FACTORIES = {
    "sgd": lambda groups, lr, o: torch.optim.SGD(groups, lr=lr, momentum=o.momentum,
                                                 weight_decay=o.weight_decay),
    "lars": lambda groups, lr, o: LARS(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay),
    "adamw": lambda groups, lr, o: torch.optim.AdamW(groups, lr=lr, weight_decay=o.weight_decay),
}


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optim.optimizer`` at the scaled peak learning rate.

    LARS leaves biases and BN parameters out of weight decay and adaptation; SGD and AdamW decay
    every parameter, as the MoCo and lightly references do. A method's predictor
    (``model.predictor_parameters()``, BYOL's q) gets its own groups, marked with
    ``lr_scale = optim.predictor_lr_scale`` and ``fixed_lr = optim.predictor_fixed_lr`` for
    :func:`set_lr`.
    """
    o = cfg.optim
    lr = cfg.effective_lr()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if o.optimizer == "lars":
        groups = [
            {"params": [p for n, p in params if not _is_excluded(n, p)]},
            {"params": [p for n, p in params if _is_excluded(n, p)], "lars_exclude": True,
             "weight_decay": 0.0},
        ]
    else:
        groups = [{"params": [p for _, p in params]}]
    groups = _split_predictor(groups, model, o.predictor_lr_scale, o.predictor_fixed_lr)
    if o.optimizer not in OPTIMIZER_FACTORIES:
        raise ValueError(f"optim.optimizer = {o.optimizer!r} is not allowed: one of "
                         + ", ".join(OPTIMIZER_FACTORIES))
    optimizer = OPTIMIZER_FACTORIES[o.optimizer](groups, lr, o)
    set_lr(optimizer, lr, lr)  # each group at its peak rate until the schedule sets it
    return optimizer


def _split_predictor(groups: list[dict], model: nn.Module, scale: float, fixed: bool) -> list[dict]:
    """Each group split in two: the predictor's parameters (marked) and the rest; empty ones dropped."""
    predictor_parameters = getattr(model, "predictor_parameters", None)
    predictor = {id(p) for p in predictor_parameters()} if predictor_parameters else set()
    out = []
    for group in groups:
        rest = {**group, "params": [p for p in group["params"] if id(p) not in predictor]}
        pred = {**group, "params": [p for p in group["params"] if id(p) in predictor],
                "lr_scale": scale, "fixed_lr": fixed}
        out += [g for g in (rest, pred) if g["params"]]
    return out


def set_lr(optimizer: torch.optim.Optimizer, lr: float, peak: float) -> None:
    """Set every group to ``lr``, times its ``lr_scale``; groups marked ``fixed_lr`` stay at ``peak``
    (times ``lr_scale``) whatever the schedule says."""
    for group in optimizer.param_groups:
        group["lr"] = (peak if group.get("fixed_lr") else lr) * group.get("lr_scale", 1.0)
