"""Pieces shared by the methods with a momentum network: EMA updates, their schedule, key queues.

MoCo's key encoder and BYOL's target network are exponential moving averages of the online network;
MoCo (and SimCLRv2's memory) keep a FIFO queue of past keys. Every worker applies the same update to
the same weights with keys gathered from all workers, so these stay identical on every worker.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from raycl import distributed


def momentum_at(step: int, total_steps: int, base: float, schedule: str = "constant") -> float:
    """EMA coefficient at ``step`` (0-based) of ``total_steps``.

    ``"constant"``: ``base`` (MoCo's m). ``"cosine"``: BYOL's
    ``τ = 1 − (1 − τ_base)·(cos(π k / K) + 1) / 2``, from τ_base at k = 0 to 1 at k = K.
    """
    if schedule == "constant":
        return base
    if schedule == "cosine":
        t = min(1.0, step / max(1, total_steps))
        return 1.0 - (1.0 - base) * (math.cos(math.pi * t) + 1.0) / 2.0
    raise ValueError(f"momentum schedule {schedule!r} is not allowed: one of constant, cosine")


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` to serve as its EMA (no gradients)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """θ_target ← m·θ_target + (1 − m)·θ_online, parameter by parameter (buffers are left alone)."""
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError("target and online networks have different parameters")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, [p.detach() for p in o_params], alpha=1.0 - momentum)


class KeyQueue(nn.Module):
    """A FIFO queue of K keys ``[K, D]`` held as buffers (so checkpoints carry it).

    ``push`` takes the keys of the *global* batch (gathered from all workers, in rank order) and
    overwrites the oldest entries; every worker pushes the same keys, so every worker holds the same
    queue in the same order. Starts as random unit vectors, as in MoCo.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        if size < 1:
            raise ValueError(f"queue size = {size!r} must be >= 1")
        self.register_buffer("keys", nn.functional.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        n = keys.shape[0]
        if self.size % n:
            raise ValueError(f"queue size {self.size} is not a multiple of the global batch {n}")
        p = int(self.ptr)
        self.keys[p:p + n] = keys.to(self.keys.dtype)
        self.ptr.fill_((p + n) % self.size)


@torch.no_grad()
def shuffled_forward(encoder: nn.Module, x: torch.Tensor, groups: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys of this worker's images ``x`` computed with shuffled BN (MoCo §3.3).

    The images of all workers are gathered, permuted with a permutation every worker draws alike
    from ``generator``, and cut into ``groups`` BN groups; each worker encodes its ``groups/world``
    groups (BN statistics per group), the keys are gathered and the permutation is undone. A key's
    BN statistics therefore come from a group unrelated to its query's sub-batch, so the pretext task
    cannot be solved from BN statistics. With one worker, the groups play the workers' part (the
    MoCo authors' single-GPU workaround). Returns ``(local_keys, global_keys)``: this worker's keys
    in its own order, and all workers' keys in rank order (to push to a :class:`KeyQueue`).
    """
    world, rank = distributed.world_size(), distributed.rank()
    if groups % world:
        raise ValueError(f"key BN groups = {groups} must be a multiple of the {world} workers")
    everything = distributed.gather_nograd(x)
    n = everything.shape[0]
    if n % groups or n // groups < 2:
        raise ValueError(f"global batch {n} does not split into {groups} BN groups of >= 2 images")
    perm = torch.randperm(n, generator=generator).to(x.device)
    per_group, mine = n // groups, groups // world
    shuffled = everything[perm]
    start = rank * mine * per_group
    keys = torch.cat([encoder(shuffled[start + g * per_group:start + (g + 1) * per_group])
                      for g in range(mine)])
    gathered = distributed.gather_nograd(keys)  # keys of the shuffled global batch
    all_keys = torch.empty_like(gathered)
    all_keys[perm] = gathered  # un-shuffle
    b = x.shape[0]
    return all_keys[rank * b:(rank + 1) * b], all_keys
