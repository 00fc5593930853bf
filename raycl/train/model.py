"""Building a run's model and stepping it: the pieces the worker loop, tests and benches share."""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, ContextManager
from dataclasses import dataclass

import torch
from torch import nn

from raycl import distributed
from raycl.config import Config
from raycl.methods import build_method
from raycl.methods.base import Method, Progress, schedule_position
from raycl.optim import warmup_cosine

# Workers report progress through this logger, not print: Ray Train V2 turns a worker's print into
# a log record *and* echoes it to the wrapped stdout, so every printed line showed twice.
log = logging.getLogger("raycl.train")


@dataclass(frozen=True)
class Schedule:
    """Step counts of a run, derived from the data size and the batch size, and where each step falls
    on the learning-rate and momentum schedules.

    A run resumed with the epochs it was planned with continues its schedules exactly. Resumed with
    more (or fewer) epochs, the schedules go on from where they were, without a jump, and their
    remaining part is stretched (or compressed) over the new remaining steps: warm-up is not redone,
    and the learning rate reaches its end value at the new last step. A finished run resumed for more
    epochs therefore trains them at its final learning rate (a fresh schedule is a new run)."""

    steps_per_epoch: int
    total_steps: int  # optimizer steps of the run
    warmup_steps: int
    planned_steps: int = 0  # length of the schedules (the run's first plan); 0: total_steps
    anchors: tuple = ()  # ((run step, schedule step), ...); (): the identity

    @classmethod
    def for_run(cls, cfg: Config, num_train: int, resumed: dict | None = None) -> "Schedule":
        """The run's schedule; ``resumed``: the checkpoint's :meth:`state` with its ``step`` (and the
        ``epochs`` it was planned with, for checkpoints written before schedules were stored)."""
        per_worker = num_train // cfg.train.workers  # streaming_split(equal=True)
        steps = per_worker // cfg.local_batch_size  # drop_last=True
        if steps < 1:
            raise ValueError(f"train.batch_size = {cfg.train.batch_size} leaves no full step for "
                             f"{num_train} training images")
        total = steps * cfg.train.epochs
        fresh = cls(steps, total, round(cfg.optim.warmup_epochs * steps))
        if not resumed:
            return fresh
        planned = int(resumed.get("planned_steps") or steps * resumed["epochs"])
        at = int(resumed["step"])
        anchors = tuple(tuple(a) for a in resumed.get("anchors") or ((0, 0), (planned, planned)))
        if anchors[-1][0] != total:  # a new length: keep the past, run the rest over the steps left
            kept = tuple(a for a in anchors if a[0] < at)
            anchors = (*kept, (at, schedule_position(at, anchors)), (max(total, at + 1), planned))
        return cls(steps, total, int(resumed.get("warmup_steps", fresh.warmup_steps)), planned, anchors)

    @property
    def length(self) -> int:
        """Length of the schedules, in schedule steps."""
        return self.planned_steps or self.total_steps

    def position(self, step: float) -> float:
        return schedule_position(step, self.anchors)

    def lr(self, cfg: Config, step: int) -> float:
        return warmup_cosine(self.position(step), self.length, self.warmup_steps, cfg.effective_lr(),
                             cfg.optim.schedule, cfg.optim.min_lr_ratio)

    def progress(self, step: int, epoch: int) -> Progress:
        return Progress(step, epoch, self.steps_per_epoch, self.length, self.anchors)

    def state(self) -> dict:
        """Plain data for the checkpoint, so that a resumed run knows its schedules."""
        return {"planned_steps": self.length, "warmup_steps": self.warmup_steps,
                "anchors": [list(a) for a in self.anchors]}


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


class DivergedError(FloatingPointError):
    """The loss stopped being a finite number: retrying from a checkpoint would diverge again."""


def check_finite(loss: torch.Tensor, method: str, step: int, epoch: int) -> None:
    """Raise :class:`DivergedError` naming the step, epoch and method when ``loss`` is not finite
    (one host sync per step: negligible on CPU, a small stall on a GPU)."""
    if not bool(torch.isfinite(loss).item()):
        raise DivergedError(f"{method} diverged: the loss is {loss.item()} at step {step + 1} (epoch "
                            f"{epoch + 1}); lower optim.lr, raise optim.warmup_epochs or check the data")


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, views: list[torch.Tensor],
               method: Method | None = None, progress: Progress | None = None,
               autocast: Callable[[], ContextManager] | None = None) -> dict[str, torch.Tensor]:
    """One optimisation step on this worker's views, with the method's hooks around it; returns the
    detached step outputs. ``model`` may be the data-parallel wrapper of ``method``; ``autocast``
    makes the forward pass's precision context (:func:`raycl.train.accel.autocast`)."""
    if method is not None:
        method.before_step(progress)
    with autocast() if autocast is not None else contextlib.nullcontext():
        out = model(views)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    if method is not None:
        method.before_optimizer_step(progress)
    optimizer.step()
    if method is not None:
        method.after_step(progress)
    return {k: v.detach() for k, v in out.items()}
