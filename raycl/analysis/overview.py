"""Several sweeps at once: every sweep under a folder, their trials in one tidy table, and one row per
sweep saying what ran and which of its paper's findings held.

    sweeps = load_sweeps("reproductions")             # {name: SweepResult}
    all_trials(sweeps)                                # one table, a ``sweep`` and a ``grid`` column
    overview(sweeps)                                  # one row per sweep
"""

from __future__ import annotations

import os

import pandas as pd

from raycl.analysis.findings import check_findings
from raycl.sweeps.tables import META, SweepResult, load_sweep

__all__ = ["all_trials", "find_sweeps", "load_sweeps", "overview"]


def find_sweeps(root: str) -> list[str]:
    """The sweep directories (holding ``sweep.json``) at or below ``root``, sorted; Tune's own
    trial folders inside a sweep are not searched."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a directory")
    found = []
    for here, dirs, files in os.walk(root):
        if META in files:
            found.append(here)
            dirs[:] = []  # a sweep's runs/ and Tune's trial folders hold no further sweeps
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)


def load_sweeps(root: str) -> dict[str, SweepResult]:
    """Every sweep under ``root``, by its path relative to ``root`` (``"color_strength"``)."""
    root = os.path.abspath(os.path.expanduser(root))
    return {
        os.path.relpath(p, root) if p != root else os.path.basename(p): load_sweep(p)
        for p in find_sweeps(root)
    }


def all_trials(sweeps: dict[str, SweepResult]) -> pd.DataFrame:
    """The sweeps' trials tables stacked, with ``sweep`` and ``grid`` columns first."""
    parts = [
        s.trials.assign(sweep=name, grid=s.meta.get("grid")) for name, s in sweeps.items() if len(s.trials)
    ]
    if not parts:
        return pd.DataFrame(columns=["sweep", "grid"])
    out = pd.concat(parts, ignore_index=True, sort=False)
    return out[["sweep", "grid", *[c for c in out.columns if c not in ("sweep", "grid")]]]


def overview(sweeps: dict[str, SweepResult]) -> pd.DataFrame:
    """One row per sweep: grid, source, preset, seeds, trials by status, wall time, the best cell's
    kNN top-1, and how many of the paper's claims hold here (of those checked)."""
    rows = []
    for name, s in sweeps.items():
        t, meta = s.trials, s.meta
        status = t["status"].value_counts() if "status" in t.columns else pd.Series(dtype=int)
        findings = check_findings(t, meta.get("grid", "")) if len(t) else pd.DataFrame(columns=["verdict"])
        rows.append(
            {
                "sweep": name,
                "grid": meta.get("grid"),
                "source": meta.get("source"),
                "preset": meta.get("preset"),
                "seeds": len(meta.get("seeds", [])),
                "trials": len(t),
                "finished": int(status.get("TERMINATED", 0)),
                "failed": int(status.get("ERROR", 0)),
                "wall_time_min": round(float(t["wall_time_s"].sum()) / 60, 1)
                if "wall_time_s" in t.columns
                else None,
                "best_knn_top1": float(t["knn_top1"].max()) if "knn_top1" in t.columns and len(t) else None,
                "claims_held": int(findings["verdict"].str.startswith("holds").sum()),
                "claims_checked": int((findings["verdict"] != "unmeasured").sum()),
            }
        )
    return pd.DataFrame(rows)
