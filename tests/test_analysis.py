"""The analysis API on small hand-made trials tables with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from raycl.analysis import aggregate_seeds, pair_heatmap, pair_matrix, rank_agreement, t_critical


def _trials() -> pd.DataFrame:
    rows = []
    for cell, (first, second, paper, values) in enumerate([
            ("crop", "color", 56.3, [0.50, 0.52, 0.54]),
            ("color", "crop", 55.0, [0.40, 0.44]),
            ("crop", "crop", 30.0, [0.30]),
            ("blur", "blur", 20.0, [])]):
        for seed, v in enumerate(values or [None]):
            rows.append({"trial_id": f"t{cell}{seed}", "key": f"c{cell:03d}-s{seed}", "cell": cell,
                         "seed": seed, "first": first, "second": second, "paper_top1": paper,
                         "augment.recipe": f"pair:{first},{second}",
                         "status": "TERMINATED" if v is not None else "ERROR", "knn_top1": v,
                         "wall_time_s": 10.0 + seed})
    return pd.DataFrame(rows)


def test_seeds_aggregate_to_mean_std_count_and_t_interval():
    cells = aggregate_seeds(_trials(), "knn_top1").set_index("cell")
    assert cells.loc[0, "mean"] == pytest.approx(0.52) and cells.loc[0, "std"] == pytest.approx(0.02)
    assert cells.loc[0, "ci95"] == pytest.approx(4.303 * 0.02 / math.sqrt(3))  # t(0.975, 2 dof)
    assert cells.loc[1, "ci95"] == pytest.approx(12.706 * np.std([0.40, 0.44], ddof=1) / math.sqrt(2))
    assert cells.loc[2, "count"] == 1 and math.isnan(cells.loc[2, "ci95"])
    assert cells.loc[3, "count"] == 0 and math.isnan(cells.loc[3, "mean"])  # a failed cell keeps its row
    assert {"first", "second", "paper_top1", "augment.recipe"} <= set(cells.columns)
    assert "wall_time_s" not in cells.columns and "seed" not in cells.columns
    one_seed = aggregate_seeds(_trials()[lambda t: t["seed"] == 0])  # a metric is not a cell column
    assert "knn_top1" not in one_seed.columns and one_seed["count"].tolist() == [1, 1, 1, 0]
    no_status = aggregate_seeds(_trials().dropna(subset=["knn_top1"]).drop(columns=["status"]))
    assert no_status["count"].tolist() == [3, 2, 1]
    with pytest.raises(ValueError, match="value='top1' is not a column"):
        aggregate_seeds(_trials(), "top1")


def test_t_critical_values():
    assert (t_critical(1), t_critical(10), t_critical(30), t_critical(500)) == (12.706, 2.228, 2.042, 1.96)
    assert math.isnan(t_critical(0))


def test_pair_matrix_is_first_by_second_in_the_figures_order():
    matrix = pair_matrix(aggregate_seeds(_trials()))
    assert list(matrix.index) == list(matrix.columns) == ["crop", "cutout", "color", "sobel", "noise",
                                                          "blur", "rotate"]
    assert matrix.loc["crop", "color"] == pytest.approx(0.52)  # row: first, column: second
    assert matrix.loc["color", "crop"] == pytest.approx(0.42)
    assert matrix.loc["crop", "crop"] == pytest.approx(0.30) and np.isnan(matrix.loc["blur", "blur"])
    with pytest.raises(ValueError, match="lacks column"):
        pair_matrix(pd.DataFrame({"mean": [1.0]}))


def test_rank_agreement_is_spearman_over_shared_cells():
    cells = aggregate_seeds(_trials())
    assert rank_agreement(cells["mean"], cells["paper_top1"]) == pytest.approx(1.0)
    assert rank_agreement(pd.Series([1.0, 2.0, 3.0]), pd.Series([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert math.isnan(rank_agreement(pd.Series([1.0]), pd.Series([2.0])))


def test_pair_heatmap_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    ops = ["crop", "cutout", "color", "sobel", "noise", "blur", "rotate"]
    trials = pd.DataFrame([{"cell": i * 7 + j, "first": a, "second": b, "status": "TERMINATED",
                            "knn_top1": 0.3 + 0.1 * rng.random()} for i, a in enumerate(ops)
                           for j, b in enumerate(ops)])
    fig = pair_heatmap(pair_matrix(aggregate_seeds(trials)))
    fig.savefig(tmp_path / "fig5.png", dpi=80)
    assert (tmp_path / "fig5.png").stat().st_size > 10_000


def test_cell_names_and_learning_curves(tmp_path):
    from raycl.analysis import cell_names, learning_curves

    cells = aggregate_seeds(_trials())
    names = cell_names(cells)
    assert names[0] == "crop + color" and names[3] == "blur + blur"
    temps = aggregate_seeds(pd.DataFrame({"cell": [0, 1], "method.temperature": [0.1, 0.5],
                                          "status": "TERMINATED", "knn_top1": [0.3, 0.4]}))
    assert cell_names(temps).tolist() == ["temperature=0.1", "temperature=0.5"]
    history = pd.DataFrame([{"cell": c, "seed": s, "epoch": e,
                             "knn_top1": 0.2 + 0.05 * e + 0.01 * s + 0.1 * c}
                            for c in range(3) for s in range(2) for e in range(4)])
    fig = learning_curves(history, names)
    fig.savefig(tmp_path / "curves.png", dpi=80)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["crop + color", "color + crop", "crop + crop"]
    assert len(fig.axes[0].collections) == 3  # a band per cell: each has two seeds


def test_reference_bars_show_ours_beside_the_paper(tmp_path):
    from raycl.analysis import reference_bars

    trials = pd.DataFrame([{"cell": c, "seed": s, "augment.color_strength": strength, "paper_top1": paper,
                            "status": "TERMINATED", "knn_top1": 0.30 + 0.02 * c + 0.005 * s}
                           for c, (strength, paper) in enumerate([(0.125, 59.6), (0.25, 61.0), (0.5, 62.6),
                                                                  (1.0, 63.2)]) for s in range(3)])
    fig = reference_bars(aggregate_seeds(trials), title="SimCLR Table 1")
    fig.savefig(tmp_path / "bars.png", dpi=80)
    assert "ρ with the paper: 1.00" in fig.axes[0].get_title()
    assert len(fig.axes) == 2  # ours, and the paper's axis at the right


def test_figures_command_writes_a_sweeps_pictures(tmp_path, capsys):
    from raycl.cli import main
    from raycl.sweeps.tables import write_meta, write_tables

    trials = _trials()
    history = [{"key": k, "cell": c, "seed": s, "epoch": e, "knn_top1": 0.3 + 0.05 * e}
               for k, c, s in zip(trials["key"], trials["cell"], trials["seed"]) for e in range(3)]
    write_tables(str(tmp_path), trials.to_dict("records"), history)
    write_meta(str(tmp_path), {"grid": "augmentation"})
    assert main(["figures", str(tmp_path)]) == 0
    written = capsys.readouterr().out.split()
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == [
        "augmentation-curves.png", "augmentation-curves.svg",
        "augmentation-grid.png", "augmentation-grid.svg"]
    assert main(["figures", str(tmp_path / "nothing")]) == 2  # not a sweep: a clear error
