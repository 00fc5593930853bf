"""The public entry point: ``raycl.run(method=..., workers=..., preset=..., **overrides)``."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from raycl import results
from raycl.config import Config, preset as make_preset
from raycl.data.pipeline import build_pipelines
from raycl.train import STATE_FILE, train_loop

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run leaves behind."""

    metrics: dict[str, Any]  # final metrics (last epoch)
    history: pd.DataFrame  # one row per epoch (epoch 0: before training)
    checkpoint: str | None  # directory of the last checkpoint
    path: str  # run directory with history.parquet, summary.parquet, config.json, curves.png
    config: Config
    evaluation: pd.DataFrame | None = None  # raycl.run(evaluate=[...]): evaluation.parquet's rows

    def __repr__(self) -> str:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in self.metrics.items()}
        return f"RunResult(path={self.path!r}, metrics={shown})"


def make_config(method: str = "simclr", workers: int | None = None, preset: str = "tiny",
                **overrides: Any) -> Config:
    """``method``'s defaults at the preset's scale, then ``workers``, then overrides (dotted keys or
    unique field names)."""
    cfg = make_preset(preset, method)
    updates: dict[str, Any] = {}
    if workers is not None:
        updates["train.workers"] = workers
    updates.update(overrides)
    return cfg.override(updates).validate()


def ensure_ray(cfg: Config) -> None:
    """Join the cluster named by ``RAY_ADDRESS`` or start a local Ray big enough for this run.

    Locally, Ray gets at least as many logical CPUs as the run reserves plus one whole CPU for Ray
    Data's read and decode tasks (on a 2-core machine, fractional reservations otherwise deadlock).
    """
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return
    need = (cfg.train.workers * cfg.train.cpus_per_worker
            + cfg.augment.actors * cfg.augment.cpus_per_actor + 1)
    num_cpus = max(os.cpu_count() or 1, math.ceil(need))
    if num_cpus > (os.cpu_count() or 1):
        log.info("starting local Ray with %d logical CPUs on %d cores (the run reserves %.1f)",
                 num_cpus, os.cpu_count(), need)
    ray.init(num_cpus=num_cpus)


def run(method: str = "simclr", workers: int | None = None, preset: str = "tiny",
        config: Config | None = None, evaluate: Sequence[str] | None = None,
        resume: bool = False, **overrides: Any) -> RunResult:
    """Pre-train ``method`` on Ray and return its metrics, history and checkpoint.

    ``raycl.run(method="simclr", workers=2, preset="tiny", epochs=3, **{"optim.lr": 0.3})``.
    Pass ``config=`` to run a ready :class:`~raycl.config.Config` instead of a preset.
    ``evaluate=["knn", "linear", "finetune10"]`` runs those protocols (:mod:`raycl.protocols`) on
    the final checkpoint; their rows are in ``result.evaluation`` and ``evaluation.parquet``.
    A run name is used once: if ``storage_path/name`` already holds a run, ``resume=True`` continues
    it from its last checkpoint (e.g. with more ``epochs``); otherwise :class:`FileExistsError`.
    """
    cfg = (config.override(overrides) if config is not None
           else make_config(method, workers, preset, **overrides)).validate()
    if evaluate:
        from raycl.protocols import parse_protocols

        parse_protocols(evaluate)  # fail before pre-training on a bad name
    name = cfg.name or f"{cfg.method.name}-{cfg.preset or 'custom'}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = _absolute_storage(cfg.storage_path)
    cfg = cfg.override({"name": name, "storage_path": storage})
    run_dir = os.path.join(storage, name)
    _check_run_dir(run_dir, resume)
    ensure_ray(cfg)

    pipes = build_pipelines(cfg)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"config": cfg.to_dict(), "clock": pipes.clock,
                           "num_train": pipes.num_train, "num_classes": pipes.num_classes,
                           "datasets": sorted(pipes.datasets)},
        scaling_config=ScalingConfig(num_workers=cfg.train.workers, use_gpu=cfg.train.use_gpu,
                                     resources_per_worker={"CPU": cfg.train.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_path=storage,
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.num_to_keep),
                             failure_config=FailureConfig(max_failures=0)),
        datasets=pipes.datasets,
    )
    print(f"[raycl] {cfg.method.name} on {cfg.train.workers} worker(s), preset "
          f"{cfg.preset or 'custom'}: {pipes.num_train} training images, "
          f"{cfg.train.epochs} epochs, global batch {cfg.train.batch_size}", flush=True)
    error = None
    try:
        fit = trainer.fit()
        checkpoint = fit.checkpoint
    except ray.train.TrainingFailedError as exc:  # keep what the run saved before failing
        error, checkpoint = exc, None
    checkpoint_path = checkpoint.path if checkpoint is not None else _latest_checkpoint(run_dir)
    history = results.history_from_checkpoint(checkpoint_path) if checkpoint_path else []
    out = results.write_run(run_dir, cfg, history)
    if error is not None:
        raise RuntimeError(f"raycl run {name} failed; its history so far is in {run_dir}") from error
    final = {k: (v.item() if hasattr(v, "item") else v)
             for k, v in out.iloc[-1].items() if pd.notna(v)} if len(out) else {}
    evaluation = None
    if evaluate and checkpoint_path:
        from raycl.protocols import evaluate as run_protocols

        evaluation = run_protocols(checkpoint_path, evaluate, path=run_dir)
    print(f"[raycl] results in {run_dir}", flush=True)
    return RunResult(final, out, checkpoint_path, run_dir, cfg, evaluation)


def _check_run_dir(run_dir: str, resume: bool) -> None:
    """Refuse to reuse a run's directory unless asked to resume it (Ray Train would silently
    continue the old run from its checkpoint, with the new run's config)."""
    if "://" in run_dir or not os.path.isdir(run_dir) or not any(os.scandir(run_dir)):
        return
    storage, name = os.path.split(run_dir)
    if not resume:
        raise FileExistsError(
            f"run {name!r} already exists in {storage}: pass resume=True (CLI: --resume) to continue "
            "it from its last checkpoint, or choose another name (or remove that directory)")
    print(f"[raycl] resuming run {name} from {_latest_checkpoint(run_dir) or 'its start'}", flush=True)


def _absolute_storage(path: str) -> str:
    if "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def _latest_checkpoint(run_dir: str) -> str | None:
    found = sorted(Path(run_dir).glob(f"checkpoint_*/{STATE_FILE}"), key=lambda p: p.stat().st_mtime)
    return str(found[-1].parent) if found else None
