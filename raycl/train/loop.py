"""The per-worker training loop run by Ray Train's ``TorchTrainer``.

Each epoch streams this worker's shard of augmented views and steps the method (:func:`run_epoch`),
then (every ``eval.knn_every`` epochs) runs the kNN monitor over all workers' features, then makes
one ``ray.train.report`` with the epoch's metrics and, every ``train.checkpoint_every`` epochs, a
checkpoint that also holds the whole metric history, so nothing is lost when a run stops early.
With ``train.checkpoint_every_steps``, rank 0 also keeps the latest position mid-epoch, from which a
restarted worker group goes on (skipping the batches of that epoch already trained on).
"""

from __future__ import annotations

import functools
import tempfile
import time
import warnings
from typing import Any, Callable, Iterable

import ray
import ray.train
import ray.train.torch
import torch
from torch import nn

from raycl import distributed
from raycl.train import accel
from raycl.config import Config
from raycl.data.pipeline import EvalSet
from raycl.knn import knn_accuracy
from raycl.methods.base import Method
from raycl.optim import build_optimizer, set_lr
from raycl.runtime import keep_freed_memory
from raycl.seeding import derive_seed
from raycl.train.init_from import init_from
from raycl.train.model import Schedule, build_model, check_finite, train_step
from raycl.train.state import latest_state, save_state, save_step_state


def train_loop(loop_config: dict) -> None:
    """``train_loop_per_worker`` for ``TorchTrainer``: see the module docstring."""
    cfg = Config.from_dict(loop_config["config"])
    torch.set_num_threads(max(1, int(cfg.train.cpus_per_worker)))
    keep_freed_memory()
    device = ray.train.torch.get_device()

    method = accel.prepare_method(build_model(cfg).to(device), cfg)
    optimizer = build_optimizer(method, cfg)
    start_epoch, step, skip, history, restarts, resumed = 0, 0, 0, [], [], None
    run_dir = f"{cfg.storage_path.rstrip('/')}/{cfg.name}"
    every_steps = cfg.train.checkpoint_every_steps
    state = latest_state(ray.train.get_checkpoint(), run_dir if every_steps else None)
    if state is not None:  # resuming: same run name, or a restarted worker group
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        skip = state.get("epoch_step", 0)  # saved mid-epoch: batches of this epoch already trained on
        restarts = state.get("restarts", [])
        resumed = {"step": step, "epochs": state["config"]["train"]["epochs"], **state.get("schedule", {})}
    elif cfg.model.init_from:  # a fresh run from given weights (checked, and said, by the driver)
        init_from(method, cfg.model.init_from, cfg.model.backbone)
    if distributed.rank() == 0 and loop_config.get("failures") is not None:  # a restart: say why
        now = time.time()
        restarts += [{**failure, "resumed_at": now, "resumed_from_epoch": start_epoch,
                      "resumed_from_step": step, "lost_s": now - failure["failed_at"]}
                     for failure in ray.get(loop_config["failures"].take.remote())]
    schedule = Schedule.for_run(cfg, loop_config["num_train"], resumed)
    with warnings.catch_warnings():
        # Ray 2.60 deprecates broadcast_buffers, but its replacement still syncs buffers at init,
        # and per-worker BN statistics (MoCo's queries) must stay each worker's own
        warnings.filterwarnings("ignore", ".*broadcast_buffers.* is deprecated", FutureWarning)
        model = ray.train.torch.prepare_model(method, parallel_strategy_kwargs={"broadcast_buffers": False})
    model = accel.compiled(model, cfg)
    knn = bool(loop_config["knn_sets"])

    def monitor() -> dict[str, float]:
        return knn_monitor(method, cfg, loop_config["num_classes"], loop_config["knn_sets"], device)

    if start_epoch == 0 and knn and cfg.eval.knn_at_init:
        row = {"epoch": 0, **monitor()}
        history.append(row)
        ray.train.report(row)

    def save_step(epoch: int, step: int, epoch_step: int) -> None:
        """Every ``every_steps`` steps but an epoch's last (its checkpoint, or the next one, follows)."""
        if step % every_steps == 0 and epoch_step < schedule.steps_per_epoch and distributed.rank() == 0:
            save_step_state(run_dir, method, optimizer, epoch, step, history, cfg, schedule.state(),
                            restarts, epoch_step=epoch_step)

    shard = ray.train.get_dataset_shard("train")
    for epoch in range(start_epoch, cfg.train.epochs):
        if distributed.rank() == 0 and loop_config["clock"] is not None:
            ray.get(loop_config["clock"].set.remote(epoch))  # augmentation seeds views by epoch
        distributed.barrier()
        row = run_epoch(model, method, optimizer, shard, cfg, schedule, epoch, step, skip,
                        save_step if every_steps else None)
        skip = 0
        if loop_config["clock"] is not None:  # undecodable images skipped so far
            row["bad_images"] = ray.get(loop_config["clock"].bad_images.remote())[0]
        step = row["step"]
        last = epoch + 1 == cfg.train.epochs
        if knn and ((epoch + 1) % cfg.eval.knn_every == 0 or last):
            row.update(monitor())
        row["restarts"] = len(restarts)
        history.append(row)
        save = (epoch + 1) % cfg.train.checkpoint_every == 0 or last
        report(row, save, method, optimizer, epoch + 1, step, history, cfg, schedule, restarts)


