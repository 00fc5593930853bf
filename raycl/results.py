"""Result files of a run: tidy Parquet tables that pandas reads, its config, and a picture.

A run directory holds (beside Ray Train's ``checkpoint_*`` folders):

- ``history.parquet``: one row per epoch (epoch 0 is the kNN before training), metric columns plus
  ``run`` and ``method``.
- ``summary.parquet``: one row: the run's final metrics and every config field as ``section.field``
  columns (concatenate many runs' summaries for a sweep table).
- ``restarts.parquet``: only after a lost worker: one row per restart of the worker group (the epoch
  in progress, the cause, when it failed and resumed, the seconds lost).
- ``config.json``: the exact configuration.
- ``curves.png``: loss, kNN accuracy and learning rate by epoch.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raycl.config import Config, ConfigError
from raycl.storage import filesystem

HISTORY = "history.parquet"
SUMMARY = "summary.parquet"
RESTARTS = "restarts.parquet"


def history_from_checkpoint(checkpoint_dir: str) -> list[dict[str, Any]]:
    """The per-epoch history stored in a raycl checkpoint directory."""
    return checkpoint_record(checkpoint_dir)[0]


def checkpoint_record(checkpoint_dir: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The per-epoch history and the worker-group restarts stored in a raycl checkpoint directory."""
    from raycl.train.state import STATE_FILE, read_state

    fs, path = filesystem(checkpoint_dir)
    with fs.open_input_file(f"{path}/{STATE_FILE}") as f:
        state = read_state(f.read(), f"{checkpoint_dir}/{STATE_FILE}")
    return state["history"], state.get("restarts", [])


def write_run(run_dir: str, cfg: Config, history: list[dict[str, Any]],
              restarts: list[dict[str, Any]] = ()) -> pd.DataFrame:
    """Write the result files of a run; return its history as a DataFrame."""
    fs, path = filesystem(run_dir)
    fs.create_dir(path, recursive=True)
    df = pd.DataFrame(history)
    df.insert(0, "run", cfg.name)
    df.insert(1, "method", cfg.method.name)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), f"{path}/{HISTORY}", filesystem=fs)
    if restarts:  # when and why the worker group was restarted, and the time each restart cost
        pq.write_table(pa.Table.from_pandas(pd.DataFrame(restarts), preserve_index=False),
                       f"{path}/{RESTARTS}", filesystem=fs)
    summary = {"run": cfg.name, **_final_metrics(df), **cfg.flat()}
    pq.write_table(pa.Table.from_pandas(pd.DataFrame([summary]), preserve_index=False),
                   f"{path}/{SUMMARY}", filesystem=fs)
    with fs.open_output_stream(f"{path}/config.json") as f:
        f.write(json.dumps(cfg.to_dict(), indent=2).encode())
    if len(df):
        with fs.open_output_stream(f"{path}/curves.png") as f:
            f.write(plot_history(df))
    return df


def _final_metrics(df: pd.DataFrame) -> dict[str, Any]:
    if not len(df):
        return {}
    last = df.iloc[-1]
    out = {f"final_{k}": last[k] for k in df.columns if k not in ("run", "method") and pd.notna(last[k])}
    if "knn_top1" in df:
        out["best_knn_top1"] = float(df["knn_top1"].max())
        if (df["epoch"] == 0).any():
            out["init_knn_top1"] = float(df.loc[df["epoch"] == 0, "knn_top1"].iloc[0])
    return out


def plot_history(df: pd.DataFrame) -> bytes:
    """PNG bytes of loss, kNN top-1, the method's first pretext metric (its ``pretext_*`` column:
    top-1, BYOL's prediction/target cosine, ...) and learning rate against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    pretext = [c for c in df if c.startswith("pretext_") and not c.endswith("top5")][:1]
    panels = [c for c in ("loss", "knn_top1", *pretext, "lr") if c in df]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    titles = {"loss": "training loss", "knn_top1": "kNN top-1 (validation)",
              "pretext_top1": "pretext top-1", "pretext_cos": "prediction/target cosine",
              "pretext_diag": "cross-correlation diagonal (mean)",
              "lr": "learning rate (shared)"}
    for ax, col in zip(axes[0], panels):
        d = df[["epoch", col]].dropna()
        ax.plot(d["epoch"], d[col], marker="o", ms=3)
        ax.set_title(titles.get(col, col.replace("_", " ")))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
    fig.suptitle(f"{df['run'].iloc[0]}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def check_writable(path: str, field: str = "storage_path") -> None:
    """Raise :class:`ConfigError` unless the local folder ``path`` can be created and written to
    (before a run starts, instead of a traceback from deep inside Ray). URIs are left to their store."""
    if "://" in path:
        return
    import tempfile

    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".raycl-write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(field, path,
                          f"a folder raycl can create and write to ({exc.strerror or exc})") from None
