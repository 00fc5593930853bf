"""How many augmentation CPUs keep a run's training workers fed (``augment.actors = "auto"``).

    actors = ceil(train.workers × images/s per worker ÷ (images/s per CPU × augment.cpus_per_actor))

- **images/s per training worker**: ``augment.images_per_s_per_worker``; unset, GPU workers take
  the stated figure of :data:`GPU_IMAGES_PER_S` for the backbone (per GPU, at the figure's view size,
  scaled by pixels to the run's). No GPU was lent to this project: these figures are stated, not
  measured (the README's "Running on a cluster" says where they come from). CPU workers have no
  stated figure: ``"auto"`` on CPU needs the field set.
- **images/s per augmentation CPU**: ``augment.images_per_s_per_core``; unset, raycl's own rate
  measured by ``bench/data_throughput.py`` (:data:`AUGMENT_IMAGES_PER_CORE`, two views, JPEG decode
  included), interpolated between the measured sizes by pixels per image and scaled for multi-crop.

Torch-free and Ray-free: the driver's plan (:mod:`raycl.train.plan`) and the pipelines use it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from raycl.checks import ConfigError

# two-view images per CPU-second, JPEG decode included, raycl's fused kernel, by view side (px):
# bench/results/data_throughput.json's "raycl" per-core rows (tests/test_plan.py checks they agree)
AUGMENT_IMAGES_PER_CORE = {32: 16617, 96: 5149, 224: 695}

# images/s one GPU trains on with a two-view method (bf16, channels-last, A100 class), by backbone:
# (view side the figure is for, images/s). Stated, not measured here: see the module docstring.
GPU_IMAGES_PER_S = {
    "resnet50": (224, 1000),
    "resnet18": (224, 2500),
    "resnet18_cifar": (32, 6000),
    "tiny_cnn": (32, 20000),
}


@dataclass(frozen=True)
class Feed:
    """What a run's training workers take and what its augmentation supplies, in images/s."""

    workers: int
    per_worker: float | None  # None: unknown (CPU workers, no figure given)
    per_worker_source: str  # "set" (augment.images_per_s_per_worker) or "stated" (GPU_IMAGES_PER_S)
    per_core: float
    per_core_source: str  # "set" or "measured"
    cpus_per_actor: float
    actors: int | None  # the pool size; None for Ray Data tasks (compute = "tasks")

    @property
    def demand(self) -> float | None:
        return None if self.per_worker is None else self.workers * self.per_worker

    @property
    def cpus_needed(self) -> float | None:
        """Augmentation CPUs that supply the demand."""
        return None if self.demand is None else self.demand / self.per_core

    @property
    def supply(self) -> float | None:
        """images/s the actor pool supplies (None for tasks: they take whatever CPUs are free)."""
        return None if self.actors is None else self.actors * self.cpus_per_actor * self.per_core


def per_core_rate(crop_size: int, small_crops: int = 0, small_crop_size: int = 0) -> float:
    """raycl's measured images per CPU-second for two ``crop_size`` views (+ ``small_crops`` views of
    ``small_crop_size``): log-log interpolation in pixels between the measured sizes (the end
    segments extend beyond them), divided by the extra pixels multi-crop makes."""
    sizes = sorted(AUGMENT_IMAGES_PER_CORE)
    i = min(max(bisect.bisect_left(sizes, crop_size), 1), len(sizes) - 1)
    lo, hi = sizes[i - 1], sizes[i]
    x, xa, xb = math.log(crop_size * crop_size), math.log(lo * lo), math.log(hi * hi)
    ya, yb = math.log(AUGMENT_IMAGES_PER_CORE[lo]), math.log(AUGMENT_IMAGES_PER_CORE[hi])
    rate = math.exp(ya + (yb - ya) * (x - xa) / (xb - xa))
    pixels = 2 * crop_size ** 2
    return rate * pixels / (pixels + small_crops * small_crop_size ** 2)


def gpu_rate(backbone: str, crop_size: int) -> float | None:
    """The stated images/s of one GPU training ``backbone`` on ``crop_size`` views (None: no figure)."""
    if backbone not in GPU_IMAGES_PER_S:
        return None
    side, rate = GPU_IMAGES_PER_S[backbone]
    return rate * (side / crop_size) ** 2


def feed(cfg) -> Feed:
    """The :class:`Feed` of a validated config; ``augment.actors = "auto"`` resolved."""
    a, t = cfg.augment, cfg.train
    if a.images_per_s_per_worker is not None:
        per_worker, source = float(a.images_per_s_per_worker), "set"
    elif t.use_gpu:
        per_worker, source = gpu_rate(cfg.model.backbone, a.crop_size), "stated"
    else:
        per_worker, source = None, "unknown"
    if a.images_per_s_per_core is not None:
        per_core, core_source = float(a.images_per_s_per_core), "set"
    else:
        per_core, core_source = per_core_rate(a.crop_size, a.small_crops, a.small_crop_size), "measured"
    actors = None if a.compute == "tasks" else a.actors
    if actors == "auto":
        if per_worker is None:
            why = ("there is no stated figure for CPU training workers" if not t.use_gpu
                   else f"there is no stated GPU figure for model.backbone={cfg.model.backbone!r}")
            raise ConfigError("augment.actors", "auto", "a number of actors, or 'auto' with "
                              f"augment.images_per_s_per_worker set ({why})")
        actors = max(1, math.ceil(t.workers * per_worker / (per_core * a.cpus_per_actor) - 1e-9))
    return Feed(t.workers, per_worker, source, per_core, core_source, a.cpus_per_actor, actors)


def pool_size(cfg) -> int:
    """Augmentation actors of the run (``augment.actors``, with ``"auto"`` sized by :func:`feed`)."""
    a = cfg.augment
    return a.actors if a.actors != "auto" else feed(cfg).actors or 1