def run_epoch(model: nn.Module, method: Method, optimizer: torch.optim.Optimizer, shard,
              cfg: Config, schedule: Schedule, epoch: int, step: int, skip: int = 0,
              on_step: Callable[[int, int, int], None] | None = None) -> dict[str, Any]:
    """One pass over this worker's shard; returns the epoch's row (metrics averaged over steps and
    workers, ``step`` = optimizer steps taken so far in the run). ``skip``: batches drawn and not
    trained on (the epoch was resumed mid-way); ``on_step(epoch, step, steps taken in the epoch)``
    after every step."""
    model.train()
    device = ray.train.torch.get_device()
    autocast = functools.partial(accel.autocast, cfg, device)
    batches = iter(shard.iter_torch_batches(
        batch_size=cfg.local_batch_size, drop_last=True, device=device,
        pin_memory=accel.pin_memory(cfg),
        local_shuffle_buffer_size=4 * cfg.local_batch_size,
        local_shuffle_seed=derive_seed(cfg.train.seed, "local_shuffle", epoch, distributed.rank())))
    for _ in range(skip):  # the same views as before the restart, as far as the stream's order allows
        if next(batches, None) is None:
            break
    sums: dict[str, torch.Tensor] = {}
    n_steps, wait, t0 = 0, 0.0, time.perf_counter()
    while True:
        t_wait = time.perf_counter()
        batch = next(batches, None)
        wait += time.perf_counter() - t_wait
        if batch is None:
            break
        set_lr(optimizer, schedule.lr(cfg, step), cfg.effective_lr())
        views = accel.views_to([batch[f"view{i}"] for i in range(method.num_views)], cfg)
        progress = schedule.progress(step, epoch)
        out = train_step(model, optimizer, views, method, progress, autocast)
        check_finite(out["loss"], cfg.method.name, step, epoch)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + v.float()
        step += 1
        n_steps += 1
        if on_step is not None:
            on_step(epoch, step, skip + n_steps)
    elapsed = time.perf_counter() - t0
    row: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"]}
    for k, v in sums.items():
        row[k] = distributed.mean_over_ranks(v / max(1, n_steps)).item()
    row["images_per_s"] = n_steps * cfg.train.batch_size / elapsed
    row["epoch_time_s"] = elapsed
    row["data_wait_frac"] = distributed.mean_over_ranks(torch.tensor(wait / elapsed)).item()
    return row


@torch.no_grad()
def extract_features(method: Method, batches: Iterable[dict[str, torch.Tensor]], device
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features and labels of this worker's share, gathered from every worker."""
    feats, labels = [], []
    for batch in batches:
        feats.append(method.features(batch["image"].to(device)))
        labels.append(batch["label"].to(device))
    return (distributed.gather_uneven(torch.cat(feats)),
            distributed.gather_uneven(torch.cat(labels)))


def knn_batches(name: str, eval_set: EvalSet | None, batch_size: int, device):
    """This worker's share of a kNN set: from the object store, or its Ray dataset's shard."""
    if eval_set is not None:
        return eval_set.batches(distributed.rank(), distributed.world_size(), batch_size)
    return ray.train.get_dataset_shard(name).iter_torch_batches(batch_size=batch_size, device=device)


def knn_monitor(method: Method, cfg: Config, num_classes: int, knn_sets: dict[str, EvalSet | None],
                device) -> dict[str, float]:
    """Weighted kNN accuracy of the validation split against the training bank."""
    was_training = method.training
    method.eval()
    bs = cfg.augment.batch_size
    bank, bank_y = extract_features(method, knn_batches("knn_bank", knn_sets["knn_bank"], bs, device),
                                    device)
    val, val_y = extract_features(method, knn_batches("knn_val", knn_sets["knn_val"], bs, device),
                                  device)
    method.train(was_training)
    return knn_accuracy(val, val_y, bank, bank_y, num_classes, cfg.eval.knn_k,
                        cfg.eval.knn_temperature)


def report(metrics: dict, save: bool, method: Method, optimizer, epoch: int, step: int,
           history: list[dict], cfg: Config, schedule: Schedule | None = None,
           restarts: list[dict] | None = None) -> None:
    """Every rank reports (it is a barrier); rank 0 attaches the checkpoint."""
    if save and distributed.rank() == 0:
        with tempfile.TemporaryDirectory() as d:
            save_state(d, method, optimizer, epoch, step, history, cfg,
                       schedule.state() if schedule else None, restarts)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(metrics)
