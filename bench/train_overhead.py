"""Ray Train overhead: step time of raycl's training loop under Ray Train vs a plain PyTorch loop.

Same model, same batch, same optimizer, same thread count, one worker, measured in one run:

- ``plain``: ``raycl.train.train_step`` in this process, on a fixed batch.
- ``ray_train``: the same steps inside a ``TorchTrainer`` worker (1 worker, the batch shipped in).
- ``ray_train_data``: inside the worker, the batches streamed from a Ray dataset of the same views
  through ``get_dataset_shard(...).iter_torch_batches`` (the training loop's real data path, minus
  the augmentation, which ``bench/data_throughput.py`` measures).

Prints a table and writes JSON (default ``bench/results/train_overhead.json``). Target: Ray ≤ 5 %.

    python bench/train_overhead.py [--preset tiny] [--batch 128] [--steps 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import ray
import ray.cloudpickle
import ray.train
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from raycl.config import Config, preset
from raycl.optim import build_optimizer
from raycl.train import build_model, train_step

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_views(batch: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
            for _ in range(2)]


def time_steps(cfg: Config, batches, warmup: int) -> list[float]:
    """Seconds per step after ``warmup`` steps; ``batches`` yields lists of views."""
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    times, t = [], time.perf_counter()
    for i, views in enumerate(batches):
        train_step(model, opt, views)
        now = time.perf_counter()
        if i >= warmup:
            times.append(now - t)
        t = now
    return times


def _repeat(views, n):
    for _ in range(n):
        yield views


def _worker(loop_config: dict) -> None:
    cfg = Config.from_dict(loop_config["config"])
    torch.set_num_threads(loop_config["threads"])
    n, warmup = loop_config["steps"] + loop_config["warmup"], loop_config["warmup"]
    if loop_config["mode"] == "ray_train":
        times = time_steps(cfg, _repeat(loop_config["views"], n), warmup)
    else:
        it = ray.train.get_dataset_shard("train").iter_torch_batches(
            batch_size=cfg.train.batch_size, drop_last=True)
        times = time_steps(cfg, ([b["view0"], b["view1"]] for b in it), warmup)
    with open(loop_config["out"], "w") as f:  # Result.metrics keeps only checkpointed reports
        json.dump(times, f)
    ray.train.report({"median_step_s": statistics.median(times)})


def run_in_ray(mode: str, cfg: Config, views, args, storage: str) -> list[float]:
    datasets = None
    if mode == "ray_train_data":
        v0, v1 = views[0].numpy(), views[1].numpy()
        rows = (args.steps + args.warmup) * args.batch
        datasets = {"train": ray.data.range(rows).map_batches(
            lambda b: {"view0": v0[b["id"] % len(v0)], "view1": v1[b["id"] % len(v1)]},
            batch_size=args.batch).materialize()}
    TorchTrainer(
        _worker,
        train_loop_config={"config": cfg.to_dict(), "views": views, "steps": args.steps,
                           "warmup": args.warmup, "threads": args.threads, "mode": mode,
                           "out": os.path.join(storage, f"{mode}.json")},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": args.threads}),
        run_config=RunConfig(name=f"bench-{mode}", storage_path=storage),
        datasets=datasets,
    ).fit()
    with open(os.path.join(storage, f"{mode}.json")) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "train_overhead.json"))
    args = parser.parse_args()

    cfg = preset(args.preset).override({"train.workers": 1, "train.batch_size": args.batch})
    views = make_views(args.batch, cfg.augment.crop_size)
    torch.set_num_threads(args.threads)
    ray.init(num_cpus=max(os.cpu_count() or 1, args.threads + 2), log_to_driver=False)
    storage = os.path.abspath(os.path.join(os.path.dirname(args.out), "ray_storage"))
    os.makedirs(storage, exist_ok=True)

    timings = {"plain": time_steps(cfg, _repeat(views, args.steps + args.warmup), args.warmup)}
    for mode in ("ray_train", "ray_train_data"):
        timings[mode] = run_in_ray(mode, cfg, views, args, storage)
    timings["plain_again"] = time_steps(cfg, _repeat(views, args.steps + args.warmup), args.warmup)

    base = statistics.median(timings["plain"] + timings["plain_again"])
    rows = []
    print(f"\nRay Train overhead, preset={args.preset}, batch={args.batch}, threads={args.threads}, "
          f"{args.steps} timed steps each")
    print(f"{'loop':<16}{'median step ms':>16}{'p90 ms':>10}{'ratio':>8}")
    for mode, times in timings.items():
        med = statistics.median(times)
        p90 = float(np.percentile(times, 90))
        rows.append({"loop": mode, "median_step_s": med, "p90_step_s": p90, "ratio_to_plain": med / base,
                     "steps": len(times)})
        print(f"{mode:<16}{1000 * med:>16.1f}{1000 * p90:>10.1f}{med / base:>8.3f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"preset": args.preset, "batch": args.batch, "threads": args.threads,
                   "torch": torch.__version__, "ray": ray.__version__, "results": rows}, f, indent=2)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
