"""Sweep cost on this machine: wall time of a slice of the augmentation grid (SimCLR Fig. 5) at the
tiny preset, and per trial how much is start-up (trial start to the end of its first epoch, minus
that epoch's training) against training (the epochs' own time).

Prints a table and writes JSON (default ``bench/results/sweep_overhead.json``). The issue's target is
the whole 49-cell grid in at most 20 minutes on 2 cores; the JSON extrapolates from the slice.

With ``--seeds 2`` or more it also measures whether the grid preset ranks cells above seed noise:
the spread of a cell's kNN over seeds against the spread of the cells' means, and how well the
seeds agree on the ranking (Spearman's rank correlation).

    python bench/sweep_overhead.py [--ops crop,color,blur] [--seeds 1] [--storage /tmp/raycl-bench]
        [--concurrency N] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time

import raycl
from raycl.checks import parse_sets
from raycl.sweeps import GRIDS, plan


def seed_noise(trials) -> dict:
    """How far a cell's kNN moves between seeds, against how far cells are apart."""
    table = trials.pivot_table(index=["first", "second"], columns="seed", values="knn_top1")
    first, second = table.columns[:2]
    return {"median_cell_std": float(table.std(axis=1).median()),
            "std_of_cell_means": float(table.mean(axis=1).std()),
            "signal_to_noise": float(table.mean(axis=1).std() / table.std(axis=1).median()),
            # Spearman's rho: Pearson's correlation of the ranks
            "spearman_between_seeds": float(table[first].rank().corr(table[second].rank())),
            "cells": {f"{a}+{b}": [round(float(v), 4) for v in row] for (a, b), row in table.iterrows()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", default="crop,color,blur", help="the slice: first and second ops")
    parser.add_argument("--storage", default=None)
    parser.add_argument("--concurrency", type=int, default=None, help="trials at once (default: fit)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per cell (2+: measure seed noise)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "sweep_overhead.json"))
    args = parser.parse_args()
    ops = args.ops.split(",")
    only = {"first": ops, "second": ops}
    overrides = parse_sets(args.sets)
    storage = args.storage or tempfile.mkdtemp(prefix="raycl-bench-")
    start = time.perf_counter()
    out = raycl.sweep("augmentation", "tiny", args.seeds, storage_path=storage, name="bench", only=only,
                      overrides=overrides, concurrency=args.concurrency)
    wall = time.perf_counter() - start

    t, h = out.trials, out.history
    per_trial = []
    for key, rows in h.groupby("key"):
        rows = rows.set_index("epoch")
        trained = rows.loc[rows.index > 0]
        first = trained.index.min()
        startup = rows.loc[first, "trial_time_s"] - rows.loc[first, "epoch_time_s"]
        per_trial.append({"key": key, "startup_s": float(startup),
                          "training_s": float(trained["epoch_time_s"].sum()),
                          "trial_s": float(rows["trial_time_s"].max())})
    cells = len(plan(GRIDS["augmentation"], "tiny"))
    pairs = t.groupby(["first", "second"])["knn_top1"]
    summary = {
        "cells_run": len(t), "cells_in_grid": cells, "wall_s": wall,
        "max_concurrent_trials": out.meta["max_concurrent_trials"],
        "median_trial_s": statistics.median(p["trial_s"] for p in per_trial),
        "median_startup_s": statistics.median(p["startup_s"] for p in per_trial),
        "median_training_s": statistics.median(p["training_s"] for p in per_trial),
        "extrapolated_grid_s": wall / len(t) * cells,
        "seeds": args.seeds,
        "epochs": int(t["epochs"].max()), "finished": int((t["status"] == "TERMINATED").sum()),
        "top_pairs": pairs.mean().sort_values(ascending=False).head(5).reset_index()
        .to_dict("records"),
        "noise": seed_noise(t) if args.seeds > 1 else None,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "overrides": overrides, "ops": ops, "concurrency_asked": args.concurrency, "per_trial": per_trial,
    }
    print(f"augmentation grid slice {args.ops} × {args.ops} at tiny: {len(t)} trials, "
          f"{summary['max_concurrent_trials']} at a time, {summary['epochs']} epochs each")
    print(f"{'':28s}{'seconds':>10s}")
    for label, key in (("sweep wall time", "wall_s"), ("median trial", "median_trial_s"),
                       ("  of which start-up", "median_startup_s"),
                       ("  of which training epochs", "median_training_s"),
                       (f"whole grid ({cells} cells), extrapolated", "extrapolated_grid_s")):
        print(f"{label:28s}{summary[key]:10.1f}")
    print("top pairs:", ", ".join(f"{r['first']}+{r['second']} {r['knn_top1']:.3f}"
                                  for r in summary["top_pairs"]))
    if summary["noise"]:
        n = summary["noise"]
        print(f"seed noise: median per-cell std {n['median_cell_std']:.3f} against a std of "
              f"{n['std_of_cell_means']:.3f} between cells (ratio {n['signal_to_noise']:.1f}); "
              f"Spearman rank correlation between seeds {n['spearman_between_seeds']:.2f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {args.out}")
    if args.storage is None:
        shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    main()
