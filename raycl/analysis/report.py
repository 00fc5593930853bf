"""A sweep's figures as files, and the whole sweep as one self-contained HTML page.

python -m raycl figures raycl_sweeps/temperature-tiny     # PNG + SVG into <sweep>/figures
python -m raycl report raycl_sweeps/temperature-tiny      # <sweep>/report.html
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import replace

import pandas as pd
from matplotlib.figure import Figure

from raycl.analysis.findings import check_findings
from raycl.analysis.layouts import KNN, LAYOUTS, Layout, Metric, cell_labels, comparison, grid_figure
from raycl.analysis.plots import learning_curves, reference_bars
from raycl.analysis.stats import aggregate_seeds, cell_names
from raycl.sweeps.tables import SweepResult, load_sweep

__all__ = ["best_checkpoint", "sweep_figures", "sweep_report", "write_figures"]
EMBEDDING_POINTS = 1500  # validation images in the report's embedding map


def _layout(grid: str, value: str | None) -> Layout | None:
    layout = LAYOUTS.get(grid)
    if layout is not None and value not in (None, KNN.ours) and not layout.heatmap:
        layout = replace(layout, metrics=(Metric(value, "paper_top1", value),))
    return layout


def _figures(sweep: SweepResult, value: str | None, embedding: bool) -> dict[str, Figure]:
    if not len(sweep.trials):
        raise ValueError(f"{sweep.path} holds no trials yet")
    grid = sweep.meta.get("grid", "sweep")
    figures = {}
    layout = _layout(grid, value)
    if layout is not None:
        figures["grid"] = grid_figure(sweep.trials, grid, layout)
    else:  # a grid of one's own: a bar per cell beside the paper's numbers
        cells = aggregate_seeds(sweep.trials, value or KNN.ours)
        papers = [c for c in cells.columns if c.startswith("paper_")]
        figures["grid"] = reference_bars(
            cells, cell_names(cells), papers[0] if papers else "paper_top1", title=grid
        )
    curve = value or KNN.ours
    if len(sweep.history) and curve in sweep.history.columns:
        names = cell_labels(aggregate_seeds(sweep.trials, curve), grid, layout)
        figures["curves"] = learning_curves(sweep.history, names, curve)
    best = best_checkpoint(sweep.trials, curve) if embedding else None  # reads each trial's folder
    if best:
        from raycl.analysis.embedding import embedding_map

        figures["embedding"] = embedding_map(best, max_points=EMBEDDING_POINTS)
    return figures


def best_checkpoint(trials: pd.DataFrame, value: str = "knn_top1") -> str | None:
    """The checkpoint of the trial with the highest ``value`` among those whose checkpoint is on this
    machine, or None."""
    if "checkpoint" not in trials.columns or value not in trials.columns:
        return None
    done = trials.dropna(subset=["checkpoint", value])
    done = done[done["checkpoint"].map(lambda p: os.path.isdir(str(p)))]
    return None if not len(done) else str(done.loc[done[value].idxmax(), "checkpoint"])


def write_figures(figures: dict[str, Figure], out: str, prefix: str) -> list[str]:
    os.makedirs(out, exist_ok=True)
    written = []
    for name, fig in figures.items():
        for ext in ("png", "svg"):
            file = os.path.join(out, f"{prefix}-{name}.{ext}")
            fig.savefig(file, dpi=120)
            written.append(file)
    return written


def sweep_figures(
    path: str, value: str | None = None, out: str | None = None, embedding: bool = False
) -> list[str]:
    """Write a sweep's figures as PNG and SVG into ``out`` (default ``<sweep>/figures``): the grid in
    its paper's layout beside the paper's numbers, the learning curves and, with ``embedding``, the
    best trial's validation embeddings. Returns the files written."""
    sweep = load_sweep(path)
    figures = _figures(sweep, value, embedding)
    return write_figures(figures, out or os.path.join(sweep.path, "figures"), sweep.meta.get("grid", "sweep"))


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, border=0, classes="t", na_rep="–", float_format=lambda v: f"{v:.4g}")


_STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
table.t{border-collapse:collapse;font-size:12.5px}table.t td,table.t th{padding:3px 9px;
border-bottom:1px solid #eee;text-align:right}table.t th{background:#f4f4f4}
img{max-width:100%;border:1px solid #eee}pre{background:#f8f8f8;padding:.6em;overflow:auto;font-size:12px}
.holds{color:#1a7f37}.reversed,.does{color:#b42318}.within{color:#9a6700}dl{display:grid;
grid-template-columns:max-content auto;gap:2px 14px}dt{font-weight:600}dd{margin:0}"""


def sweep_report(path: str, out: str | None = None, value: str | None = None, embedding: bool = True) -> str:
    """Write ``<sweep>/report.html`` (or ``out``): the sweep's settings, the paper's claims checked,
    ours beside the paper per cell, every figure embedded, each trial and the failed trials' errors.
    The file holds everything it shows (images inline). Returns its path."""
    sweep = load_sweep(path)
    meta, trials = sweep.meta, sweep.trials
    grid = meta.get("grid", "sweep")
    figures = _figures(sweep, value, embedding)
    status = trials["status"].value_counts().to_dict() if "status" in trials.columns else {}
    settings = {
        "grid": f"{grid} ({meta.get('source', '')})",
        "question": meta.get("question", ""),
        "method": meta.get("method", ""),
        "preset": meta.get("preset", ""),
        "seeds": ", ".join(map(str, meta.get("seeds", []))),
        "overrides": json.dumps({**meta.get("grid_preset", {}), **meta.get("overrides", {})}),
        "evaluated": ", ".join(meta.get("evaluate", [])) or "kNN monitor only",
        "trials": ", ".join(f"{n} {s.lower()}" for s, n in status.items()) or str(len(trials)),
        "wall time": f"{trials['wall_time_s'].sum() / 60:.1f} min of trials"
        if "wall_time_s" in trials.columns
        else "",
        "the paper's numbers": meta.get("reference_note", "") or "none printed",
        "the paper's finding": meta.get("finding", ""),
        "versions": ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
    }
    parts = [f"<h1>{html.escape(grid)}: {html.escape(meta.get('source', ''))}</h1>", "<dl>"]
    parts += [f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in settings.items() if v]
    parts.append("</dl>")
    findings = check_findings(trials, grid)
    if len(findings):
        parts.append("<h2>The paper's findings, here</h2>")
        rows = "".join(
            f"<tr><td style='text-align:left'>{html.escape(r.claim)}</td><td class="
            f"'{r.verdict.split()[0]}'>{html.escape(r.verdict)}</td><td>{html.escape(r.ours)}</td></tr>"
            for r in findings.itertuples()
        )
        parts.append(f"<table class='t'><tr><th>claim</th><th>here</th><th>ours</th></tr>{rows}</table>")
    parts.append("<h2>Ours beside the paper</h2>" + _table(comparison(trials, grid, _layout(grid, value))))
    titles = {
        "grid": "The grid in the paper's layout",
        "curves": "Learning curves",
        "embedding": "Embeddings of the best trial's checkpoint",
    }
    for name, fig in figures.items():
        parts.append(
            f"<h2>{titles.get(name, name)}</h2><img alt='{name}' id='fig-{name}' "
            f"src='data:image/png;base64,{_png(fig)}'>"
        )
    shown = [
        c
        for c in [
            "key",
            "seed",
            "status",
            "epochs",
            "knn_top1",
            "best_knn_top1",
            "pretext_top1",
            "wall_time_s",
        ]
        if c in trials.columns
    ]
    labels = [
        c for c in trials.columns if "." in c or c in ("first", "second", "head", "crops", "augmentations")
    ]
    evaluated = [c for c in trials.columns if c.endswith("_val_top1")]
    parts.append(
        "<h2>Trials</h2>" + _table(trials[list(dict.fromkeys([*shown[:2], *labels, *shown[2:], *evaluated]))])
    )
    if "status" in trials.columns:
        failed = (
            trials[trials["status"].isin(["ERROR"]) | trials["error"].notna()]
            if "error" in trials.columns
            else trials.iloc[:0]
        )
        if len(failed):
            parts.append(f"<h2>Failed trials ({len(failed)})</h2>")
            parts += [
                f"<h3>{html.escape(str(r.key))}</h3><pre>{html.escape(str(r.error))}</pre>"
                for r in failed.itertuples()
            ]
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>raycl: {html.escape(grid)}"
        f"</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    out = out or os.path.join(sweep.path, "report.html")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, out)
    return out
