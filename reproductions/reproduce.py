"""The papers' ablation grids at CPU scale on CIFAR-10: run (or resume) a grid's sweep, then rebuild
its folder here and ``reproductions/README.md``.

    python reproductions/reproduce.py color_strength          # run or resume, then rebuild
    python reproductions/reproduce.py --build                  # rebuild every grid already run
    python reproductions/reproduce.py --list                   # the settings of every grid

Every grid runs at the ``tiny`` preset (the small CNN, AdamW) on a class-balanced subset of CIFAR-10's
training Parquet, read in place from ``../shared/datasets/cifar10``, split 80/20 into kNN bank and
validation queries. Sweeps live in ``reproductions/sweeps/`` (not committed; ``--resume`` continues
one a stopped session left); each grid's tables, figures and notes are committed in
``reproductions/<grid>/``. Hand-written remarks on a grid go in ``reproductions/<grid>/NOTES.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = "../shared/datasets/cifar10"  # relative to the repository, as the commands are run from it
SWEEPS = "reproductions/sweeps"
PRESET = "tiny"
COMMON = {"data.num_images": 10000, "data.val_fraction": 0.2, "train.epochs": 6}
SEEDS = 2
# grids whose scale differs from COMMON, and why
SPECIAL = {
    "augmentation": {"seeds": 1, "set": {"train.epochs": 4}},  # 49 cells: one seed fits 90 minutes
    "batch_size": {"set": {"train.epochs": None}},  # the grid sweeps epochs itself
    # 22 cells: one seed on 6 000 images for 3 epochs fits 90 minutes on the slowest machine seen
    "byol_augmentations": {"seeds": 1, "set": {"data.num_images": 6000, "train.epochs": 3}},
    "byol_batch": {"seeds": 1},  # batch 16 and 32 take 500 and 250 steps an epoch: one seed fits 90 minutes
}
TABLES = ("sweep.json", "trials.parquet", "history.parquet")


def settings(grid: str) -> tuple[int, dict]:
    """``(seeds, overrides)`` of a grid's reproduction."""
    special = SPECIAL.get(grid, {})
    sets = {**COMMON, **special.get("set", {})}
    return special.get("seeds", SEEDS), {k: v for k, v in sets.items() if v is not None}


def command(grid: str) -> str:
    """The ``python -m raycl sweep`` line the reproduction runs."""
    seeds, sets = settings(grid)
    flags = " ".join(f"--set {k}={v}" for k, v in sets.items())
    return (f"python -m raycl sweep {grid} --preset {PRESET} --data {DATA} --seeds {seeds} {flags} "
            f"--storage-path {SWEEPS} --resume")


def run(grid: str) -> None:
    from raycl.sweeps import sweep
    from raycl.sweeps.command import data_overrides, summary

    seeds, sets = settings(grid)
    os.chdir(REPO)
    t0 = time.time()
    result = sweep(grid, PRESET, seeds, storage_path=SWEEPS, resume=True,
                   overrides={**data_overrides(DATA), **sets})
    record = os.path.join(HERE, grid, "run.json")
    os.makedirs(os.path.dirname(record), exist_ok=True)
    previous = json.load(open(record)) if os.path.isfile(record) else {"wall_time_s": 0.0, "sessions": 0}
    with open(record, "w") as f:  # a resumed sweep adds its time to the sessions before it
        json.dump({"wall_time_s": round(previous["wall_time_s"] + time.time() - t0, 1),
                   "sessions": previous["sessions"] + 1, "machine": f"{os.cpu_count()} CPUs"}, f, indent=1)
    print(summary(result))


