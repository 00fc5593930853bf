"""Reading a listing's images on the cluster, in windows that are reshuffled every epoch.

A *listing* is a small table the driver holds, one row per image: ``key`` (a path, or file + row),
``label``, and where the bytes are, as ``chunk`` (the unit a reader fetches at once: a file, a Parquet
row group, a row of an in-memory table) and ``pos`` (the row within it). Rows are sorted by chunk.

A *window* is a group of whole chunks read by one Ray Data task. Each epoch the chunks are dealt
into windows in a new seeded order and the rows of a window are permuted, so an image meets other
negatives every epoch: with one image per chunk (folders, in-memory tables) that is a full shuffle
of the dataset; with Parquet row groups it is a row-group shuffle plus a shuffle within windows of
at least ``data.shuffle_rows`` rows. Unshuffled plans (the evaluation sets) read in listing order.

Torch-free: Ray Data's workers import this module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import ray

from raycl.seeding import numpy_rng

__all__ = ["FileReader", "ParquetReader", "ReadPlan", "TableReader", "open_input", "read_window",
           "window_rows"]


def open_input(path: str):
    """A readable binary stream of a local path or a URI that pyarrow's file systems know (``s3://``,
    ``gs://``, ``hdfs://``, ``file://``)."""
    if "://" in path:
        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        return fs.open_input_file(inner)
    return open(path, "rb")


@dataclass(frozen=True)
class TableReader:
    """Rows of an in-memory table with an ``image`` column (``pos`` = row). The table may be an
    ``ObjectRef`` to it, which is how a pipeline ships it to its tasks."""

    table: pa.Table | ray.ObjectRef

    def read(self, rows: pa.Table) -> list[bytes | None]:
        table = _fetched(self.table) if isinstance(self.table, ray.ObjectRef) else self.table
        return table.column("image").take(rows.column("pos")).to_pylist()

    def shared(self) -> "TableReader":
        """This reader with its table in the object store (put once, read by every task)."""
        return self if isinstance(self.table, ray.ObjectRef) else TableReader(ray.put(self.table))


@dataclass(frozen=True)
class FileReader:
    """One image file per row: ``key`` is its path under ``root`` (a local path or a URI)."""

    root: str

    def read(self, rows: pa.Table) -> list[bytes | None]:
        return [_read_file(f"{self.root}/{key}") for key in rows.column("key").to_pylist()]

    def shared(self) -> "FileReader":
        return self


def _read_file(path: str) -> bytes | None:
    """The file's bytes, or None when it vanished or cannot be opened (counted as a bad image)."""
    try:
        with open_input(path) as f:
            return f.read()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None


@dataclass(frozen=True)
class ParquetReader:
    """Rows of Parquet files: chunk ``c`` is row group ``groups[c]`` of file ``files[file_of[c]]``;
    only the ``image`` column is read."""

    files: tuple[str, ...]
    file_of: tuple[int, ...]
    groups: tuple[int, ...]

    def read(self, rows: pa.Table) -> list[bytes | None]:
        chunks = rows.column("chunk").to_numpy()
        pos = rows.column("pos").to_numpy()
        out: list = [None] * len(chunks)
        for chunk in np.unique(chunks):
            where = np.flatnonzero(chunks == chunk)
            with open_input(self.files[self.file_of[chunk]]) as f:
                column = pq.ParquetFile(f).read_row_group(self.groups[chunk], columns=["image"]).column(0)
            for i, value in zip(where, column.take(pa.array(pos[where])).to_pylist()):
                out[i] = value
        return out

    def shared(self) -> "ParquetReader":
        return self


@dataclass(frozen=True)
class ReadPlan:
    """How a Ray dataset reads a listing: ``num_windows`` windows of ``chunks_per_window`` chunks,
    shuffled per epoch from ``seed`` (None: in listing order), emitted in batches of ``batch_size``."""

    rows: ray.ObjectRef  # the listing's rows table
    reader: TableReader | FileReader | ParquetReader
    num_chunks: int
    chunks_per_window: int
    seed: int | None
    batch_size: int

    @property
    def num_windows(self) -> int:
        return math.ceil(self.num_chunks / self.chunks_per_window)


@functools.lru_cache(maxsize=4)
def _fetched(ref: ray.ObjectRef):
    """An object of the store, fetched once per process (a pipeline's tasks reuse worker processes)."""
    return ray.get(ref)


@functools.lru_cache(maxsize=4)
def _rows_and_starts(ref: ray.ObjectRef) -> tuple[pa.Table, np.ndarray]:
    """The listing's rows and the first row of each chunk (plus the end), cached per process."""
    rows = _fetched(ref)
    chunk = rows.column("chunk").to_numpy()
    starts = np.concatenate([[0], np.flatnonzero(np.diff(chunk)) + 1, [len(chunk)]])
    return rows, starts


def window_rows(starts: np.ndarray, chunks_per_window: int, window: int, seed: int | None,
                epoch: int) -> np.ndarray:
    """Rows (indices into the listing) of ``window`` in ``epoch``: its chunks are the ``window``-th
    group of a seeded permutation of all chunks, its rows in a seeded order (both new each epoch).
    ``starts``: first row of each chunk, then the number of rows."""
    num_chunks = len(starts) - 1
    order = (np.arange(num_chunks) if seed is None
             else numpy_rng(seed, "chunks", epoch).permutation(num_chunks))
    mine = order[window * chunks_per_window:(window + 1) * chunks_per_window]
    rows = np.concatenate([np.arange(starts[c], starts[c + 1]) for c in mine]) if len(mine) else \
        np.zeros(0, dtype=np.int64)
    if seed is not None:
        rows = numpy_rng(seed, "rows", epoch, window).permutation(rows)
    return rows


def read_window(window: int, plan: ReadPlan, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    """The rows of ``window`` in ``epoch`` as batches of ``image`` (encoded bytes), ``label``,
    ``id`` (row in the listing) and ``key``."""
    rows, starts = _rows_and_starts(plan.rows)
    picked = window_rows(starts, plan.chunks_per_window, window, plan.seed, epoch)
    for i in range(0, len(picked), plan.batch_size):
        ids = picked[i:i + plan.batch_size]
        part = rows.take(pa.array(ids))
        yield {"image": _objects(plan.reader.read(part)),
               "label": part.column("label").to_numpy(),
               "id": ids.astype(np.int64),
               "key": _objects(part.column("key").to_pylist())}


def _objects(values: list) -> np.ndarray:
    """A 1-D object array (``np.asarray`` would turn equal-length strings into a fixed-width type)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
