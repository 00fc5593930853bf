"""Collectives that carry gradients, and that also work with one process.

Every function here degrades to the identity when ``torch.distributed`` is not initialised (one worker,
``ScalingConfig(num_workers=0)``, unit tests), so the losses and models above them never branch on the
world size.

Gradient convention. Each rank computes a loss on its *local* anchors against *global* candidates, and
the data-parallel wrapper averages parameter gradients over ranks. The backward of :func:`gather` and
:func:`all_reduce_sum` therefore *sums* the incoming gradients over ranks (every rank's loss may depend
on every rank's tensors), which makes ``mean_r grad(L_r)`` equal to the gradient of the global loss
``mean_r L_r``: N workers with batch B give the same gradients as one worker with batch N·B.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


class _Gather(torch.autograd.Function):
    """All-gather along dim 0; backward sums the gradient over ranks and keeps the local slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; backward is again a sum over ranks (each rank's loss sees the total)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order (same shape on every rank), with gradients."""
    return _Gather.apply(x) if is_distributed() else x


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum ``x`` over ranks, with gradients."""
    return _AllReduceSum.apply(x) if is_distributed() else x


@torch.no_grad()
def gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order, without autograd (features, labels, keys)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def gather_uneven(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank in rank order when ranks hold different numbers of rows
    (padded to the longest for the all-gather, then trimmed), without autograd."""
    if not is_distributed():
        return x
    sizes = gather_nograd(torch.tensor([x.shape[0]], device=x.device)).tolist()
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[:x.shape[0]] = x
    parts = gather_nograd(padded).split(max(sizes))
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


@torch.no_grad()
def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over ranks, without autograd."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


@torch.no_grad()
def broadcast(x: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s ``x`` on every rank, without autograd."""
    if not is_distributed():
        return x
    x = x.detach().clone().contiguous()
    dist.broadcast(x, src=src)
    return x


@torch.no_grad()
def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Average a (detached) tensor over ranks, e.g. a loss for logging."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / dist.get_world_size()


def barrier() -> None:
    if is_distributed():
        dist.barrier()
