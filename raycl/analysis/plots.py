"""Figures of sweep results, each a function from DataFrames to a matplotlib ``Figure``.

Figures are built on ``matplotlib.figure.Figure`` rather than pyplot: nothing is shown or kept in a
global registry, files are written with ``fig.savefig`` and a notebook displays the returned figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from raycl.analysis.stats import cell_names, rank_agreement

__all__ = ["category_plot", "learning_curves", "pair_heatmap", "reference_bars"]
MAX_LEGEND = 12  # curves named in a legend; more cells than that are drawn unnamed
OURS, PAPER = "#4c72b0", "#dd8452"
LINESTYLES = ("-", "--", ":")


def _text_colour(v: float, low: float, high: float) -> str:
    return "white" if (v - low) / max(high - low, 1e-12) < 0.6 else "black"  # viridis is dark below


def pair_heatmap(
    matrix: pd.DataFrame, title: str = "Views from pairs of transformations", label: str = "kNN top-1"
) -> Figure:
    """A :func:`~raycl.analysis.pair_matrix` as SimCLR's Fig. 5: a value in every cell, the 1st
    transformation down, the 2nd across, row means at the side."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    values = matrix.to_numpy(dtype=float)
    fig = Figure(figsize=(8.2, 6.6))
    ax = fig.subplots()
    divider = make_axes_locatable(ax)  # side panels exactly as tall as the matrix
    side = divider.append_axes("right", size="13%", pad=0.12)
    bar = divider.append_axes("right", size="4%", pad=0.45)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    image = ax.imshow(values, cmap="viridis", vmin=low, vmax=high)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=9, color=_text_colour(v, low, high))
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(len(matrix.index)), matrix.index)
    ax.set_xlabel("2nd transformation")
    ax.set_ylabel("1st transformation")
    ax.set_title(title)
    means = matrix.mean(axis=1).to_numpy(dtype=float)[:, None]  # NaN only for a row with no cell run
    side.imshow(
        means, cmap="viridis", vmin=low, vmax=high, aspect="auto", extent=(-0.5, 0.5, len(means) - 0.5, -0.5)
    )
    for i, v in enumerate(means[:, 0]):
        if np.isfinite(v):
            side.text(
                0, i, f"{v:.3f}", ha="center", va="center", fontsize=9, color=_text_colour(v, low, high)
            )
    side.set_xticks([0], ["row mean"])
    side.set_yticks([])
    fig.colorbar(image, cax=bar, label=label)
    fig.tight_layout()
    return fig


