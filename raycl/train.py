"""The per-worker training loop run by Ray Train's ``TorchTrainer``.

One epoch: stream this worker's shard of augmented views, step the method, then (every
``eval.knn_every`` epochs) the kNN monitor over all workers' features, then one ``ray.train.report``
with the epoch's metrics and, every ``train.checkpoint_every`` epochs, a checkpoint that also holds
the whole metric history, so nothing is lost when a run stops early.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterable

import ray.train
import ray.train.torch
import torch
from torch import nn

from raycl import distributed
from raycl.config import Config
from raycl.knn import knn_accuracy
from raycl.methods import Method, Progress, build_method
from raycl.optim import build_optimizer, set_lr, warmup_cosine
from raycl.runtime import keep_freed_memory

STATE_FILE = "state.pt"
# Workers report progress through this logger, not print: Ray Train V2 turns a worker's print into
# a log record *and* echoes it to the wrapped stdout, so every printed line showed twice.
log = logging.getLogger(__name__)


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


@torch.no_grad()
def extract_features(method: Method, batches: Iterable[dict[str, torch.Tensor]]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features and labels of this worker's shard, gathered from every worker."""
    feats, labels = [], []
    for batch in batches:
        feats.append(method.features(batch["image"]))
        labels.append(batch["label"])
    return (distributed.gather_nograd(torch.cat(feats)),
            distributed.gather_nograd(torch.cat(labels)))


def knn_monitor(method: Method, cfg: Config, num_classes: int, device) -> dict[str, float]:
    """Weighted kNN accuracy of the validation split against the training bank."""
    was_training = method.training
    method.eval()
    bs = cfg.augment.batch_size
    bank, bank_y = extract_features(method, ray.train.get_dataset_shard("knn_bank")
                                    .iter_torch_batches(batch_size=bs, device=device))
    val, val_y = extract_features(method, ray.train.get_dataset_shard("knn_val")
                                  .iter_torch_batches(batch_size=bs, device=device))
    method.train(was_training)
    return knn_accuracy(val, val_y, bank, bank_y, num_classes, cfg.eval.knn_k,
                        cfg.eval.knn_temperature)


def save_state(directory: str, method: Method, optimizer, epoch: int, step: int,
               history: list[dict], cfg: Config) -> None:
    torch.save({"model": method.state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "step": step, "history": history, "config": cfg.to_dict()},
               os.path.join(directory, STATE_FILE))


def load_state(checkpoint: ray.train.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as d:
        return torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=False)


def _report(metrics: dict, save: bool, method: Method, optimizer, epoch: int, step: int,
            history: list[dict], cfg: Config) -> None:
    """Every rank reports (it is a barrier); rank 0 attaches the checkpoint."""
    if save and distributed.rank() == 0:
        with tempfile.TemporaryDirectory() as d:
            save_state(d, method, optimizer, epoch, step, history, cfg)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)


def train_loop(loop_config: dict) -> None:
    """``train_loop_per_worker`` for ``TorchTrainer``: see the module docstring."""
    cfg = Config.from_dict(loop_config["config"])
    clock, num_train, num_classes = (loop_config["clock"], loop_config["num_train"],
                                     loop_config["num_classes"])
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    keep_freed_memory()
    device = ray.train.torch.get_device()
    rank, world = distributed.rank(), distributed.world_size()

    method = build_model(cfg).to(device)
    optimizer = build_optimizer(method, cfg)
    schedule = Schedule.for_run(cfg, num_train)
    start_epoch, step, history = 0, 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        state = load_state(checkpoint)
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
    model = ray.train.torch.prepare_model(method, parallel_strategy_kwargs={"broadcast_buffers": False})
    evaluate_knn = "knn_val" in loop_config["datasets"]

    if start_epoch == 0 and evaluate_knn and cfg.eval.knn_at_init:
        row = {"epoch": 0, **knn_monitor(method, cfg, num_classes, device)}
        history.append(row)
        ray.train.report(row)

    shard = ray.train.get_dataset_shard("train")
    for epoch in range(start_epoch, cfg.train.epochs):
        if rank == 0 and clock is not None:
            ray.get(clock.set.remote(epoch))
        distributed.barrier()
        model.train()
        sums: dict[str, torch.Tensor] = {}
        n_steps, wait, t0 = 0, 0.0, time.perf_counter()
        batches = iter(shard.iter_torch_batches(
            batch_size=cfg.local_batch_size, drop_last=True, device=device,
            local_shuffle_buffer_size=4 * cfg.local_batch_size,
            local_shuffle_seed=cfg.train.seed * 100_003 + epoch * world + rank))
        while True:
            t_wait = time.perf_counter()
            batch = next(batches, None)
            wait += time.perf_counter() - t_wait
            if batch is None:
                break
            set_lr(optimizer, schedule.lr(cfg, step), cfg.effective_lr())
            views = [batch[f"view{i}"] for i in range(method.num_views)]
            progress = Progress(step, epoch, schedule.steps_per_epoch, schedule.total_steps)
            out = train_step(model, optimizer, views, method, progress)
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v.float()
            step += 1
            n_steps += 1
        elapsed = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch + 1, "step": step,
                               "lr": optimizer.param_groups[0]["lr"]}
        for k, v in sums.items():
            row[k] = distributed.mean_over_ranks(v / max(1, n_steps)).item()
        row["images_per_s"] = n_steps * cfg.train.batch_size / elapsed
        row["epoch_time_s"] = elapsed
        row["data_wait_frac"] = distributed.mean_over_ranks(torch.tensor(wait / elapsed)).item()
        if not math.isfinite(row.get("loss", 0.0)):
            raise FloatingPointError(f"loss is {row['loss']} at epoch {epoch + 1}; "
                                     "lower optim.lr or check the data")
        if evaluate_knn and ((epoch + 1) % cfg.eval.knn_every == 0 or epoch + 1 == cfg.train.epochs):
            row.update(knn_monitor(method, cfg, num_classes, device))
        history.append(row)
        if rank == 0:
            log.info(_progress_line(row, cfg.train.epochs))
        save = (epoch + 1) % cfg.train.checkpoint_every == 0 or epoch + 1 == cfg.train.epochs
        _report(row, save, method, optimizer, epoch + 1, step, history, cfg)


def _progress_line(row: dict, epochs: int) -> str:
    parts = [f"[raycl] epoch {row['epoch']}/{epochs}", f"loss {row['loss']:.4f}",
             f"lr {row['lr']:.4g}", f"{row['images_per_s']:.0f} img/s",
             f"data wait {100 * row['data_wait_frac']:.0f}%"]
    if "pretext_top1" in row:
        parts.append(f"pretext top-1 {row['pretext_top1']:.3f}")
    if "pretext_cos" in row:
        parts.append(f"pred/target cos {row['pretext_cos']:.3f}")
    if "knn_top1" in row:
        parts.append(f"kNN top-1 {row['knn_top1']:.3f}")
    return " | ".join(parts)
