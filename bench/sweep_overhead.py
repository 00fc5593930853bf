"""Sweep cost on this machine: wall time of a slice of the augmentation grid (SimCLR Fig. 5) at the
tiny preset, and per trial how much is start-up (trial start to the end of its first epoch, minus
that epoch's training) against training (the epochs' own time).

Prints a table and writes JSON (default ``bench/results/sweep_overhead.json``). The issue's target is
the whole 49-cell grid in at most 20 minutes on 2 cores; the JSON extrapolates from the slice.

    python bench/sweep_overhead.py [--ops crop,color,blur] [--storage /tmp/raycl-bench] [--set k=v ...]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", default="crop,color,blur", help="the slice: first and second ops")
    parser.add_argument("--storage", default=None)
    parser.add_argument("--concurrency", type=int, default=None, help="trials at once (default: fit)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "sweep_overhead.json"))
    args = parser.parse_args()
    ops = args.ops.split(",")
    only = {"first": ops, "second": ops}
    overrides = parse_sets(args.sets)
    storage = args.storage or tempfile.mkdtemp(prefix="raycl-bench-")
    start = time.perf_counter()
    out = raycl.sweep("augmentation", "tiny", 1, storage_path=storage, name="bench", only=only,
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
    summary = {
        "cells_run": len(t), "cells_in_grid": cells, "wall_s": wall,
        "max_concurrent_trials": out.meta["max_concurrent_trials"],
        "median_trial_s": statistics.median(p["trial_s"] for p in per_trial),
        "median_startup_s": statistics.median(p["startup_s"] for p in per_trial),
        "median_training_s": statistics.median(p["training_s"] for p in per_trial),
        "extrapolated_grid_s": wall / len(t) * cells,
        "epochs": int(t["epochs"].max()), "finished": int((t["status"] == "TERMINATED").sum()),
        "top_pairs": t.sort_values("knn_top1", ascending=False)[["first", "second", "knn_top1"]]
        .head(5).to_dict("records"),
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
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {args.out}")
    if args.storage is None:
        shutil.rmtree(storage, ignore_errors=True)


if __name__ == "__main__":
    main()
