"""``raycl.sweep``: a grid as a Ray Tune experiment whose trials are raycl runs.

Each trial is a Tune function trainable that builds its run's ``TorchTrainer`` with
:func:`raycl.train.build_trainer` and Tune's ``TuneReportCallback``, so every epoch's metrics (kNN on
validation, loss, pretext accuracy) are a Tune result with ``epoch`` as the time attribute. A trial
holds no CPU itself (Ray Train V2 starts its workers in their own placement group): concurrency is
capped instead, from the run's reservations and the cluster's CPUs, leaving Ray Data a CPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune

from raycl.config import Config, ConfigError, from_overrides
from raycl.data.pipeline import has_labels
from raycl.results import check_writable
from raycl.sweeps.grids import Grid, get_grid
from raycl.sweeps.plan import PlannedRun, plan
from raycl.sweeps.tables import (HISTORY, META, TRIALS, SweepResult, evaluation_columns, history_rows,
                                load_sweep, trial_row, write_meta, write_tables)
from raycl.train import build_trainer, check_cluster, ensure_ray, prepare_kernel
from raycl.train.init_from import check_init_from
from raycl.tracking import tune_callbacks
from raycl.train.trainer import augment_cpus, run_cpus

log = logging.getLogger(__name__)
RUNS_DIR = "runs"  # storage_path/name/runs/<trial id>/: each trial's Ray Train run


def max_concurrent(cfg: Config, cluster_cpus: float) -> int:
    """How many trials fit side by side: all trials' reservations plus one CPU for Ray Data's other
    tasks (reads, the kNN sets' decoding) within the cluster's CPUs; at least one."""
    return max(1, int(math.floor((cluster_cpus - 1) / run_cpus(cfg) + 1e-9)))


def run_trial(config: dict, runs: Mapping[str, Mapping[str, Any]], runs_dir: str,
              protocols: Sequence[str] = ()) -> None:
    """Tune trainable: the run ``config["run"]`` under the trial's id, reporting every epoch, then
    the evaluation ``protocols`` on its last checkpoint, reported with the last epoch.

    The protocols run in this process once the run's workers have released their CPUs, so they
    use the CPUs the concurrency cap kept for this trial."""
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    cfg = from_overrides({**runs[config["run"]], "name": trial_id, "storage_path": runs_dir})
    # Ray Data's budget is set here, in the trial, because the trainer copies the DataContext
    data = ray.data.DataContext.get_current()
    data.execution_options.resource_limits = data.execution_options.resource_limits.copy(
        cpu=max(1.0, augment_cpus(cfg)))
    result = build_trainer(cfg, callbacks=[TuneReportCallback()]).trainer.fit()
    if protocols and result.checkpoint is not None:
        from raycl.protocols import evaluate

        rows = evaluate(result.checkpoint.path, protocols, verbose=False, use_ray=False)
        # with the last epoch's metrics (Tune expects its metric in every result) and checkpoint
        tune.report({**result.metrics, **evaluation_columns(rows), "checkpoint_path": result.checkpoint.path})


class _Tables(tune.Callback):
    """Rewrites trials.parquet and history.parquet as results arrive, and prints one line per
    finished trial and, at most every :attr:`STATUS_EVERY_S` while trials report epochs, one line
    of the running trials (Tune's own tables go to its log unless verbose)."""

    STATUS_EVERY_S = 60.0
    STATUS_TRIALS = 4  # running trials a status line names; the rest are counted

    def __init__(self, path: str, runs: Sequence[PlannedRun]):
        self.path, self.runs = path, {r.key: r for r in runs}
        self.results: dict[str, list[dict]] = {}
        self.total, self.finished = sum(r.skip is None for r in runs), 0
        self.epochs: dict[str, int] = {}  # run key -> its train.epochs, for the status line
        self.last_status = 0.0

    def setup(self, **info):
        """Called as the experiment starts, and again after a restore, which hands back this callback
        as it was pickled when the sweep began: the results so far are read back from the tables
        (Tune passes only new results, so the trials finished before the restore would otherwise
        lose their numbers in the tables written until the sweep ends)."""
        self.epochs, self.last_status = {}, time.monotonic()
        history, trials = os.path.join(self.path, HISTORY), os.path.join(self.path, TRIALS)
        if os.path.isfile(history):
            for trial_id, rows in pd.read_parquet(history).groupby("trial_id"):
                self.results[trial_id] = [{**{k: v for k, v in r.items() if pd.notna(v)},
                                           "time_total_s": r.get("trial_time_s")}
                                          for r in rows.to_dict("records")]
        if os.path.isfile(trials):
            self.finished = int(pd.read_parquet(trials)["status"].isin(["TERMINATED", "ERROR"]).sum())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.setdefault(trial.trial_id, []).append(
            {k: v for k, v in result.items() if k != "config"})
        self._write(trials)
        if time.monotonic() - self.last_status >= self.STATUS_EVERY_S:
            print(self.status(trials), flush=True)
            self.last_status = time.monotonic()

    def status(self, trials) -> str:
        """``[raycl] 5/24 done, 2 running: c005-s0 epoch 3/8 kNN 0.412, c006-s0 starting; 17 waiting``."""
        running = [t for t in trials if t.status == "RUNNING"]
        named = []
        for t in running[:self.STATUS_TRIALS]:
            key = t.config["run"]
            if key not in self.epochs:
                self.epochs[key] = from_overrides(self.runs[key].overrides).train.epochs
            if not self.results.get(t.trial_id):  # its workers and data are still starting
                named.append(f"{key} starting")
                continue
            last = self.results[t.trial_id][-1]
            knn = last.get("knn_top1")
            named.append(f"{key} epoch {last.get('epoch', 0)}/{self.epochs[key]}"
                         + (f" kNN {knn:.3f}" if knn is not None else ""))
        more = f" and {len(running) - len(named)} more" if len(running) > len(named) else ""
        waiting = max(0, self.total - self.finished - len(running))  # Tune creates trials as they fit
        return (f"[raycl] {self.finished}/{self.total} done, {len(running)} running: "
                f"{', '.join(named) or '-'}{more}; {waiting} waiting")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write(trials)
        self._say(trials, trial, "")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trials)
        self._say(trials, trial, "FAILED: " + (_error_text(trial.get_error()) or ""))

    def _say(self, trials, trial, outcome: str) -> None:
        self.finished += 1
        run = self.runs[trial.config["run"]]
        last = trial.last_result or {}
        if not outcome:
            knn = [r["knn_top1"] for r in self.results.get(trial.trial_id, []) if "knn_top1" in r]
            outcome = (f"kNN top-1 {knn[-1]:.3f} (best {max(knn):.3f})" if knn else "done") + \
                f", {last.get('epoch', 0)} epochs, {last.get('time_total_s', 0):.0f} s"
        print(f"[raycl] {self.finished}/{self.total} {run.describe()}: {outcome}", flush=True)

    def _write(self, trials) -> None:
        rows, history = [], []
        for t in trials:
            run = self.runs[t.config["run"]]
            h = history_rows(run, t.trial_id, self.results.get(t.trial_id, []))
            error = _error_text(t.get_error()) if t.status == "ERROR" else None
            last = t.last_result or {}
            rows.append(trial_row(run, t.trial_id, t.status, h, error, last.get("time_total_s"),
                                  last.get("checkpoint_path")))
            history += h
        rows += [trial_row(r, None, "SKIPPED", []) for r in self.runs.values() if r.skip]
        write_tables(self.path, rows, history)


def _error_text(error: BaseException | None) -> str | None:
    """The error's last line (``FileNotFoundError: ...``), not Ray's wrapping traceback."""
    if error is None:
        return None
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1][-1000:] if lines else type(error).__name__