# ------------------------------------------------------------------ building the folders and README
def build(grid: str) -> dict | None:
    """Copy a grid's tables here, draw its figures; return what the README says of it."""
    from raycl import load_sweep
    from raycl.analysis import (aggregate_seeds, cell_labels, check_findings, comparison, embedding_map,
                                grid_figure, learning_curves)
    from raycl.analysis.report import best_checkpoint

    source, out = os.path.join(REPO, SWEEPS, f"{grid}-{PRESET}"), os.path.join(HERE, grid)
    if not os.path.isdir(source):  # run in an earlier session (its sweep is not committed): its tables
        source = out
    if not os.path.isfile(os.path.join(source, "trials.parquet")):
        return None
    sweep = load_sweep(source)
    if "knn_top1" not in sweep.trials.columns:  # started, no trial finished yet
        return None
    os.makedirs(out, exist_ok=True)
    for name in TABLES:
        if source != out and os.path.isfile(os.path.join(source, name)):
            shutil.copyfile(os.path.join(source, name), os.path.join(out, name))
    trials = sweep.trials
    grid_figure(trials, grid).savefig(os.path.join(out, f"{grid}.png"), dpi=110)
    names = cell_labels(aggregate_seeds(trials), grid)
    learning_curves(sweep.history, names).savefig(os.path.join(out, f"{grid}-curves.png"), dpi=100)
    embedding = os.path.join(out, f"{grid}-embedding.png")
    planned = len(sweep.meta.get("cells", [])) or len(trials)
    finished = int(trials["status"].isin(["TERMINATED", "ERROR"]).sum()) if len(trials) else 0
    best = best_checkpoint(trials)
    if best and finished == planned and not os.path.isfile(embedding):  # drawn once, where the sweep ran
        embedding_map(best).savefig(embedding, dpi=100)
    record = os.path.join(out, "run.json")
    wall = json.load(open(record))["wall_time_s"] if os.path.isfile(record) else None
    notes = os.path.join(out, "NOTES.md")
    return {"grid": grid, "meta": sweep.meta, "finished": finished, "planned": planned, "trials": trials,
            "table": comparison(trials, grid), "findings": check_findings(trials, grid), "wall": wall,
            "notes": open(notes).read().strip() if os.path.isfile(notes) else ""}


