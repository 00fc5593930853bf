"""Each grid of :mod:`raycl.sweeps.grids` drawn in its paper's layout, ours beside the paper's numbers.

A :class:`Layout` says what goes along the x axis, which cell column makes separate lines or bars and
which metrics are drawn; :func:`grid_figure` draws one row per metric, ours (mean over seeds, 95 %
intervals) on the left and the paper's numbers in the same layout on the right, with Spearman's ρ
between the two orderings. :func:`comparison` is the same thing as a table::

    sweep = raycl.load_sweep("raycl_sweeps/temperature-tiny")
    grid_figure(sweep.trials, "temperature").savefig("table5.png")
    comparison(sweep.trials, "temperature")        # cell, ours ± ci95, seeds, the paper's value
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from raycl.analysis.plots import OURS, PAPER, category_plot, pair_heatmap
from raycl.analysis.stats import aggregate_seeds, cell_names, pair_matrix, rank_agreement
from raycl.sweeps.grids import GRIDS, IMAGENET_TOP1

__all__ = ["KNN", "LAYOUTS", "Layout", "Metric", "cell_labels", "comparison", "grid_figure", "layout_of"]


@dataclass(frozen=True)
class Metric:
    """A measurement drawn in its own row: our column, the paper's column for it, labels of both."""

    ours: str
    paper: str | None
    label: str
    paper_label: str = "top-1 (%)"


KNN = Metric("knn_top1", "paper_top1", "kNN top-1 (validation)", IMAGENET_TOP1.split(", ")[0])
PRETEXT = Metric(
    "pretext_top1", "paper_pretext_top1", "contrastive accuracy (pretext top-1)", "contrastive accuracy (%)"
)
LINEAR_H = Metric("linear_val_top1", "paper_top1", "linear probe on h (validation)", KNN.paper_label)
LINEAR_Z = Metric("linear_z_val_top1", None, "linear probe on z = g(h) (validation)")
FINETUNE10 = Metric("finetune10_val_top1", None, "fine-tuned on 10 % of labels (validation)")


@dataclass(frozen=True)
class Layout:
    """How a grid is drawn: ``x`` (a cell column, or a function of the cells table giving one value
    per cell), ``series`` (a cell column: one line or bar colour per value), ``kind`` ("lines" or
    "bars"), the metrics in preference order (those a sweep did not measure are left out; kNN when
    none was)."""

    kind: str
    x: str | Callable[[pd.DataFrame], pd.Series]
    x_label: str
    series: str | None = None
    series_names: Mapping | Callable | None = None
    log_x: bool = False
    metrics: tuple[Metric, ...] = (KNN,)
    heatmap: bool = False  # SimCLR Fig. 5: the pair matrix instead
    notes: Mapping[str, str] = field(default_factory=dict)

    def series_name(self, value) -> str:
        if self.series_names is None:
            return f"{self.series}={value}"
        if callable(self.series_names):
            return self.series_names(value)
        return self.series_names.get(value, str(value))

    def x_values(self, cells: pd.DataFrame) -> pd.Series:
        return (self.x(cells) if callable(self.x) else cells[self.x]).reset_index(drop=True)


def _fraction(v: float) -> str:
    return {0.125: "1/8", 0.25: "1/4", 0.5: "1/2"}.get(float(v), f"{v:g}")


def _strength(c: pd.DataFrame) -> pd.Series:
    return c["augment.color_strength"].map(_fraction) + c["augment.blur"].map({True: " + blur", False: ""})


def _head_dim(c: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [
            ("no head" if h == "none" else f"{int(d)}")
            for h, d in zip(c["head"], c.get("model.proj_out_dim", pd.Series(np.nan, index=c.index)))
        ]
    )


def _mocov2(c: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [
            " + ".join(n for n, on in (("MLP", m), ("aug+", a), ("cos", s)) if on) or "MoCo v1"
            for m, a, s in zip(c["mlp"], c["aug_plus"], c["cos"])
        ]
    )


def _momentum(c: pd.DataFrame) -> pd.Series:
    return c["method.momentum"].map(lambda m: f"{m:g}")


LAYOUTS: dict[str, Layout] = {
    "augmentation": Layout("bars", "first", "1st transformation", heatmap=True),
    "color_strength": Layout("bars", _strength, "colour distortion strength"),
    "temperature": Layout(
        "lines",
        "method.temperature",
        "temperature τ",
        series="method.normalize",
        series_names={True: "ℓ2-normalised", False: "no ℓ2 normalisation"},
        log_x=True,
        metrics=(KNN, PRETEXT),
    ),
    "projection_head": Layout(
        "bars",
        _head_dim,
        "projection output dimensionality",
        series="head",
        series_names=str,
        metrics=(LINEAR_H, LINEAR_Z),
    ),
    "simclrv2_head": Layout(
        "lines",
        "finetune_from",
        "fine-tuned from",
        series="model.proj_depth",
        series_names=lambda d: f"{d}-layer head",
        metrics=(FINETUNE10, LINEAR_H),
    ),
    "batch_size": Layout(
        "bars",
        "train.epochs",
        "training epochs",
        series="train.batch_size",
        series_names=lambda b: f"batch {b}",
    ),
    "moco_momentum": Layout("lines", _momentum, "momentum m"),
    "mocov2_ablation": Layout("bars", _mocov2, "changes over MoCo v1"),
    "mocov2_temperature": Layout(
        "lines",
        "method.temperature",
        "temperature τ",
        series="mlp",
        series_names={True: "MLP head", False: "linear head"},
    ),
    "byol_batch": Layout(
        "lines", "train.batch_size", "batch size", series="method", series_names=str, log_x=True
    ),
    "byol_tau": Layout("lines", _momentum, "target decay τ_base"),
    "byol_augmentations": Layout(
        "bars", "augmentations", "transformations", series="method", series_names=str
    ),
    "swav_multicrop": Layout("bars", "crops", "crops per image", series="method", series_names=str),
    "swav_prototypes": Layout("lines", "method.prototypes", "prototypes K", log_x=True),
}


