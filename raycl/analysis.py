"""Reading sweep results: seeds aggregated per cell, SimCLR's pair grid as a matrix, the papers'
numbers beside ours, and the Fig. 5 heat map.

Works on the ``trials`` table of :func:`raycl.load_sweep` (one row per cell and seed)::

    sweep = raycl.load_sweep("raycl_sweeps/augmentation-tiny")
    cells = aggregate_seeds(sweep.trials, "knn_top1")      # mean, std, count, ci95 per cell
    matrix = pair_matrix(cells)                           # 7 x 7: first x second transformation
    pair_heatmap(matrix).savefig("fig5.png")
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from raycl.sweeps.grids import FIG5_OPS
from raycl.sweeps.tables import load_sweep

__all__ = ["aggregate_seeds", "cell_names", "learning_curves", "pair_heatmap", "pair_matrix",
           "rank_agreement", "reference_bars", "sweep_figures", "t_critical"]
MAX_LEGEND = 12  # curves named in a legend; more cells than that are drawn unnamed

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


def pair_heatmap(matrix: pd.DataFrame, title: str = "Views from pairs of transformations",
                 label: str = "kNN top-1"):
    """A matplotlib Figure of a :func:`pair_matrix`: a value in every cell, row means at the side,
    as SimCLR's Fig. 5."""
    import matplotlib

    matplotlib.use("Agg")  # headless: figures are written to files
    import matplotlib.pyplot as plt
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    values = matrix.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(8.2, 6.6))
    divider = make_axes_locatable(ax)  # side panels exactly as tall as the matrix
    side = divider.append_axes("right", size="13%", pad=0.12)
    bar = divider.append_axes("right", size="4%", pad=0.45)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    image = ax.imshow(values, cmap="viridis", vmin=low, vmax=high)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            light = (v - low) / max(high - low, 1e-12) < 0.6
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=9,
                    color="white" if light else "black")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(matrix.index)), matrix.index)
    ax.set_xlabel("2nd transformation")
    ax.set_ylabel("1st transformation")
    ax.set_title(title)
    means = matrix.mean(axis=1).to_numpy(dtype=float)[:, None]  # NaN only for a row with no cell run
    side.imshow(means, cmap="viridis", vmin=low, vmax=high, aspect="auto",
                extent=(-0.5, 0.5, len(means) - 0.5, -0.5))
    for i, v in enumerate(means[:, 0]):
        if np.isfinite(v):
            side.text(0, i, f"{v:.3f}", ha="center", va="center", fontsize=9,
                      color="white" if (v - low) / max(high - low, 1e-12) < 0.6 else "black")
    side.set_xticks([0], ["row mean"])
    side.set_yticks([])
    fig.colorbar(image, cax=bar, label=label)
    fig.tight_layout()
    return fig


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