def sweep(grid: str | Grid, preset: str = "tiny", seeds: int | Sequence[int] = 1, *,
          storage_path: str = "raycl_sweeps", name: str | None = None, resume: bool = False,
          scheduler: str | None = None, overrides: Mapping[str, Any] | None = None,
          concurrency: int | None = None, verbose: bool = False,
          only: Mapping[str, Sequence[Any]] | None = None,
          evaluate: Sequence[str] | None = None) -> SweepResult:
    """Run ``grid`` (a name from :data:`raycl.sweeps.GRIDS` or a :class:`Grid`) at ``preset`` for
    ``seeds`` (a count or a list) and return its tables (:func:`load_sweep`).

    Results go to ``storage_path/name/`` (default name ``<grid>-<preset>``): ``trials.parquet``,
    ``history.parquet``, ``sweep.json``, Tune's experiment state and each trial's run under
    ``runs/``. A name is used once unless ``resume=True``, which continues the sweep: finished
    trials are kept, unfinished and errored ones continue from their last checkpoint.
    ``scheduler="asha"`` stops weak trials early on the kNN monitor. ``overrides`` apply to every
    cell; ``only`` runs a slice of the grid (:func:`raycl.sweeps.plan`); ``concurrency`` caps the
    trials run at once (default: what the cluster's CPUs carry). ``evaluate`` names the protocols
    (:mod:`raycl.protocols`) each trial runs after pre-training (default: the grid's, e.g. a linear
    probe on h and on g(h) for ``projection_head``); their top-1 are columns of ``trials.parquet``.
    The console shows one line per finished trial; ``verbose=True`` adds Tune's live trial table.
    """
    from raycl.protocols import parse_protocols

    grid = get_grid(grid) if isinstance(grid, str) else grid
    chosen = _scheduler(scheduler)  # a bad name fails before Ray starts
    protocols = [p.name for p in parse_protocols(evaluate)] if evaluate else list(grid.evaluate)
    runs = plan(grid, preset, seeds, overrides, only)
    todo = [r for r in runs if r.skip is None]
    if not todo:
        raise ValueError(f"grid {grid.name!r} has no cell that preset {preset!r} can run")
    name = name or f"{grid.name}-{preset}"
    if "://" in str(storage_path):  # the tables and Tune's state are written with local file calls
        raise ConfigError("storage_path", storage_path, "a folder path, local or on a filesystem every "
                          "node mounts at the same path (NFS, EFS) on a cluster; not a URI")
    path = str(Path(storage_path).expanduser().resolve() / name)
    first = from_overrides(todo[0].overrides)
    if not has_labels(first):  # trials are compared, and stopped early, on the kNN monitor
        raise ConfigError("data.unlabelled", True, "false in a sweep unless eval.data_source names a "
                          "labelled source: its trials are compared on kNN accuracy")
    if first.model.init_from and not resume:  # the same weights for every cell: fail before any trial
        print(f"[raycl] {check_init_from(first)}", flush=True)
    if os.path.isdir(path) and any(os.scandir(path)) and not resume:
        raise FileExistsError(f"sweep {name!r} already exists in {os.path.dirname(path)}: pass "
                              "resume=True (CLI: --resume) to continue it, or choose another name")
    if resume:  # before Ray starts
        _check_same_plan(path, name, _meta(grid, preset, runs, overrides, only, 0, protocols))
    check_writable(path)
    # a local Ray that raycl starts is sized for as many trials as the machine's cores carry
    ensure_ray(first, verbose, runs=concurrency or max(1, int((os.cpu_count() or 1) // run_cpus(first))))
    check_cluster(first)
    prepare_kernel(first)
    limit = concurrency or max_concurrent(first, ray.cluster_resources().get("CPU", 1))
    write_meta(path, _meta(grid, preset, runs, overrides, only, limit, protocols))
    print(f"[raycl] sweep {grid.name} ({grid.source}) at preset {preset}: {len(todo)} trials "
          f"({len(runs) - len(todo)} skipped), up to {limit} at a time", flush=True)

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, runs={r.key: dict(r.overrides) for r in todo},
                             runs_dir=os.path.join(path, RUNS_DIR), protocols=protocols),
        {"cpu": 0, "memory": 1})  # the trial holds nothing: its workers have their own group
    tables = _Tables(path, runs)
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search([r.key for r in todo])},
            # reuse_actors: the next trial runs in the finished trial's process, whose Python, Ray and
            # torch are already imported (a new one costs seconds of CPU per trial)
            tune_config=tune.TuneConfig(max_concurrent_trials=limit, scheduler=chosen,
                                        metric="knn_top1", mode="max", reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=os.path.dirname(path),
                                      failure_config=tune.FailureConfig(max_failures=0),
                                      callbacks=[tables, *tune_callbacks(first.train.trackers, name)],
                                      verbose=1 if verbose else 0))
    start = time.perf_counter()
    with _tune_output(verbose):
        results = tuner.fit()
    _final_tables(path, runs, results)
    out = load_sweep(path)
    print(f"[raycl] sweep {name}: {len(out.trials)} trials in {time.perf_counter() - start:.0f} s; "
          f"results in {path}", flush=True)
    return out


