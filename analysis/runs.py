"""Load every raycl run under a storage path into pandas and plot their kNN curves.

    python analysis/runs.py raycl_results            # prints one row per run, writes runs_knn.png

In a notebook::

    from analysis.runs import load_histories, load_summaries
    summaries = load_summaries("raycl_results")       # one row per run: final metrics + config
    histories = load_histories("raycl_results")       # one row per run and epoch
"""

from __future__ import annotations

import argparse
import glob
import os

import pandas as pd


def load_summaries(storage: str) -> pd.DataFrame:
    files = sorted(glob.glob(os.path.join(storage, "*", "summary.parquet")))
    if not files:
        raise FileNotFoundError(f"no */summary.parquet under {storage!r}: is it a raycl storage path?")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def load_histories(storage: str) -> pd.DataFrame:
    files = sorted(glob.glob(os.path.join(storage, "*", "history.parquet")))
    if not files:
        raise FileNotFoundError(f"no */history.parquet under {storage!r}: is it a raycl storage path?")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def plot_knn(histories: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run, h in histories.dropna(subset=["knn_top1"]).groupby("run"):
        ax.plot(h["epoch"], h["knn_top1"], marker="o", ms=3, label=run)
    ax.set_xlabel("epoch")
    ax.set_ylabel("kNN top-1 (validation)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("storage", nargs="?", default="raycl_results")
    parser.add_argument("--png", default="runs_knn.png")
    args = parser.parse_args()
    summaries = load_summaries(args.storage)
    cols = [c for c in ("run", "method.name", "train.workers", "train.batch_size", "method.temperature",
                        "final_loss", "init_knn_top1", "best_knn_top1", "final_knn_top1")
            if c in summaries]
    print(summaries[cols].to_string(index=False, float_format="%.3f"))
    plot_knn(load_histories(args.storage), args.png)
    print(f"written {args.png}")


if __name__ == "__main__":
    main()
