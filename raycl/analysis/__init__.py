"""Reading sweep results: seeds aggregated per cell, each grid drawn in its paper's layout beside the
paper's numbers, the papers' findings checked, embeddings mapped, and a sweep's HTML report.

    sweep = raycl.load_sweep("raycl_sweeps/temperature-tiny")
    cells = aggregate_seeds(sweep.trials, "knn_top1")      # mean, std, count, ci95 per cell
    grid_figure(sweep.trials, "temperature")               # Table 5's curves, ours beside the paper's
    check_findings(sweep.trials, "temperature")            # the paper's claims: holds / within noise / …
    sweep_report(sweep.path)                               # <sweep>/report.html

Modules: :mod:`~raycl.analysis.stats` (numbers), :mod:`~raycl.analysis.plots` (generic figures),
:mod:`~raycl.analysis.layouts` (each grid's figure and table), :mod:`~raycl.analysis.findings`,
:mod:`~raycl.analysis.overview` (several sweeps), :mod:`~raycl.analysis.embedding` (torch, loaded
on use) and :mod:`~raycl.analysis.report`.
"""

from raycl.analysis.findings import FINDINGS, Claim, check_findings
from raycl.analysis.layouts import LAYOUTS, Layout, Metric, cell_labels, comparison, grid_figure, layout_of
from raycl.analysis.overview import all_trials, find_sweeps, load_sweeps, overview
from raycl.analysis.plots import category_plot, learning_curves, pair_heatmap, reference_bars
from raycl.analysis.report import sweep_figures, sweep_report, write_figures
from raycl.analysis.stats import aggregate_seeds, cell_names, pair_matrix, rank_agreement, t_critical

__all__ = ["FINDINGS", "LAYOUTS", "Claim", "Layout", "Metric", "aggregate_seeds", "all_trials",
           "category_plot", "cell_labels", "cell_names", "check_findings", "comparison", "embedding_map",
           "find_sweeps", "grid_figure", "layout_of", "learning_curves", "load_sweeps", "overview",
           "pair_heatmap", "pair_matrix", "rank_agreement", "reference_bars", "sweep_figures",
           "sweep_report", "t_critical", "write_figures"]


def __getattr__(name: str):
    if name == "embedding_map":  # imports torch: only when asked for
        from raycl.analysis.embedding import embedding_map

        return embedding_map
    raise AttributeError(f"module 'raycl.analysis' has no attribute {name!r}")
