"""Numbers from sweep results: seeds aggregated per cell with a t interval, SimCLR's pair grid as a
matrix, readable cell names, and rank agreement with the papers' numbers.

Works on the ``trials`` table of :func:`raycl.load_sweep` (one row per cell and seed)::

    sweep = raycl.load_sweep("raycl_sweeps/augmentation-tiny")
    cells = aggregate_seeds(sweep.trials, "knn_top1")      # mean, std, count, ci95 per cell
    matrix = pair_matrix(cells)                           # 7 x 7: first x second transformation
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from raycl.sweeps.grids import FIG5_OPS

__all__ = ["aggregate_seeds", "cell_names", "pair_matrix", "rank_agreement", "t_critical"]

# two-sided 95 % critical values of Student's t for 1..30 degrees of freedom (beyond: the normal's)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)
_RUN_COLUMNS = {"trial_id", "key", "seed", "status", "error", "skipped", "epochs", "wall_time_s",
                "checkpoint"}


def t_critical(dof: int) -> float:
    """The two-sided 95 % critical value of Student's t with ``dof`` degrees of freedom."""
    if dof < 1:
        return math.nan
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


def aggregate_seeds(trials: pd.DataFrame, value: str = "knn_top1") -> pd.DataFrame:
    """One row per cell: the cell's columns (swept values, labels, the paper's numbers) and
    ``mean``, ``std``, ``count`` and ``ci95`` (half-width of the 95 % t interval of the mean) of
    ``value`` over the seeds whose trial finished. Cells with no finished trial keep a row with
    ``count`` 0."""
    if value not in trials.columns:
        raise ValueError(f"value={value!r} is not a column of the trials table; it has "
                         f"{', '.join(map(str, trials.columns))}")
    done = (trials["status"].eq("TERMINATED") if "status" in trials.columns
            else pd.Series(True, index=trials.index))  # a table of finished runs only
    cells = trials[["cell", *_cell_columns(trials)]].drop_duplicates("cell").set_index("cell")
    values = trials.loc[done, ["cell", value]].dropna()
    stats = values.groupby("cell")[value].agg(["mean", "std", "count"])
    out = cells.drop(columns=[c for c in cells.columns if c in stats.columns]).join(stats, how="left")
    out["count"] = out["count"].fillna(0).astype(int)
    out["ci95"] = [t_critical(n - 1) * s / math.sqrt(n) if n > 1 else math.nan
                   for n, s in zip(out["count"], out["std"])]
    return out.reset_index()


def _cell_columns(trials: pd.DataFrame) -> list[str]:
    """The columns that describe a cell rather than measure a trial: the method, swept values
    (dotted keys), the paper's numbers (``paper_*``) and the cell's labels (strings or flags)."""
    out = []
    for c in trials.columns:
        if c in _RUN_COLUMNS or c == "cell":
            continue
        hashable = trials[c].map(lambda v: str(v) if isinstance(v, (list, np.ndarray)) else v)
        if not hashable.groupby(trials["cell"]).nunique(dropna=False).le(1).all():
            continue  # varies between the seeds of a cell: a measurement
        numeric = pd.api.types.is_float_dtype(trials[c]) or pd.api.types.is_integer_dtype(trials[c])
        if "." in c or c.startswith("paper_") or c == "method" or not numeric:
            out.append(c)
    return out


def pair_matrix(cells: pd.DataFrame, value: str = "mean", ops: tuple[str, ...] = FIG5_OPS) -> pd.DataFrame:
    """SimCLR Fig. 5's layout: rows the first transformation, columns the second (diagonal: one
    transformation alone), in the figure's order; cells not run are NaN."""
    missing = {"first", "second", value} - set(cells.columns)
    if missing:
        raise ValueError(f"cells lacks column(s) {sorted(missing)}; expected the pair grid's 'first' and "
                         f"'second' labels and {value!r}")
    matrix = cells.pivot_table(index="first", columns="second", values=value, aggfunc="mean")
    return matrix.reindex(index=list(ops), columns=list(ops))


def rank_agreement(ours: pd.Series, paper: pd.Series) -> float:
    """Spearman's rank correlation between our values and the paper's over the cells both have."""
    both = pd.concat([ours, paper], axis=1, keys=["ours", "paper"]).dropna()
    if len(both) < 2:
        return math.nan
    return float(both["ours"].rank().corr(both["paper"].rank()))


def cell_names(cells: pd.DataFrame) -> pd.Series:
    """A short name per cell (indexed by ``cell``): its labels (``crop + color``), else its swept
    values (``temperature=0.5``)."""
    columns = [c for c in cells.columns if c not in ("cell", "method", "mean", "std", "count", "ci95")
               and not c.startswith("paper_")]
    labels = [c for c in columns if "." not in c]
    values = [c for c in columns if "." in c]

    def name(row: pd.Series) -> str:
        if {"first", "second"} <= set(labels) and pd.notna(row["first"]):
            return f"{row['first']} + {row['second']}"
        for group in (labels, values):
            parts = [f"{c.rsplit('.', 1)[-1]}={row[c]}" for c in group if _present(row[c])]
            if parts:
                return ", ".join(parts)
        return f"cell {row['cell']}"

    return pd.Series([name(r) for _, r in cells.iterrows()], index=cells["cell"], dtype=object)


def _present(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) or pd.notna(value)