def _fmt(table: pd.DataFrame) -> str:
    """A comparison table as Markdown: ours as mean ± 95 % half-width."""
    out = pd.DataFrame({"cell": table["name"], "seeds": table["seeds"]})
    for c in [c for c in table.columns if c.endswith("_top1") and not c.startswith("paper_")]:
        ci = table[f"{c}_ci95"]
        out[f"ours: {c}"] = [("–" if pd.isna(m) else f"{m:.3f}" + ("" if pd.isna(e) else f" ± {e:.3f}"))
                             for m, e in zip(table[c], ci)]
    for c in [c for c in table.columns if c.startswith("paper_")]:
        out[c.replace("paper_", "paper: ")] = table[c].map(lambda v: "–" if pd.isna(v) else f"{v:g}")
    return markdown(out)


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (pandas' to_markdown needs the tabulate package)."""
    rows = [[str(c) for c in df.columns], ["---"] * len(df.columns)]
    rows += [[str(v).replace("|", "\\|") for v in r] for r in df.itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def readme(built: list[dict]) -> str:
    lines = [
        "# Reproductions at CPU scale",
        "",
        "Each grid of `raycl.sweeps.GRIDS` run on CIFAR-10 on one 2-core machine with no GPU, beside the "
        "paper's numbers. Written by `python reproductions/reproduce.py --build` from the sweeps' tables; "
        "remarks per grid come from `reproductions/<grid>/NOTES.md`.",
        "",
        f"**Scale.** Preset `{PRESET}` (the small CNN, AdamW, batch 64), "
        f"{COMMON['data.num_images']:,} class-balanced CIFAR-10 training images read in place from "
        f"`{DATA}` ({1 - COMMON['data.val_fraction']:.0%} kNN bank, "
        f"{COMMON['data.val_fraction']:.0%} validation queries), {COMMON['train.epochs']} epochs, "
        f"{SEEDS} seeds per cell unless a grid says otherwise. The measure is kNN top-1 on the validation "
        "queries (k = 20, τ = 0.1) where the paper reports ImageNet linear top-1 of a ResNet-50 trained for "
        "hundreds of epochs: compare orderings and claims, not values.",
        "",
        "**Verdicts.** *holds*: the difference has the paper's sign and exceeds the noise (the half-width "
        "of the difference's 95 % interval, Welch's t from each side's seeds); *within noise*: it does not "
        "(with the sign it has); *reversed*: the opposite difference exceeds the noise. With one seed there "
        "is no interval and the verdict says so. With 2 seeds a side Welch's degrees of freedom lie between "
        "1 and 2 and are rounded down, so the half-width is 12.7 standard errors of the difference unless "
        "the two variances are equal (4.3): only large differences clear it, so read the signs too. The "
        "± beside a cell is that cell's own 95 % half-width.",
        "",
        "| grid | paper | trials | wall time | claims that hold | with the paper's sign |",
        "|---|---|---|---|---|---|",
    ]
    for b in built:
        f = b["findings"]
        held = int(f["verdict"].str.startswith("holds").sum())
        signed = held + int(f["verdict"].str.contains("the paper's sign").sum())
        wall = f"{b['wall'] / 60:.0f} min" if b["wall"] else "–"
        done = int((b["trials"]["status"] == "TERMINATED").sum())
        planned = len(b["meta"].get("cells", [])) or len(b["trials"])
        lines.append(f"| [{b['grid']}](#{b['grid']}) | {b['meta'].get('source', '')} | {done}/{planned} "
                     f"| {wall} | {held} of {len(f)} | {signed} of {len(f)} |")
    missing = [g for g in _grids() if g not in {b["grid"] for b in built}]
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
    for b in built:
        grid, meta = b["grid"], b["meta"]
        seeds, _ = settings(grid)
        lines += ["", f"## {grid}", ""]
        if b["finished"] < b["planned"]:
            lines += [f"*In progress: {b['finished']} of {b['planned']} trials have finished; "
                      "`python reproductions/reproduce.py " + grid + "` resumes it.*", ""]
        lines += [f"**{meta.get('source', '')}.** {meta.get('question', '')}", ""]
        if meta.get("finding"):
            lines += [f"The paper: {meta['finding']}", ""]
        if meta.get("reference_note"):
            lines += [f"The paper's numbers: {meta['reference_note']}.", ""]
        wall = f"{b['wall'] / 60:.0f} minutes" if b["wall"] else "not recorded"
        lines += ["```bash", f"python reproductions/reproduce.py {grid}", "```", "",
                  f"runs `{command(grid)}` ({seeds} seed{'s' if seeds > 1 else ''}; wall time here: {wall}).",
                  "", _fmt(b["table"]), "", markdown(b["findings"]), "",
                  f"![{grid}]({grid}/{grid}.png)", "",
                  f"Learning curves: [{grid}-curves.png]({grid}/{grid}-curves.png)"
                  + (f"; the best trial's embeddings: [{grid}-embedding.png]({grid}/{grid}-embedding.png)."
                     if os.path.isfile(os.path.join(HERE, grid, f"{grid}-embedding.png")) else ".")]
        if b["notes"]:
            lines += ["", b["notes"]]
    return "\n".join(lines) + "\n"


def _grids() -> list[str]:
    from raycl.sweeps.grids import GRIDS

    return list(GRIDS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("grids", nargs="*", help="grids to run (or resume) before rebuilding")
    parser.add_argument("--build", action="store_true", help="only rebuild the folders and README")
    parser.add_argument("--list", action="store_true", help="print each grid's command")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(command(g) for g in _grids()))
        return 0
    unknown = [g for g in args.grids if g not in _grids()]
    if unknown:
        print(f"error: unknown grid(s) {', '.join(unknown)}: one of {', '.join(_grids())}", file=sys.stderr)
        return 2
    for grid in [] if args.build else args.grids:
        run(grid)
    built = [b for b in (build(g) for g in _grids()) if b is not None]
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(readme(built))
    print(f"built {len(built)} grid(s): {', '.join(b['grid'] for b in built)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
