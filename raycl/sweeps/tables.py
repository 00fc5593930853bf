"""A sweep's tidy tables: ``trials.parquet`` (one row per trial), ``history.parquet`` (one row per
trial and epoch) and ``sweep.json`` (what was run), and :func:`load_sweep` to read them back.

The tables are written while the sweep runs (a Tune callback rewrites them as results arrive, so a
driver that dies leaves what it saw) and once more at the end from Tune's ``ResultGrid``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from raycl.sweeps.plan import PlannedRun

TRIALS, HISTORY, META = "trials.parquet", "history.parquet", "sweep.json"
# Tune's own bookkeeping in every result; the tables keep raycl's metrics
_TUNE_KEYS = {"config", "done", "training_iteration", "trial_id", "timestamp", "date", "time_this_iter_s",
              "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
              "iterations_since_restore", "checkpoint_dir_name", "should_checkpoint", "checkpoint_path"}


@dataclass
class SweepResult:
    """What :func:`load_sweep` returns: the two tables and the sweep's description."""

    trials: pd.DataFrame
    history: pd.DataFrame
    meta: dict[str, Any]
    path: str

    def __repr__(self) -> str:
        done = (self.trials["status"] == "TERMINATED").sum() if len(self.trials) else 0
        return (f"SweepResult(path={self.path!r}, grid={self.meta.get('grid')!r}, "
                f"trials={len(self.trials)}, finished={done})")


def metrics_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """raycl's metrics in one Tune result (Tune's bookkeeping keys left out)."""
    return {k: v for k, v in result.items() if k not in _TUNE_KEYS and not k.startswith("config/")}


def history_rows(run: PlannedRun, trial_id: str, results: list[Mapping[str, Any]]) -> list[dict]:
    """One row per epoch; an epoch reported twice (redone after a restore, or followed by the
    trial's evaluation results) keeps the last value of every metric."""
    by_epoch: dict[Any, dict] = {}
    for r in results:
        m = metrics_of(r)
        if "epoch" in m:
            by_epoch[m["epoch"]] = {"trial_id": trial_id, "key": run.key, "cell": run.cell,
                                    "seed": run.seed, **by_epoch.get(m["epoch"], {}), **m,
                                    "trial_time_s": r.get("time_total_s")}
    return [by_epoch[e] for e in sorted(by_epoch)]


def evaluation_columns(rows) -> dict[str, float]:
    """An evaluation table (:func:`raycl.evaluate`) as flat columns: ``<protocol>[_<task>
    _<features>]_<split>_top1`` (task and features only where a protocol has several)."""
    out = {}
    for r in rows.to_dict("records"):
        parts = [r["protocol"]]
        if r.get("task", "class") != "class":
            parts += [r["task"], r["features"]]
        out["_".join([*parts, r["split"], "top1"])] = float(r["top1"])
    return out


def trial_row(run: PlannedRun, trial_id: str | None, status: str, history: list[dict],
              error: str | None = None, wall_time_s: float | None = None,
              checkpoint: str | None = None) -> dict[str, Any]:
    """The trial's row: swept values, readable labels, the paper's numbers, final and best metrics."""
    row: dict[str, Any] = {"trial_id": trial_id, "key": run.key, "cell": run.cell, "seed": run.seed,
                           "method": run.overrides.get("method")}
    row.update(run.spec.values)
    row.update(run.spec.labels)
    row.update({f"paper_{k}": v for k, v in run.spec.reference.items()})
    row.update(status=status, error=error, skipped=run.skip, epochs=0, wall_time_s=wall_time_s,
               checkpoint=checkpoint)
    trained = [h for h in history if h.get("epoch", 0) > 0]
    if trained:
        last = trained[-1]
        row["epochs"] = int(last["epoch"])
        row.update({k: v for k, v in last.items() if k not in ("trial_id", "key", "cell", "seed", "epoch")})
    knn = [h["knn_top1"] for h in history if isinstance(h.get("knn_top1"), float)
           and math.isfinite(h["knn_top1"])]
    if knn:
        row["best_knn_top1"] = max(knn)
        row["knn_top1_at_init"] = next((h["knn_top1"] for h in history if h.get("epoch") == 0), None)
    return row


def write_tables(path: str, trials: list[dict], history: list[dict]) -> None:
    """Write both tables atomically (a reader never sees half a file)."""
    for name, rows, order in ((TRIALS, trials, ["key"]), (HISTORY, history, ["key", "epoch"])):
        df = pd.DataFrame(rows)
        if len(df):
            df = df.sort_values(order, kind="stable").reset_index(drop=True)
        tmp = os.path.join(path, f".{name}.tmp")
        df.to_parquet(tmp, index=False)
        os.replace(tmp, os.path.join(path, name))


def write_meta(path: str, meta: Mapping[str, Any]) -> None:
    with open(os.path.join(path, META), "w") as f:
        json.dump(meta, f, indent=2, default=str)


def load_sweep(path: str) -> SweepResult:
    """A sweep's tables as DataFrames: ``raycl.load_sweep("raycl_sweeps/augmentation-tiny")``."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(os.path.join(path, META)):
        raise FileNotFoundError(f"{path} holds no sweep ({META} is missing)")
    with open(os.path.join(path, META)) as f:
        meta = json.load(f)

    def read(name: str) -> pd.DataFrame:
        file = os.path.join(path, name)
        return pd.read_parquet(file) if os.path.isfile(file) else pd.DataFrame()

    return SweepResult(read(TRIALS), read(HISTORY), meta, path)
