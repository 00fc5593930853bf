"""The public entry point: ``raycl.run(method=..., workers=..., preset=..., **overrides)``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import ray.exceptions
import ray.train

from raycl import results
from raycl.data.decode import BadImageError
from raycl.config import Config, ConfigError, from_overrides
from raycl.data.pipeline import has_labels
from raycl.train import STATE_FILE, build_trainer, check_cluster, ensure_ray, prepare_kernel, with_run_name
from raycl.train.best import BEST_DIR
from raycl.train.init_from import check_init_from
from raycl.train.model import DivergedError
from raycl.train.recovery import RunFailedError, fatal_cause
from raycl.train.progress import ProgressPrinter
from raycl.train.state import read_state
from raycl.tracking import Trackers, check_installed

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
    best_checkpoint: str | None = None  # the checkpoint with the best validation kNN (<run>/best)

    def __repr__(self) -> str:
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in self.metrics.items()}
        return f"RunResult(path={self.path!r}, metrics={shown})"


def make_config(method: str = "simclr", workers: int | None = None, preset: str = "tiny",
                **overrides: Any) -> Config:
    """``method``'s defaults at the preset's scale, then ``workers``, then overrides (dotted keys or
    unique field names): :func:`raycl.config.from_overrides` with ``preset`` and ``method`` first."""
    flat: dict[str, Any] = {"preset": preset, "method": method}
    if workers is not None:
        flat["train.workers"] = workers
    return from_overrides({**flat, **overrides})


def run(method: str = "simclr", workers: int | None = None, preset: str = "tiny",
        config: Config | None = None, evaluate: Sequence[str] | None = None,
        resume: bool = False, verbose: bool = False, **overrides: Any) -> RunResult:
    """Pre-train ``method`` on Ray and return its metrics, history and checkpoint.

    ``raycl.run(method="simclr", workers=2, preset="tiny", epochs=3, **{"optim.lr": 0.3})``.
    Pass ``config=`` to run a ready :class:`~raycl.config.Config` instead of a preset.
    ``evaluate=["knn", "linear", "finetune10"]`` runs those protocols (:mod:`raycl.protocols`) on
    the final checkpoint; their rows are in ``result.evaluation`` and ``evaluation.parquet``.
    A run name is used once: if ``storage_path/name`` already holds a run, ``resume=True`` continues
    it from its last checkpoint (e.g. with more ``epochs``); otherwise :class:`FileExistsError`.
    The console shows one line per epoch; ``verbose=True`` also shows Ray's own worker output
    (when raycl starts or joins Ray; it is in Ray's log files either way).
    """
    cfg = (config.override(overrides) if config is not None
           else make_config(method, workers, preset, **overrides)).validate()
    if evaluate:
        from raycl.protocols import parse_protocols

        parse_protocols(evaluate)  # fail before pre-training on a bad name
        if not has_labels(cfg):
            raise ConfigError("evaluate", list(evaluate), "no protocols without labelled images: "
                              "data.unlabelled = true and no eval.data_source")
    cfg = with_run_name(cfg)
    run_dir = os.path.join(cfg.storage_path, cfg.name)
    _check_run_dir(run_dir, resume)
    if cfg.model.init_from and not (resume and _latest_checkpoint(run_dir)):
        print(f"[raycl] {check_init_from(cfg)}", flush=True)
    results.check_writable(cfg.storage_path)
    check_installed(cfg.train.trackers)
    ensure_ray(cfg, verbose)
    check_cluster(cfg)
    prepare_kernel(cfg)
    error = None
    trackers = Trackers(cfg, run_dir) if cfg.train.trackers else None
    with ProgressPrinter(cfg.train.epochs, trackers) as progress:  # its queue actor ends with the run
        built = build_trainer(cfg, callbacks=[progress.callback], say=progress.queue)
        print(built.header(), flush=True)
        try:
            checkpoint = built.trainer.fit().checkpoint
        # keep what the run saved before failing: workers out of retries, or the controller lost
        except (ray.train.TrainingFailedError, ray.exceptions.RayActorError) as exc:
            error, checkpoint = exc, None
        _say_bad_images(built.pipelines.clock)
    checkpoint_path = checkpoint.path if checkpoint is not None else _latest_checkpoint(run_dir)
    history, restarts = results.checkpoint_record(checkpoint_path) if checkpoint_path else ([], [])
    out = results.write_run(run_dir, cfg, history, restarts)
    if error is not None:
        fatal = fatal_cause(error)
        if isinstance(fatal, BadImageError):  # say which file, not Ray's wrapped traceback
            raise BadImageError(f"raycl run {cfg.name} stopped at an undecodable image (data.on_bad_image="
                                f"'fail'): {fatal}") from None
        if isinstance(fatal, DivergedError):
            raise DivergedError(f"raycl run {cfg.name} stopped: {fatal} (its history so far is in "
                                f"{run_dir})") from None
        lost = isinstance(error, ray.exceptions.RayActorError)  # the controller itself died
        what = "stopped: Ray Train's controller process died" if lost else "failed"
        hint = ", and resume=True (CLI: --resume) continues it from its last checkpoint" \
            if checkpoint_path else ""
        raise RunFailedError(f"raycl run {cfg.name} {what}; its history so far is in {run_dir}{hint}") \
            from error
    final = {k: (v.item() if hasattr(v, "item") else v)
             for k, v in out.iloc[-1].items() if pd.notna(v)} if len(out) else {}
    evaluation = None
    if evaluate and checkpoint_path:
        from raycl.protocols import evaluate as run_protocols

        evaluation = run_protocols(checkpoint_path, evaluate, path=run_dir)
    print(f"[raycl] results in {run_dir}", flush=True)
    best = os.path.join(run_dir, BEST_DIR)
    return RunResult(final, out, checkpoint_path, run_dir, cfg, evaluation,
                     best if os.path.isfile(os.path.join(best, STATE_FILE)) else None)


def _say_bad_images(clock) -> None:
    """One line naming a few of the images the run skipped because they could not be decoded."""
    count, examples = ray.get(clock.bad_images.remote())
    if count:
        print(f"[raycl] skipped {count} undecodable image(s), e.g. {', '.join(examples)} "
              "(data.on_bad_image='fail' stops at the first instead)", flush=True)


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


def _latest_checkpoint(run_dir: str) -> str | None:
    """The newest checkpoint folder whose state reads back whole (a copy cut short by a crash is
    passed over for the one before it)."""
    found = sorted(Path(run_dir).glob(f"checkpoint_*/{STATE_FILE}"), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        try:
            read_state(str(path))
        except Exception as exc:  # truncated or foreign: torch raises several types
            log.warning("skipping checkpoint %s: %s", path.parent, exc)
            continue
        return str(path.parent)
    return None