def learning_curves(history: pd.DataFrame, names: pd.Series | None = None, value: str = "knn_top1",
                    label: str = "kNN top-1 (validation)"):
    """A matplotlib Figure of ``value`` per epoch for each cell of a sweep's ``history`` table: the
    mean over seeds, with a band of ±1 standard deviation where a cell has several seeds. ``names``:
    a name per cell (e.g. :func:`cell_names`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    stats = (history.dropna(subset=[value]).groupby(["cell", "epoch"])[value]
             .agg(["mean", "std", "count"]).reset_index())
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    cells = stats["cell"].unique()
    for cell, curve in stats.groupby("cell"):
        name = names.get(cell, f"cell {cell}") if names is not None else f"cell {cell}"
        line, = ax.plot(curve["epoch"], curve["mean"], marker="o", markersize=3,
                        label=name if len(cells) <= MAX_LEGEND else None)
        several = curve["count"] > 1
        if several.any():
            ax.fill_between(curve["epoch"][several], (curve["mean"] - curve["std"])[several],
                            (curve["mean"] + curve["std"])[several], color=line.get_color(), alpha=0.2)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0: before training)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if len(cells) <= MAX_LEGEND:
        ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Learning curves: {len(cells)} cells, mean over seeds (band: ±1 std)")
    fig.tight_layout()
    return fig


def reference_bars(cells: pd.DataFrame, names: pd.Series | None = None, reference: str = "paper_top1",
                   title: str = "", label: str = "kNN top-1 (ours)",
                   reference_label: str = "the paper's value"):
    """A matplotlib Figure with one bar per cell (our mean, 95 % interval as error bars where there are
    seeds) and the paper's number for the cell as a marker on its own axis at the right, so the two
    orderings can be compared even though the scales differ. The title gives Spearman's ρ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = cell_names(cells) if names is None else names
    x = np.arange(len(cells))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(cells) + 2), 4.6))
    ax.bar(x, cells["mean"], yerr=cells["ci95"], capsize=4, color="#4c72b0", label=label)  # NaN: 1 seed
    finite = cells["mean"][np.isfinite(cells["mean"])]
    if len(finite):
        span = finite.max() - finite.min()
        ax.set_ylim(max(0.0, finite.min() - 2 * span - 0.02), finite.max() + span + 0.03)
    base = ax.get_ylim()[0]
    for xi, m in enumerate(cells["mean"]):  # our value at the foot of its bar, clear of the markers
        ax.text(xi, base, f"{m:.3f}" if np.isfinite(m) else "no run", ha="center", va="bottom",
                fontsize=8, color="white" if np.isfinite(m) else "grey")
    ax.set_xticks(x, [names.get(c, str(c)) for c in cells["cell"]], rotation=20, ha="right")
    ax.set_ylabel(label)
    rho = math.nan
    if reference in cells.columns and cells[reference].notna().any():
        right = ax.twinx()
        right.plot(x, cells[reference], "D", color="#dd8452", markersize=8, label=reference_label)
        for xi, v in zip(x, cells[reference]):
            if np.isfinite(v):
                right.annotate(f"{v:g}", (xi, v), textcoords="offset points", xytext=(9, -3), fontsize=8,
                               color="#dd8452")
        refs = cells[reference].dropna()
        pad = max(refs.max() - refs.min(), 1e-6)
        right.set_ylim(refs.min() - 0.3 * pad, refs.max() + 0.15 * pad)  # markers clear of the values
        right.set_ylabel(reference_label, color="#dd8452")
        rho = rank_agreement(cells["mean"].reset_index(drop=True), cells[reference].reset_index(drop=True))
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    heading = title + (f" (Spearman's ρ with the paper: {rho:.2f})" if np.isfinite(rho) else "")
    ax.set_title(heading.strip(), fontsize=11)
    fig.tight_layout()
    return fig


def sweep_figures(path: str, value: str = "knn_top1", out: str | None = None) -> list[str]:
    """Write a sweep's figures as PNG and SVG into ``out`` (default ``<sweep>/figures``): the Fig. 5
    heat map for a pair grid, else bars of each cell beside the paper's numbers; and the learning
    curves. Returns the files written."""
    import matplotlib.pyplot as plt

    sweep = load_sweep(path)
    if not len(sweep.trials):
        raise ValueError(f"{path} holds no trials yet")
    out = out or f"{sweep.path}/figures"
    os.makedirs(out, exist_ok=True)
    cells = aggregate_seeds(sweep.trials, value)
    names = cell_names(cells)
    grid = sweep.meta.get("grid", "sweep")
    figures = {}
    if {"first", "second"} <= set(cells.columns):
        figures["pairs"] = pair_heatmap(pair_matrix(cells),
                                        title=f"{grid}: views from pairs of transformations")
    else:
        papers = [c for c in cells.columns if c.startswith("paper_")]
        figures["cells"] = reference_bars(cells, names, papers[0] if papers else "paper_top1", title=grid)
    if len(sweep.history) and value in sweep.history.columns:
        figures["curves"] = learning_curves(sweep.history, names, value)
    written = []
    for name, fig in figures.items():
        for ext in ("png", "svg"):
            file = os.path.join(out, f"{grid}-{name}.{ext}")
            fig.savefig(file, dpi=120)
            written.append(file)
        plt.close(fig)
    return written