def learning_curves(
    history: pd.DataFrame,
    names: pd.Series | None = None,
    value: str = "knn_top1",
    label: str = "kNN top-1 (validation)",
) -> Figure:
    """``value`` per epoch for each cell of a sweep's ``history`` table: the mean over seeds, with a
    band of ±1 standard deviation where a cell has several seeds. ``names``: a name per cell (e.g.
    :func:`~raycl.analysis.cell_names`)."""
    import matplotlib
    import matplotlib.ticker

    stats = (
        history.dropna(subset=[value])
        .groupby(["cell", "epoch"])[value]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.subplots()
    cells = stats["cell"].unique()
    colours = len(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
    for i, (cell, curve) in enumerate(stats.groupby("cell")):
        name = names.get(cell, f"cell {cell}") if names is not None else f"cell {cell}"
        (line,) = ax.plot(
            curve["epoch"],
            curve["mean"],
            marker="o",
            markersize=3,
            linestyle=LINESTYLES[(i // colours) % len(LINESTYLES)],  # colours repeat after the cycle
            label=name if len(cells) <= MAX_LEGEND else None,
        )
        several = curve["count"] > 1
        if several.any():
            ax.fill_between(
                curve["epoch"][several],
                (curve["mean"] - curve["std"])[several],
                (curve["mean"] + curve["std"])[several],
                color=line.get_color(),
                alpha=0.2,
            )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0: before training)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if len(cells) <= MAX_LEGEND:
        ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Learning curves: {len(cells)} cells, mean over seeds (band: ±1 std)")
    fig.tight_layout()
    return fig


def reference_bars(
    cells: pd.DataFrame,
    names: pd.Series | None = None,
    reference: str = "paper_top1",
    title: str = "",
    label: str = "kNN top-1 (ours)",
    reference_label: str = "the paper's value",
) -> Figure:
    """One bar per cell (our mean, 95 % interval as error bars where there are seeds) and the paper's
    number for the cell as a marker on its own axis at the right, so the two orderings can be compared
    even though the scales differ. The title gives Spearman's ρ."""
    names = cell_names(cells) if names is None else names
    x = np.arange(len(cells))
    fig = Figure(figsize=(max(5.5, 1.1 * len(cells) + 2), 4.6))
    ax = fig.subplots()
    ax.bar(x, cells["mean"], yerr=cells["ci95"], capsize=4, color=OURS, label=label)  # NaN: 1 seed
    finite = cells["mean"][np.isfinite(cells["mean"])]
    if len(finite):
        span = finite.max() - finite.min()
        ax.set_ylim(max(0.0, finite.min() - 2 * span - 0.02), finite.max() + span + 0.03)
    base = ax.get_ylim()[0]
    for xi, m in enumerate(cells["mean"]):  # our value at the foot of its bar, clear of the markers
        ax.text(
            xi,
            base,
            f"{m:.3f}" if np.isfinite(m) else "no run",
            ha="center",
            va="bottom",
            fontsize=8,
            color="white" if np.isfinite(m) else "grey",
        )
    ax.set_xticks(x, [names.get(c, str(c)) for c in cells["cell"]], rotation=20, ha="right")
    ax.set_ylabel(label)
    rho = math.nan
    if reference in cells.columns and cells[reference].notna().any():
        right = ax.twinx()
        right.plot(x, cells[reference], "D", color=PAPER, markersize=8, label=reference_label)
        for xi, v in zip(x, cells[reference]):
            if np.isfinite(v):
                right.annotate(
                    f"{v:g}", (xi, v), textcoords="offset points", xytext=(9, -3), fontsize=8, color=PAPER
                )
        refs = cells[reference].dropna()
        pad = max(refs.max() - refs.min(), 1e-6)
        right.set_ylim(refs.min() - 0.3 * pad, refs.max() + 0.15 * pad)  # markers clear of the values
        right.set_ylabel(reference_label, color=PAPER)
        rho = rank_agreement(cells["mean"].reset_index(drop=True), cells[reference].reset_index(drop=True))
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    heading = title + (f" (Spearman's ρ with the paper: {rho:.2f})" if np.isfinite(rho) else "")
    ax.set_title(heading.strip(), fontsize=11)
    fig.tight_layout()
    return fig


def category_plot(
    ax,
    table: pd.DataFrame,
    x: str,
    series: str | None,
    kind: str,
    *,
    error: str | None = "ci95",
    log_x: bool = False,
    series_names: Callable | None = None,
    colours: Sequence[str] | None = None,
    value_format: str = "{:.3f}",
    order: Sequence | None = None,
) -> None:
    """Draw ``table``'s ``mean`` by ``x`` (one line or bar group per value of ``series``) on ``ax``.

    ``kind`` is ``"lines"`` (x numeric, log-scaled with ``log_x``, else evenly spaced categories in
    the table's order, or ``order``'s) or ``"bars"`` (x as groups, one bar per series value within a
    group, the value written above each bar). ``error`` names a column of half-widths drawn as error
    bars. Pass the same ``order`` to panels that should share their categories."""
    groups = list(order) if order is not None else list(dict.fromkeys(table[x]))
    table = table[np.isfinite(table["mean"].astype(float))]
    keys = list(dict.fromkeys(table[series])) if series else [None]
    colours = colours or [f"C{i}" for i in range(len(keys))]
    numeric = kind == "lines" and log_x
    present = {
        g: [k for k in keys if k is None or ((table[x] == g) & (table[series] == k)).any()] for g in groups
    }  # bars of a group are centred on it, however many series it has
    width = 0.8 / max(1, max((len(v) for v in present.values()), default=1))
    written = []  # (x, value) of every bar, annotated once the axis range is known
    for k, (key, colour) in enumerate(zip(keys, colours)):
        part = table if key is None else table[table[series] == key]
        if not len(part):
            continue
        pos = (
            part[x].astype(float).to_numpy()
            if numeric
            else np.array([groups.index(g) for g in part[x]], dtype=float)
        )
        err = part[error].to_numpy(dtype=float) if error and error in part.columns else None
        name = None if key is None else (series_names(key) if series_names else f"{series}={key}")
        if kind == "lines":
            order = np.argsort(pos, kind="stable")
            ax.errorbar(
                pos[order],
                part["mean"].to_numpy()[order],
                yerr=None if err is None else err[order],
                marker="o",
                capsize=3,
                color=colour,
                label=name,
                elinewidth=1,
            )
        else:
            at = np.array(
                [
                    i + (present[g].index(key) - (len(present[g]) - 1) / 2) * width
                    for i, g in zip(pos.astype(int), part[x])
                ]
            )
            ax.bar(
                at,
                part["mean"],
                width * 0.92,
                yerr=err,
                capsize=3,
                color=colour,
                label=name,
                error_kw={"elinewidth": 1, "ecolor": "#444"},
            )
            written += list(zip(at, part["mean"]))
    if numeric:
        ax.set_xscale("log")
        ticks = sorted({float(g) for g in groups})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    else:
        widest = max((len(str(g)) for g in groups), default=0)
        crowded = sum(len(str(g)) for g in groups) > 48 or widest * len(groups) > 60  # labels would touch
        ax.set_xticks(
            range(len(groups)),
            [str(g) for g in groups],
            rotation=25 if crowded else 0,
            ha="right" if crowded else "center",
        )
    if kind == "bars" and len(table):
        low, high = float(table["mean"].min()), float(table["mean"].max())
        span = max(high - low, 0.02 * max(abs(high), 1e-6))
        ax.set_ylim(max(0.0, low - 1.5 * span), high + 0.4 * span)
        base = ax.get_ylim()[0]
        for xi, v in written:  # each value at the foot of its bar, clear of the error bars
            ax.annotate(value_format.format(v), (xi, base), textcoords="offset points", xytext=(0, 3),
                        ha="center", va="bottom", fontsize=7, color="white",
                        rotation=90 if len(keys) > 2 else 0)
    ax.grid(alpha=0.3, axis="y")
    if series and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
