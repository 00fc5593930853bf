"""Every grid drawn in its paper's layout, its paper's claims checked, the notebooks executed top to
bottom, and the HTML report rendered by a headless browser: against a real sweep the tests run and
against small sweeps written here from each grid's plan."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import raycl
from raycl.analysis import (
    FINDINGS,
    LAYOUTS,
    check_findings,
    comparison,
    grid_figure,
    load_sweeps,
    overview,
    sweep_report,
)
from raycl.analysis.embedding import pca_2d
from raycl.sweeps.grids import GRIDS
from raycl.sweeps.plan import plan
from raycl.sweeps.tables import trial_row, write_meta, write_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ("knn_top1", "pretext_top1", "linear_val_top1", "linear_z_val_top1", "finetune10_val_top1")


def fake_trials(grid: str, preset: str = "tiny", seeds: int = 2, seed: int = 0) -> tuple[list, list, list]:
    """``(runs, trials rows, history rows)`` of a sweep of ``grid`` as the runner writes them, with
    random metrics (every metric a grid's figure or claims may use)."""
    rng = np.random.default_rng(seed)
    runs = plan(GRIDS[grid], preset, seeds)
    trials, history = [], []
    for r in runs:
        if r.skip:
            trials.append(trial_row(r, None, "SKIPPED", []))
            continue
        epochs = [{"epoch": e, **{m: 0.3 + 0.02 * e + 0.1 * rng.random() for m in METRICS}} for e in range(3)]
        rows = [{"trial_id": f"t-{r.key}", "key": r.key, "cell": r.cell, "seed": r.seed, **h} for h in epochs]
        history += rows
        trials.append(trial_row(r, f"t-{r.key}", "TERMINATED", rows, wall_time_s=10.0))
    return runs, trials, history


def write_fake_sweep(path, grid: str, preset: str = "tiny", seeds: int = 2, failed: str | None = None) -> str:
    runs, trials, history = fake_trials(grid, preset, seeds)
    if failed:  # the last trial failed with this error
        trials[-1].update(status="ERROR", error=failed, knn_top1=None)
    os.makedirs(path, exist_ok=True)
    g = GRIDS[grid]
    write_meta(
        str(path),
        {
            "grid": grid,
            "source": g.source,
            "question": g.question,
            "method": g.method,
            "preset": preset,
            "seeds": list(range(seeds)),
            "overrides": {},
            "evaluate": [],
            "reference_note": g.reference_note,
            "finding": g.finding,
            "cells": [{"key": r.key} for r in runs],
            "versions": {"raycl": "test"},
        },
    )
    write_tables(str(path), trials, history)
    return str(path)


# ------------------------------------------------------------------ layouts and claims, every grid
def test_every_grid_has_a_layout_and_claims():
    assert set(LAYOUTS) == set(GRIDS) == set(FINDINGS)


@pytest.mark.parametrize("preset", ["tiny", "cifar10"])
def test_every_grid_draws_and_checks_its_claims_on_its_own_cells(preset):
    """Layouts and claims name the grid's real columns and values: on a sweep of random metrics every
    claim finds both of its sides (none 'unmeasured') and every figure draws."""
    for name in GRIDS:
        _, trials, _ = fake_trials(name, preset)
        t = pd.DataFrame(trials)
        fig = grid_figure(t, name)
        assert fig.axes, name
        table = comparison(t, name)
        assert len(table) == t["cell"].nunique() and table["name"].is_unique, name
        found = check_findings(t, name)
        assert len(found) == len(FINDINGS[name]) and not (found["verdict"] == "unmeasured").any(), (
            name,
            found,
        )


def _trials(
    values: dict[tuple, list[float]], columns: tuple[str, ...], metric: str = "knn_top1"
) -> pd.DataFrame:
    rows = []
    for cell, (key, measured) in enumerate(values.items()):
        for seed, v in enumerate(measured):
            rows.append(
                {"cell": cell, "seed": seed, "status": "TERMINATED", **dict(zip(columns, key)), metric: v}
            )
    return pd.DataFrame(rows)


def test_claims_hold_reverse_or_stay_within_noise_as_the_numbers_say():
    cols = ("augment.color_strength", "augment.blur")
    clear = _trials(
        {
            (0.125, False): [0.40, 0.41, 0.40],
            (1.0, False): [0.50, 0.51, 0.50],
            (1.0, True): [0.48, 0.52, 0.50],
        },
        cols,
    )
    got = check_findings(clear, "color_strength").set_index("claim")["verdict"]
    assert got["full colour strength beats 1/8"] == "holds"
    assert got["blur adds to full-strength colour"] == "within noise (the opposite sign)"  # 0.500 < 0.503
    backwards = _trials({(0.125, False): [0.50, 0.51], (1.0, False): [0.40, 0.41], (1.0, True): [0.3]}, cols)
    got = check_findings(backwards, "color_strength").set_index("claim")["verdict"]
    assert got["full colour strength beats 1/8"] == "reversed"
    assert got["blur adds to full-strength colour"] == "reversed (one seed: no interval)"
    unmeasured = _trials({(1.0, False): [0.5]}, cols)
    assert check_findings(unmeasured, "color_strength")["verdict"].tolist() == ["unmeasured", "unmeasured"]
    flat = check_findings(
        _trials({(k,): [0.40, 0.42] for k in (10, 30, 100)}, ("method.prototypes",)), "swav_prototypes"
    )
    assert flat["verdict"].tolist() == ["holds"]
    spread = check_findings(
        _trials({(10,): [0.30, 0.301], (30,): [0.50, 0.501]}, ("method.prototypes",)), "swav_prototypes"
    )
    assert spread["verdict"].tolist() == ["does not hold"]


def test_a_difference_is_weighed_by_welchs_interval():
    """Two seeds a side, s = 0.0141 each: the difference's standard error is sqrt(2 · s²/2) = 0.0141
    with 2 degrees of freedom (Welch–Satterthwaite), so its 95 % half-width is 4.303 · 0.0141 = 0.061;
    a 0.08 lead holds (adding the two means' own intervals, 12.71 · 0.01 each, would call it noise),
    a 0.05 lead does not."""
    cols = ("augment.color_strength", "augment.blur")
    lead = {(1.0, False): [0.50, 0.52], (0.125, False): [0.42, 0.44]}
    got = check_findings(_trials(lead, cols), "color_strength").set_index("claim")["verdict"]
    assert got["full colour strength beats 1/8"] == "holds"
    close = {(1.0, False): [0.50, 0.52], (0.125, False): [0.45, 0.47]}
    got = check_findings(_trials(close, cols), "color_strength").set_index("claim")["verdict"]
    assert got["full colour strength beats 1/8"] == "within noise (the paper's sign)"


def test_a_drop_claim_compares_losses():
    cols = ("method", "augmentations")
    t = _trials(
        {
            ("byol", "baseline"): [0.50, 0.50],
            ("byol", "no colour"): [0.48, 0.48],
            ("simclr", "baseline"): [0.52, 0.52],
            ("simclr", "no colour"): [0.30, 0.30],
            ("byol", "crop only"): [0.40, 0.40],
        },
        cols,
    )
    got = check_findings(t, "byol_augmentations").set_index("claim")
    assert (
        got.loc["removing colour costs BYOL less than SimCLR", "verdict"] == "holds"
    )  # identical seeds: no noise
    assert "0.020 vs 0.220" in got.loc["removing colour costs BYOL less than SimCLR", "ours"]


def test_the_papers_panel_shares_our_categories():
    _, trials, _ = fake_trials("moco_momentum", "cifar10")
    fig = grid_figure(pd.DataFrame(trials), "moco_momentum")
    ours, paper = fig.axes[:2]
    labels = [[t.get_text() for t in ax.get_xticklabels()] for ax in (ours, paper)]
    assert labels[0] == labels[1] == ["0", "0.9", "0.99", "0.999", "0.9999"]  # m = 0 has no paper value
    assert "ρ" in ours.get_title() and "MoCo v1" in paper.get_title()
    assert "95 % interval" in ours.get_title()
    _, one_seed, _ = fake_trials("moco_momentum", "cifar10", seeds=1)
    title = grid_figure(pd.DataFrame(one_seed), "moco_momentum").axes[0].get_title()
    assert "one seed, no interval" in title and "95 %" not in title  # nothing to draw an interval from


def test_pca_2d_finds_the_direction_of_largest_variance():
    rng = np.random.default_rng(0)
    t = rng.normal(size=500)
    x = np.stack([3 * t, -3 * t, 0.01 * rng.normal(size=500), np.zeros(500)], axis=1) + 5.0
    points, explained = pca_2d(x)
    assert explained[0] > 0.999 and points.shape == (500, 2)
    assert abs(np.corrcoef(points[:, 0], t)[0, 1]) > 0.999 and abs(points[:, 0].mean()) < 1e-9
    again, _ = pca_2d(x[::-1])  # signs fixed by the loadings, not by the order of the points
    assert np.allclose(again[::-1], points)


def test_embedding_map_draws_h_beside_z_coloured_by_class(tmp_path):
    import torch

    from raycl.analysis import embedding_map
    from raycl.train import STATE_FILE, build_model

    cfg = raycl.preset("tiny").override({"data.num_images": 600}).validate()
    ckpt = tmp_path / "checkpoint_000000"
    ckpt.mkdir()
    torch.save(
        {
            "model": build_model(cfg).state_dict(),
            "optimizer": {},
            "epoch": 0,
            "step": 0,
            "history": [],
            "config": cfg.to_dict(),
        },
        ckpt / STATE_FILE,
    )
    fig = embedding_map(str(tmp_path), max_points=200)  # a run directory: its latest checkpoint
    h, z = fig.axes[:2]
    assert "h" in h.get_title() and "g(h)" in z.get_title()
    assert sum(len(c.get_offsets()) for c in h.collections) == 60  # the validation split: 10 % of 600
    assert len(h.get_legend_handles_labels()[1] or z.get_legend_handles_labels()[1]) == 10


# ------------------------------------------------------------------ a real sweep: report and notebooks
@pytest.fixture(scope="module")
def real_sweep(tune_sweep):
    """The folder holding the tests' one real sweep (``augmentation``: its 2 × 2 crop/colour slice,
    run by Ray Tune, with a trial that failed and one that diverged; tests/conftest.py)."""
    return str(tune_sweep[2])


def _browser() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found and os.environ.get("RAYCL_REQUIRE_BROWSER"):
        pytest.fail("no headless browser (chromium) although RAYCL_REQUIRE_BROWSER is set")
    return found


def test_report_renders_in_a_headless_browser_with_the_heat_map(real_sweep, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    path = sweep_report(os.path.join(real_sweep, "augmentation"), str(tmp_path / "report.html"))
    page = open(path, encoding="utf-8").read()
    assert "src='http" not in page and 'src="http' not in page  # self-contained
    for part in (
        "id='fig-grid'",
        "id='fig-curves'",
        "id='fig-embedding'",
        "The paper's findings, here",
        "crop + colour beats every pair without colour",
        "Trials",
        "Failed trials (2)",  # the missing file and the diverged loss, with their errors
        "missing.parquet",
    ):
        assert part in page, part
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1280,2200",
            f"file://{path}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int32).reshape(-1, 3)
    assert len(np.unique(pixels[::7], axis=0)) > 200  # not blank: text, tables and figures
    import matplotlib

    viridis = (np.asarray(matplotlib.colormaps["viridis"](np.linspace(0, 1, 32)))[:, :3] * 255).astype(
        np.int32
    )
    near = np.min(np.abs(pixels[::3, None, :] - viridis[None]).sum(-1), axis=1) < 12
    assert near.sum() > 2000, near.sum()  # the heat map's cells, drawn in viridis


def test_report_lists_failed_trials_with_their_errors(tmp_path):
    path = write_fake_sweep(tmp_path / "s", "temperature", failed="RuntimeError: loss is nan at step 7")
    page = open(sweep_report(path, embedding=False), encoding="utf-8").read()
    assert "Failed trials (1)" in page and "loss is nan at step 7" in page
    assert "SimCLR Table 5" in page and "data:image/png;base64," in page


def test_report_and_figures_from_the_command_line(tmp_path):
    path = write_fake_sweep(tmp_path / "s", "byol_tau")
    run = [sys.executable, "-m", "raycl"]
    out = subprocess.run([*run, "report", path, "--no-embedding"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip().endswith("report.html"), out.stderr
    out = subprocess.run([*run, "figures", path], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and {os.path.basename(f) for f in out.stdout.split()} == {
        "byol_tau-grid.png",
        "byol_tau-grid.svg",
        "byol_tau-curves.png",
        "byol_tau-curves.svg",
    }
    bad = subprocess.run(
        [*run, "report", str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1


def test_overview_of_several_sweeps(tmp_path):
    write_fake_sweep(tmp_path / "a" / "color_strength", "color_strength")
    write_fake_sweep(tmp_path / "temperature", "temperature", failed="boom")
    sweeps = load_sweeps(str(tmp_path))
    assert sorted(sweeps) == ["a/color_strength", "temperature"]
    table = overview(sweeps).set_index("grid")
    assert table.loc["temperature", "failed"] == 1 and table.loc["color_strength", "trials"] == 10
    assert table.loc["color_strength", "claims_checked"] == 2


def test_notebooks_are_generated_from_the_grids():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "analysis", "make_notebooks.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


def test_every_notebook_runs_top_to_bottom(real_sweep, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root = tmp_path / "sweeps"
    shutil.copytree(
        os.path.join(real_sweep, "augmentation"),
        root / "augmentation",
        ignore=shutil.ignore_patterns("runs", "run_trial_*"),
    )
    for name in GRIDS:
        if name != "augmentation":
            write_fake_sweep(root / name, name, failed="ValueError: example" if name == "byol_tau" else None)
    notebooks = sorted(f for f in os.listdir(os.path.join(ROOT, "analysis")) if f.endswith(".ipynb"))
    assert len(notebooks) == len(GRIDS) + 1
    for file in notebooks:
        nb = nbformat.read(os.path.join(ROOT, "analysis", file), as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
            f"{file} stored with outputs"
        )
        first = nb.cells[1]
        assert "parameters" in first.metadata.get("tags", []), file
        name = file[: -len(".ipynb")]
        first.source = f"STORAGE = {str(root)!r}" if name == "overview" else f"SWEEP = {str(root / name)!r}"
        nbclient.NotebookClient(
            nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
        images = [
            o
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.outputs
            if "image/png" in o.get("data", {})
        ]
        assert name == "overview" or len(images) >= 2, f"{file}: {len(images)} figures shown"
        if name == "overview":
            table = [o for o in nb.cells[2].outputs if "text/html" in o.get("data", {})]
            assert table and "byol_tau" in table[0]["data"]["text/html"]


def test_every_reproduction_command_plans_its_grid(capsys):
    """The commands reproductions/README.md prints are valid sweeps of every grid (dry run)."""
    import shlex

    from raycl.cli import main

    sys.path.insert(0, os.path.join(ROOT, "reproductions"))
    try:
        import reproduce
    finally:
        sys.path.pop(0)
    for grid in GRIDS:
        argv = shlex.split(reproduce.command(grid))
        assert argv[:4] == ["python", "-m", "raycl", "sweep"]
        assert main([*argv[3:], "--dry-run"]) == 0, grid
        planned = capsys.readouterr().out
        assert "[skipped" not in planned, (grid, planned)