@contextlib.contextmanager
def _tune_output(verbose: bool):
    """Tune's console output: its live table when verbose, else nothing (the new output engine
    prints its banner even at verbose=0; the legacy reporter at verbose=0 is silent)."""
    old = os.environ.get("RAY_AIR_NEW_OUTPUT")
    if not verbose:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = old


def _scheduler(name: str | None):
    if name is None:
        return None
    if name == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # epoch, not training_iteration, which restarts at 1 after a restore
        return ASHAScheduler(time_attr="epoch", grace_period=1)
    raise ValueError(f"scheduler = {name!r} is not allowed: None or 'asha'")


def _final_tables(path: str, runs: list[PlannedRun], results) -> None:
    """The tables again, from Tune's ResultGrid (authoritative: the callback may have missed a
    result when the driver was restored)."""
    by_key = {r.key: r for r in runs}
    rows, history = [], []
    for result in results:
        run = by_key[result.config["run"]]
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        df = result.metrics_dataframe
        records = df.to_dict("records") if df is not None else []
        h = history_rows(run, trial_id, records)
        status = "ERROR" if result.error else "TERMINATED"
        rows.append(trial_row(run, trial_id, status, h, _error_text(result.error),
                              (result.metrics or {}).get("time_total_s"),
                              (result.metrics or {}).get("checkpoint_path")))
        history += h
    rows += [trial_row(r, None, "SKIPPED", []) for r in runs if r.skip]
    write_tables(path, rows, history)


