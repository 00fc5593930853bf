"""A listing: which images a split holds and where, without their bytes.

The driver holds a :class:`Listing` (a few columns per image: a key, a label, where to read it) and
never the images themselves; Ray Data tasks read them (:mod:`raycl.data.reading`). Splitting and
subsetting are computed from the keys alone: a stable, seeded hash of each key orders the images of
a class, so the validation split and the ``data.num_images`` subset do not depend on the order in
which files were listed, nor change between runs or machines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raycl.data.reading import FileReader, ParquetReader, TableReader

__all__ = ["UNLABELLED", "Listing", "balanced_subset", "check_labels", "hashed_split", "key_ranks", "num_val"]

Reader = TableReader | FileReader | ParquetReader
UNLABELLED = -1  # the label of an image listed without one (data.unlabelled; STL-10's unlabeled split)


@dataclass(frozen=True)
class Listing:
    """The images of one split: ``rows`` (``key``, ``label``, ``chunk``, ``pos``; sorted by chunk),
    the ``reader`` that fetches their bytes, and the source's ``class_names`` (indexed by label)."""

    rows: pa.Table
    reader: Reader
    class_names: tuple[str, ...]

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows

    @property
    def labels(self) -> np.ndarray:
        return self.rows.column("label").to_numpy()

    @property
    def num_chunks(self) -> int:
        return len(pc.unique(self.rows.column("chunk"))) if self.num_rows else 0

    def unlabelled(self) -> "Listing":
        """The same images with every label :data:`UNLABELLED` and no class names."""
        n = self.num_rows
        labels = pa.array(np.full(n, UNLABELLED, dtype=np.int64))
        return Listing(self.rows.set_column(self.rows.schema.get_field_index("label"), "label", labels),
                       self.reader, ())

    def take(self, indices: np.ndarray) -> "Listing":
        """The rows at ``indices``, kept in listing (chunk) order."""
        return Listing(self.rows.take(pa.array(np.sort(np.asarray(indices, dtype=np.int64)))),
                       self.reader, self.class_names)

    def read(self) -> pa.Table:
        """The images' bytes, read by this process: ``image``, ``label``, ``id`` (row) and ``key``.
        For sets the driver may hold (evaluation sets up to a bound, tests, previews)."""
        return pa.table({"image": pa.array(self.reader.read(self.rows), type=pa.binary()),
                         "label": self.rows.column("label"),
                         "id": pa.array(np.arange(self.num_rows, dtype=np.int64)),
                         "key": self.rows.column("key")})


def rows_table(keys, labels, chunks, pos) -> pa.Table:
    """A listing's rows, typed and sorted by ``(chunk, pos)``."""
    table = pa.table({"key": pa.array(keys, type=pa.string()), "label": pa.array(labels, type=pa.int64()),
                      "chunk": pa.array(chunks, type=pa.int64()), "pos": pa.array(pos, type=pa.int64())})
    return table.sort_by([("chunk", "ascending"), ("pos", "ascending")])


def check_labels(labels: pa.Array | pa.ChunkedArray, where: str) -> np.ndarray:
    """``labels`` as int64, or a ValueError naming ``where`` and how many are null or negative."""
    nulls = labels.null_count
    if nulls:
        raise ValueError(f"{where}: column 'label' has {nulls} null value(s) of {len(labels)}; every "
                         "training and evaluation image needs a class label (an integer >= 0)")
    values = labels.to_numpy().astype(np.int64)
    negative = int((values < 0).sum())
    if negative:
        raise ValueError(f"{where}: column 'label' has {negative} negative value(s) of {len(values)} "
                         f"(e.g. {int(values[values < 0][0])}; -1 often marks unlabelled images); "
                         "class labels must be integers >= 0")
    return values


def key_ranks(keys: pa.Array | pa.ChunkedArray, seed: int, purpose: str) -> np.ndarray:
    """A stable, seeded 64-bit hash of each key (pandas' SipHash: the same on every machine and run)."""
    salt = f"{purpose}:{seed}".encode().hex()[:16].ljust(16, "0")
    return pd.util.hash_array(np.asarray(keys.to_pylist() if hasattr(keys, "to_pylist") else keys,
                                         dtype=object), hash_key=salt, categorize=False)


def num_val(count: int, val_fraction: float) -> int:
    """How many of a class's ``count`` images go to the validation split: ``round(count * fraction)``
    (half up), at least one when the class has two, and never all of them."""
    if count < 2 or val_fraction == 0:
        return 0
    return min(max(int(np.floor(count * val_fraction + 0.5)), 1), count - 1)


def hashed_split(keys, labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``, sorted and disjoint: within each class, the :func:`num_val` images
    with the lowest seeded key hash are validation images."""
    if not isinstance(val_fraction, (int, float, np.floating)) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} is invalid; expected a number in [0, 1)")
    ranks = key_ranks(keys, seed, "split")
    is_val = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        lowest = members[np.argsort(ranks[members], kind="stable")]
        is_val[lowest[:num_val(len(members), val_fraction)]] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def balanced_subset(keys, labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` images, as evenly spread over the classes as their sizes allow (a
    class smaller than its share gives all it has, the rest is shared by the others), each class's
    images taken by lowest seeded key hash."""
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.zeros(len(classes), dtype=np.int64)
    left = n
    while left > 0:  # water-filling: equal shares, capped by what each class has
        open_ = np.flatnonzero(quota < counts)
        share = max(1, left // len(open_))
        for c in open_:
            add = min(share, counts[c] - quota[c], left)
            quota[c] += add
            left -= add
            if left == 0:
                break
    ranks = key_ranks(keys, seed, "subset")
    keep = []
    for cls, q in zip(classes, quota):
        members = np.flatnonzero(labels == cls)
        keep.append(members[np.argsort(ranks[members], kind="stable")[:q]])
    return np.sort(np.concatenate(keep))
