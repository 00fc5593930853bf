"""Every derived seed of a run, from one place.

A run has one seed (``train.seed``). Each random stream it needs (the views of a batch, a shuffle,
MoCo's key permutation, a kNN bank subset, a probe's initialisation) gets its own seed from
``(seed, purpose, *keys)`` through NumPy's :class:`~numpy.random.SeedSequence`, which mixes its
entropy so that nearby inputs give unrelated streams, instead of hand-picked arithmetic like
``seed * 1_000_003 + step`` whose streams can collide. Torch-free, so the data layer can use it.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["derive_seed", "numpy_rng"]


def derive_seed(seed: int, purpose: str, *keys: int) -> int:
    """A 63-bit seed for the stream ``purpose`` (e.g. ``"views"``) at ``keys`` (e.g. epoch, row id).

    Deterministic across processes and machines (the purpose is hashed with CRC-32, not Python's
    salted ``hash``); fits ``torch.Generator.manual_seed`` and ``np.random.default_rng``.
    """
    words = [int(seed), zlib.crc32(purpose.encode())] + [int(k) for k in keys]
    if any(w < 0 for w in words):
        raise ValueError(f"seeds and keys must be >= 0, got seed={seed!r}, keys={keys!r}")
    state = np.random.SeedSequence(words).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))


def numpy_rng(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """A NumPy generator on the stream ``derive_seed(seed, purpose, *keys)``."""
    return np.random.default_rng(derive_seed(seed, purpose, *keys))
