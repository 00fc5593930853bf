"""Class-balanced, nested label subsets for the semi-supervised protocols (``finetune<P>``,
``distill<P>``), saved in the run directory."""

from __future__ import annotations

import io
import math

import numpy as np

from raycl.storage import filesystem
from raycl.seeding import numpy_rng

SUBSET_DIR = "label_subsets"


def label_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced subset holding ``fraction`` of ``labels``.

    Every class gets ``max(1, round(fraction * N / C))`` examples (all it has if fewer); which ones
    depends only on ``labels`` and ``seed``: each class is permuted once by the seed and its first
    examples are taken, so subsets of one seed are nested (1 % ⊂ 10 % ⊂ 100 %).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} is invalid; expected a number in (0, 1]")
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if fraction == 1.0:
        return np.arange(len(labels))
    per_class = max(1, math.floor(fraction * len(labels) / len(classes) + 0.5))
    rng = numpy_rng(seed, "label_subset")
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(keep))


def subset_file(percent: float, seed: int) -> str:
    return f"{SUBSET_DIR}/{percent:g}pct_seed{seed}.npy"


def save_subset(run_dir: str, indices: np.ndarray, percent: float, seed: int) -> str:
    """Write the indices as ``.npy`` under the run directory; return the file's path."""
    fs, root = filesystem(run_dir)
    path = f"{root}/{subset_file(percent, seed)}"
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    buf = io.BytesIO()
    np.save(buf, np.asarray(indices, dtype=np.int64))
    with fs.open_output_stream(path) as f:
        f.write(buf.getvalue())
    return path