PLAN_KEYS = ("preset", "seeds", "overrides", "only", "cells")  # what a resumed sweep must keep


def _check_same_plan(path: str, name: str, meta: Mapping[str, Any]) -> None:
    """A resumed sweep runs the plan it started with: Tune restores its trials as they were, so other
    seeds, overrides or cells would be trials it cannot run (ValueError naming what changed)."""
    try:
        with open(os.path.join(path, META)) as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return  # nothing started yet
    def plan_of(m):
        m = json.loads(json.dumps(m, default=str))
        m["cells"] = [(c["key"], c["values"], c["skip"]) for c in m.get("cells", [])]
        return m

    stored, new = plan_of(stored), plan_of(meta)
    changed = [k for k in PLAN_KEYS if k in stored and stored[k] != new[k]]
    if changed:
        was = ", ".join(f"{k}={stored[k]!r}" for k in changed if k != "cells")
        raise ValueError(f"sweep {name!r} was started with another plan ({', '.join(changed)} differ"
                         f"{': it had ' + was if was else ''}); resume=True continues the same plan: "
                         "pass the same seeds, overrides and slice, or choose another name")


def _meta(grid: Grid, preset: str, runs: list[PlannedRun], overrides, only, limit: int,
          protocols: list[str]) -> dict[str, Any]:
    import torch

    import raycl

    return {"grid": grid.name, "source": grid.source, "question": grid.question,
            "method": grid.method, "preset": preset, "seeds": sorted({r.seed for r in runs}),
            "overrides": dict(overrides or {}), "only": dict(only or {}),
            "grid_preset": dict(grid.presets.get(preset, {})),
            "reference_note": grid.reference_note, "finding": grid.finding,
            "max_concurrent_trials": limit, "evaluate": protocols,
            "cells": [{"key": r.key, "values": dict(r.spec.values), "labels": dict(r.spec.labels),
                       "reference": dict(r.spec.reference), "skip": r.skip} for r in runs],
            "versions": {"raycl": raycl.__version__, "ray": ray.__version__, "torch": torch.__version__,
                         "python": sys.version.split()[0]}}
