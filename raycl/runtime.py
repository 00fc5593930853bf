"""Process-level settings: raycl's cache folder, and what makes its batched tensor work fast on CPU."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 256 << 20


def cache_dir() -> Path:
    """Where raycl keeps what it makes once and reuses (the compiled kernel, the embedded data,
    downloaded datasets): ``$RAYCL_CACHE_DIR``, default ``~/.cache/raycl``."""
    return Path(os.environ.get("RAYCL_CACHE_DIR") or Path.home() / ".cache" / "raycl")


@functools.lru_cache(maxsize=1)
def keep_freed_memory(keep_bytes: int = _KEEP_BYTES) -> bool:
    """Let glibc's malloc reuse freed blocks of up to ``keep_bytes`` instead of returning them to the OS.

    By default glibc serves blocks above a (dynamic, at most 32 MiB) threshold with ``mmap`` and gives
    them back on ``free``, and trims the heap top: every batch-sized temporary tensor then costs fresh
    page faults (the README's benchmark section has the figures). Raising the mmap and trim
    thresholds keeps such blocks in the heap for reuse; the price is that a process holds on to up
    to about ``keep_bytes`` of freed memory. Same effect as the environment variables
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``.
    Returns whether the setting took (False off glibc, e.g. macOS, where nothing changes).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, keep_bytes), (_M_TRIM_THRESHOLD, 2 * keep_bytes),
        (_M_TOP_PAD, 16 << 20)))
    if not ok:
        log.debug("mallopt refused the thresholds; the allocator keeps its defaults")
    return ok


def on_driver_node() -> dict:
    """Ray actor options that place an actor on this process's node, as Ray Train places its
    controller (a node-id label selector; a soft node affinity is not kept by Ray 2.60's scheduler
    for 0-CPU actors): the state a run keeps beside its driver (failures, the epoch clock, the
    progress queue) must not die with a worker node."""
    import ray
    from ray._raylet import RAY_NODE_ID_KEY  # the default node label Ray Train's controller uses

    return {"label_selector": {RAY_NODE_ID_KEY: ray.get_runtime_context().get_node_id()}}
