"""Write the analysis notebooks: one per grid of ``raycl.sweeps.GRIDS`` and an overview, stored without
outputs. Each takes a sweep directory in its first cell (tagged ``parameters``, as papermill expects).

    python analysis/make_notebooks.py            # rewrite analysis/*.ipynb from the grids
    python analysis/make_notebooks.py --check    # exit 1 if a stored notebook differs (as the tests do)

The notebooks are generated so that a grid added to ``GRIDS`` gets its notebook and a changed grid's
text follows; edit this file, not the ``.ipynb`` files.
"""

from __future__ import annotations

import argparse
import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from raycl.sweeps.grids import GRIDS, Grid

HERE = os.path.dirname(os.path.abspath(__file__))
REPRODUCTIONS = "../reproductions"  # notebooks open the committed CPU-scale reproductions by default


def _parameters(source: str):
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def grid_notebook(grid: Grid):
    about = [f"# {grid.source}: `{grid.name}`", "", grid.question]
    if grid.finding:
        about += ["", f"**The paper's finding:** {grid.finding}"]
    if grid.reference_note:
        about += ["", f"**The paper's numbers:** {grid.reference_note}."]
    about += [
        "",
        "Make a sweep of this grid (`--dry-run` lists its cells):",
        "",
        f"    python -m raycl sweep {grid.name} --seeds 2",
        "",
        "or set `SWEEP` below to a sweep you have. By default this notebook reads the CPU-scale "
        "reproduction in `reproductions/` (see its README for the command that made it).",
    ]
    cells = [
        new_markdown_cell("\n".join(about)),
        _parameters(f'SWEEP = "{REPRODUCTIONS}/{grid.name}"  # a sweep directory (storage_path/name)'),
        new_code_cell(
            "%matplotlib inline\nimport raycl\nfrom raycl.analysis import (aggregate_seeds, cell_labels, "
            "check_findings, comparison, grid_figure,\n                            learning_curves)\n\n"
            f'GRID = "{grid.name}"\nsweep = raycl.load_sweep(SWEEP)\n'
            'assert sweep.meta["grid"] == GRID, \\\n'
            '    f"{SWEEP} is a sweep of {sweep.meta[\'grid\']!r}, not {GRID!r}"\n'
            "sweep"
        ),
        new_markdown_cell(
            "## Ours beside the paper\n\nOne row per cell: the mean over seeds of each metric "
            "the sweep measured, the half-width of its 95 % interval, and the paper's numbers."
        ),
        new_code_cell("comparison(sweep.trials, GRID)"),
        new_markdown_cell(
            f"## {grid.source}, redrawn\n\nOurs (95 % intervals over seeds) at the left, the "
            "paper's numbers in the same layout at the right."
        ),
        new_code_cell("grid_figure(sweep.trials, GRID)"),
        new_markdown_cell(
            "## The paper's claims, here\n\n*holds*: the difference has the paper's sign and "
            "exceeds the noise; *within noise*: it does not; *reversed*: the opposite does."
        ),
        new_code_cell("check_findings(sweep.trials, GRID)"),
        new_markdown_cell(
            "## Learning curves\n\nkNN top-1 on the validation split after every epoch, mean "
            "over seeds with a ±1 std band."
        ),
        new_code_cell(
            "names = cell_labels(aggregate_seeds(sweep.trials), GRID)\nlearning_curves(sweep.history, names)"
        ),
        new_markdown_cell("## Every trial"),
        new_code_cell("sweep.trials"),
    ]
    if grid.name == "augmentation":
        cells[6:6] = [
            new_markdown_cell("The matrix itself (rows: 1st transformation, columns: 2nd):"),
            new_code_cell(
                "from raycl.analysis import pair_matrix\n\n"
                "pair_matrix(aggregate_seeds(sweep.trials)).round(3)"
            ),
        ]
    return _notebook(cells)


def overview_notebook():
    cells = [
        new_markdown_cell(
            "# All sweeps\n\nEvery sweep under `STORAGE` (a folder of sweep directories, e.g. "
            "`raycl_sweeps` or `../reproductions`): what ran, how long it took, and which of "
            "each paper's claims hold here. Each grid has its own notebook beside this one."
        ),
        _parameters(f'STORAGE = "{REPRODUCTIONS}"  # a folder holding sweep directories'),
        new_code_cell(
            "%matplotlib inline\n"
            "from raycl.analysis import all_trials, check_findings, load_sweeps, overview\n\n"
            "sweeps = load_sweeps(STORAGE)\noverview(sweeps)"
        ),
        new_markdown_cell("## The papers' claims, every grid"),
        new_code_cell(
            "import pandas as pd\n\n"
            "pd.concat({name: check_findings(s.trials, s.meta['grid']) for name, s in sweeps.items()},\n"
            "          names=['sweep', 'claim #']).reset_index()"
        ),
        new_markdown_cell("## Every trial of every sweep, one table"),
        new_code_cell(
            "trials = all_trials(sweeps)\ntrials.groupby(['grid', 'status']).size().unstack(fill_value=0)"
        ),
        new_markdown_cell("## Failed trials"),
        new_code_cell(
            "failed = trials[trials['status'] == 'ERROR'] if 'status' in trials else trials.iloc[:0]\n"
            "failed[[c for c in ('sweep', 'key', 'error') if c in failed.columns]]"
        ),
    ]
    return _notebook(cells)


def _notebook(cells):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating does not churn the files
        cell["id"] = f"cell-{i}"
    return nb


def notebooks() -> dict[str, object]:
    """``{file name: notebook}`` for every grid and the overview."""
    out = {f"{name}.ipynb": grid_notebook(grid) for name, grid in GRIDS.items()}
    out["overview.ipynb"] = overview_notebook()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", default=HERE)
    args = parser.parse_args(argv)
    stale = []
    for name, nb in notebooks().items():
        path = os.path.join(args.out, name)
        text = nbformat.writes(nb) + "\n"
        if args.check:
            if not os.path.isfile(path) or open(path, encoding="utf-8").read() != text:
                stale.append(name)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if stale:
        print(f"stale notebooks (run python analysis/make_notebooks.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