def layout_of(grid: str) -> Layout | None:
    """The layout of a grid of :data:`raycl.sweeps.GRIDS` (None for a grid of one's own)."""
    return LAYOUTS.get(grid)


def _metrics(trials: pd.DataFrame, layout: Layout) -> list[Metric]:
    ran = [m for m in layout.metrics if m.ours in trials.columns and trials[m.ours].notna().any()]
    return ran or [KNN]


def _cells(trials: pd.DataFrame, metric: Metric, layout: Layout) -> pd.DataFrame:
    cells = aggregate_seeds(trials, metric.ours)
    cells["x"] = layout.x_values(cells).to_numpy()
    return cells


def grid_figure(trials: pd.DataFrame, grid: str, layout: Layout | None = None) -> Figure:
    """The grid's figure: a row per metric; ours with 95 % intervals at the left, the paper's numbers
    in the same layout at the right where the paper prints them."""
    layout = layout or LAYOUTS[grid]
    spec = GRIDS.get(grid)
    if layout.heatmap:
        cells = aggregate_seeds(trials, KNN.ours)
        return pair_heatmap(
            pair_matrix(cells),
            title=f"{spec.source if spec else grid}: views from pairs of transformations",
            label=KNN.label,
        )
    metrics = _metrics(trials, layout)
    rows = [(m, _cells(trials, m, layout)) for m in metrics]
    with_paper = any(m.paper in c.columns and c[m.paper].notna().any() for m, c in rows if m.paper)
    stack = layout.kind == "bars" and len(rows[0][1]) > 8  # many bars: ours above the paper's, full width
    columns = 2 if with_paper and not stack else 1
    per_row = 2 if with_paper and stack else 1
    fig = Figure(
        figsize=(13.0 if stack else 6.3 * columns if columns == 2 else 8.5, 3.9 * len(rows) * per_row)
    )
    axes = fig.subplots(len(rows) * per_row, columns, squeeze=False).reshape(len(rows), -1)
    for (metric, cells), row in zip(rows, axes):
        draw = dict(
            series=layout.series,
            kind=layout.kind,
            log_x=layout.log_x,
            order=list(dict.fromkeys(cells["x"])),
            series_names=layout.series_name if layout.series else None,
        )
        category_plot(row[0], cells, "x", colours=None if layout.series else [OURS], **draw)
        row[0].set_ylabel(metric.label)
        paper = metric.paper if metric.paper and metric.paper in cells.columns else None
        rho = rank_agreement(cells["mean"], cells[paper]) if paper else math.nan
        seeds = int(cells["count"].max()) if "count" in cells.columns and len(cells) else 0
        row[0].set_title(
            ("ours: mean over seeds, 95 % interval" if seeds > 1 else "ours: one seed, no interval")
            + (f"  (Spearman ρ with the paper {rho:.2f})" if np.isfinite(rho) else ""),
            fontsize=10,
        )
        if with_paper:
            theirs = cells.assign(mean=cells[paper]) if paper else cells.iloc[:0]
            if paper and theirs["mean"].notna().any():
                category_plot(
                    row[1],
                    theirs.dropna(subset=["mean"]),
                    "x",
                    error=None,
                    colours=None if layout.series else [PAPER],
                    value_format="{:g}",
                    **draw,
                )
                row[1].set_ylabel(metric.paper_label)
                note = spec.reference_note.split(", ", 1)[-1] if spec and metric.paper == KNN.paper else ""
                row[1].set_title(
                    f"the paper: {spec.source if spec else grid}" + (f" ({note})" if note else ""),
                    fontsize=10,
                )
            else:
                row[1].set_axis_off()
        for ax in row:
            if ax.axison:
                ax.set_xlabel(layout.x_label)
    fig.suptitle(f"{spec.source}: {spec.question}" if spec else grid, fontsize=11, wrap=True)
    fig.tight_layout()
    return fig


def cell_labels(cells: pd.DataFrame, grid: str, layout: Layout | None = None) -> pd.Series:
    """A name per cell (indexed by ``cell``) in the paper's terms: the layout's x value and series
    (``1/2``, ``0.1 · ℓ2-normalised``), else :func:`~raycl.analysis.cell_names`."""
    layout = layout or LAYOUTS.get(grid)
    if layout is None or layout.heatmap:
        return cell_names(cells)
    names = layout.x_values(cells).astype(str)
    if layout.series:
        names = names + " · " + cells[layout.series].map(layout.series_name).reset_index(drop=True)
    return pd.Series(names.to_numpy(), index=cells["cell"].to_numpy(), dtype=object)


def comparison(trials: pd.DataFrame, grid: str, layout: Layout | None = None) -> pd.DataFrame:
    """One row per cell: its name in the paper's terms, ours (mean, 95 % half-width, seeds) for each
    metric the sweep measured, and the paper's numbers."""
    layout = layout or LAYOUTS.get(grid)
    out = None
    for metric in _metrics(trials, layout) if layout else [KNN]:
        cells = aggregate_seeds(trials, metric.ours)
        if out is None:
            names = cell_labels(cells, grid, layout)
            out = pd.DataFrame({"cell": cells["cell"], "name": names.to_numpy(), "seeds": cells["count"]})
            for p in [c for c in cells.columns if c.startswith("paper_")]:
                out[p] = cells[p].to_numpy()
        out[metric.ours] = cells["mean"].to_numpy()
        out[f"{metric.ours}_ci95"] = cells["ci95"].to_numpy()
    return out
