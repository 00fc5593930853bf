"""A run's resource plan in words: what its trainers take, what its augmentation supplies, and the
cluster that holds both. ``python -m raycl config`` prints it above the settings."""

from __future__ import annotations

import math

from raycl.config import Config
from raycl.data.sizing import feed
from raycl.train.trainer import augment_cpus, run_cpus


def _rate(value: float) -> str:
    return f"{value:,.0f} images/s"


def plan_lines(cfg: Config) -> list[str]:
    """The plan of the validated config ``cfg``, one line per part."""
    t, a = cfg.train, cfg.augment
    f = feed(cfg)
    device = "1 GPU" if t.use_gpu else "no GPU"
    where = f", on nodes with {t.node_resource}" if t.node_resource else ""
    lines = [f"training: {t.workers} worker(s) × ({t.cpus_per_worker:g} CPU + {device}){where}, "
             f"{cfg.model.backbone} on {a.crop_size} px views, global batch {t.batch_size}"]
    if f.demand is None:
        lines.append("feed: the training workers' images/s is unknown (CPU workers: set "
                     "augment.images_per_s_per_worker to size the augmentation from it)")
    else:
        source = "per GPU, stated: raycl.data.sizing" if f.per_worker_source == "stated" \
            else "augment.images_per_s_per_worker"
        lines.append(f"feed: {t.workers} × {_rate(f.per_worker)} ({source}) = {_rate(f.demand)}, "
                     f"{f.cpus_needed:,.1f} augmentation CPUs at {_rate(f.per_core)} per CPU "
                     f"({'augment.images_per_s_per_core' if f.per_core_source == 'set' else 'measured'})")
    where = f" on nodes with {a.node_resource}" if a.node_resource else ""
    if f.actors is None:
        need = "" if f.cpus_needed is None else f": {math.ceil(f.cpus_needed - 1e-9):,} free CPUs keep the trainers fed"
        lines.append(f"augmentation: Ray Data tasks of {a.cpus_per_actor:g} CPU{where}, as many as free CPUs "
                     f"allow (augment.compute = 'tasks'){need}")
    else:
        sized = " (augment.actors = 'auto')" if a.actors == "auto" else ""
        line = (f"augmentation: {f.actors} actor(s) × {a.cpus_per_actor:g} CPU{where}{sized} "
                f"= {_rate(f.supply)}")
        if f.demand is not None and f.supply + 1e-9 < f.demand:
            line += (f": {f.supply / f.demand:.0%} of what the trainers take (augment.actors = 'auto' "
                     "sizes the pool to feed them)")
        lines.append(line)
    gpus = f" and {t.workers} GPU(s)" if t.use_gpu else ""
    lines.append(f"cluster: {run_cpus(cfg) + 1:g} CPUs{gpus}: {t.workers * t.cpus_per_worker:g} for training, "
                 f"{augment_cpus(cfg):g} for augmentation, 1 for Ray Data's reads")
    return lines
