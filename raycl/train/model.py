"""Building a run's model and stepping it: the pieces the worker loop, tests and benches share."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from raycl import distributed
from raycl.config import Config
from raycl.methods import build_method
from raycl.methods.base import Method, Progress
from raycl.optim import warmup_cosine

# Workers report progress through this logger, not print: Ray Train V2 turns a worker's print into
# a log record *and* echoes it to the wrapped stdout, so every printed line showed twice.
log = logging.getLogger("raycl.train")


@dataclass
class Schedule:
    """Step counts of a run, derived from the data size and the batch size."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @classmethod
    def for_run(cls, cfg: Config, num_train: int) -> "Schedule":
        per_worker = num_train // cfg.train.workers  # streaming_split(equal=True)
        steps = per_worker // cfg.local_batch_size  # drop_last=True
        if steps < 1:
            raise ValueError(f"train.batch_size = {cfg.train.batch_size} leaves no full step for "
                             f"{num_train} training images")
        total = steps * cfg.train.epochs
        return cls(steps, total, round(cfg.optim.warmup_epochs * steps))

    def lr(self, cfg: Config, step: int) -> float:
        return warmup_cosine(step, self.total_steps, self.warmup_steps, cfg.effective_lr(),
                             cfg.optim.schedule, cfg.optim.min_lr_ratio)


def build_model(cfg: Config, global_bn: bool | None = None) -> Method:
    """The method, seeded identically on every rank, with global BN when ``global_bn`` (default:
    ``model.sync_bn``). One-process users (the evaluation protocols) pass ``False``: BN is local
    there anyway, and the state dict is the same either way."""
    torch.manual_seed(cfg.train.seed)
    method = build_method(cfg)
    if cfg.model.sync_bn if global_bn is None else global_bn:
        _note_global_bn(cfg.train.use_gpu)
        method.use_global_bn(cfg.train.use_gpu)
    return method


_GLOBAL_BN_NOTED = False


def _note_global_bn(use_gpu: bool) -> None:
    global _GLOBAL_BN_NOTED
    if not use_gpu and not _GLOBAL_BN_NOTED and distributed.rank() == 0:
        _GLOBAL_BN_NOTED = True
        log.info("[raycl] global BN on CPU: torch's SyncBatchNorm runs only on GPUs, so raycl uses "
                 "its own GlobalBatchNorm (statistics all-reduced over workers through gloo)")


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, views: list[torch.Tensor],
               method: Method | None = None, progress: Progress | None = None
               ) -> dict[str, torch.Tensor]:
    """One optimisation step on this worker's views, with the method's hooks around it; returns the
    detached step outputs. ``model`` may be the data-parallel wrapper of ``method``."""
    if method is not None:
        method.before_step(progress)
    out = model(views)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if method is not None:
        method.before_optimizer_step(progress)
    optimizer.step()
    if method is not None:
        method.after_step(progress)
    return {k: v.detach() for k, v in out.items()}
