"""The evaluation table: one row per protocol and split in ``<run dir>/evaluation.parquet``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raycl.config import Config
from raycl.storage import filesystem

EVALUATION = "evaluation.parquet"
_COLUMNS = ["run", "method", "protocol", "network", "split", "features", "task", "labels", "top1",
            "top5", "teacher_top1", "teacher_top5", "chance", "seconds", "settings"]


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every optional score column (NaN where a protocol has none) and float labels."""
    for col in ("top5", "teacher_top1", "teacher_top5", "chance"):
        if col not in df:
            df[col] = np.nan
    df["labels"] = df["labels"].astype(float)
    return df


def write_evaluation(run_dir: str, df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Merge ``df`` into ``run_dir/evaluation.parquet`` (rows of re-run protocols are replaced)."""
    fs, root = filesystem(run_dir)
    fs.create_dir(root, recursive=True)
    df = df.copy()
    df["run"], df["method"] = cfg.name, cfg.method.name
    file = f"{root}/{EVALUATION}"
    if fs.get_file_info(file).type != pafs.FileType.NotFound:
        old = pq.read_table(file, filesystem=fs).to_pandas()
        old = old[~old["protocol"].isin(df["protocol"].unique())]
        df = pd.concat([old, df], ignore_index=True) if len(old) else df
    df = df[[c for c in _COLUMNS if c in df] + [c for c in df if c not in _COLUMNS]]
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), file, filesystem=fs)
    return df


def read_evaluation(run_dir: str) -> pd.DataFrame:
    """The ``evaluation.parquet`` table of a run directory."""
    fs, root = filesystem(run_dir)
    return pq.read_table(f"{root}/{EVALUATION}", filesystem=fs).to_pandas()
