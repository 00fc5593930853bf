"""The run's best checkpoint by validation kNN, kept in ``<run>/best/`` beside Ray Train's last
``train.num_to_keep`` checkpoints (Ray Train keeps either the latest or the best-scored ones, not both).

:class:`KeepBest` runs in the Train controller: each checkpoint Ray Train has persisted whose kNN
top-1 beats the best so far is copied to a temporary folder, then moved into place, so ``best/`` is
always a whole checkpoint (on a local disk; on object stores a move is a copy, and a crash mid-way
leaves the previous best under its temporary name). ``best/best.json`` says which epoch it is.
"""

from __future__ import annotations

import json
import logging

import pyarrow.fs as pafs
from ray.train import UserCallback

from raycl.storage import filesystem

log = logging.getLogger(__name__)
BEST_DIR = "best"
BEST_FILE = "best.json"
METRIC = "knn_top1"


def best_so_far(run_dir: str) -> float:
    """The kNN top-1 of ``run_dir``'s best checkpoint, or -inf without one (a resumed run keeps it)."""
    fs, path = filesystem(run_dir)
    try:
        with fs.open_input_stream(f"{path}/{BEST_DIR}/{BEST_FILE}") as f:
            return float(json.loads(f.read())[METRIC])
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return float("-inf")


class KeepBest(UserCallback):
    """Copies every checkpoint that improves the validation kNN to ``run_dir/best``."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.best: float | None = None  # read from disk on the first report (a resumed run has one)

    def after_report(self, run_context, metrics, checkpoint):
        row = metrics[0] if metrics else {}
        if checkpoint is None or METRIC not in row:
            return
        if self.best is None:
            self.best = best_so_far(self.run_dir)
        if not row[METRIC] > self.best:
            return
        try:
            self._copy(
                checkpoint, {"epoch": row.get("epoch"), METRIC: row[METRIC], "checkpoint": checkpoint.path}
            )
            self.best = row[METRIC]
        except OSError as exc:  # a full disk must not end the run: the last checkpoints remain
            log.warning("raycl: could not keep the best checkpoint in %s: %s", self.run_dir, exc)

    def _copy(self, checkpoint, about: dict) -> None:
        fs, path = filesystem(self.run_dir)
        best, tmp, old = f"{path}/{BEST_DIR}", f"{path}/.{BEST_DIR}-new", f"{path}/.{BEST_DIR}-old"

        def exists(p: str) -> bool:
            return fs.get_file_info(p).type != pafs.FileType.NotFound

        for stale in (tmp, old):
            if exists(stale):
                fs.delete_dir(stale)
        fs.create_dir(tmp, recursive=True)
        pafs.copy_files(
            checkpoint.path, tmp, source_filesystem=checkpoint.filesystem, destination_filesystem=fs
        )
        with fs.open_output_stream(f"{tmp}/{BEST_FILE}") as f:
            f.write(json.dumps(about).encode())
        if exists(best):
            fs.move(best, old)
        fs.move(tmp, best)
        if exists(old):
            fs.delete_dir(old)
