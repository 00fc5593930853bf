"""Training throughput on 1, 2 and 4 Ray Train workers, and the augmentation CPUs that keep them fed.

Each worker count runs the real training step (``raycl.train.train_step`` on the data-parallel model
``prepare_model`` makes, losses over the global batch) on the same global batch of fixed uint8 views,
so augmentation is not part of the time: the step's images/s is what the trainers would take from
the input path. The machine's CPUs are split evenly between the workers (``--cpus``, default all:
0.5 CPU each for 4 workers on 2 cores). The augmentation CPUs needed are that rate divided by raycl's
measured images per CPU-second at the view size (:func:`raycl.data.sizing.per_core_rate`, from
``bench/data_throughput.py``). Then the same sum for 16 GPU workers at 224 px from the stated
per-GPU figure (:data:`raycl.data.sizing.GPU_IMAGES_PER_S`).

    python bench/scaling.py [--methods simclr byol] [--workers 1 2 4] [--batch 256] [--steps 15]

Prints a table and writes JSON (default ``bench/results/scaling.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import ray
import ray.cloudpickle
import ray.train
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from raycl import distributed
from raycl.config import Config, preset
from raycl.data.sizing import GPU_IMAGES_PER_S, per_core_rate
from raycl.methods import Progress
from raycl.optim import build_optimizer
from raycl.train import build_model, train_step

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _worker(loop_config: dict) -> None:
    cfg = Config.from_dict(loop_config["config"])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    method = build_model(cfg)
    model = ray.train.torch.prepare_model(method, parallel_strategy_kwargs={"broadcast_buffers": False})
    optimizer = build_optimizer(method, cfg)
    rank, world = distributed.rank(), distributed.world_size()
    b = loop_config["views"][0].shape[0] // world
    views = [v[rank * b:(rank + 1) * b] for v in loop_config["views"]]
    times, t = [], time.perf_counter()
    total = loop_config["warmup"] + loop_config["steps"]
    for i in range(total):
        train_step(model, optimizer, views, method, Progress(i, 0, total, total))
        distributed.barrier()  # a step ends when every worker has it
        now = time.perf_counter()
        if i >= loop_config["warmup"]:
            times.append(now - t)
        t = now
    if rank == 0:  # Result.metrics keeps only checkpointed reports
        with open(loop_config["out"], "w") as f:
            json.dump(times, f)
    ray.train.report({"median_step_s": statistics.median(times)})


def step_times(cfg: Config, workers: int, cpus: float, views, args, storage: str) -> list[float]:
    out = os.path.join(storage, f"{cfg.method.name}-{workers}.json")
    TorchTrainer(
        _worker,
        train_loop_config={"config": cfg.to_dict(), "views": views, "steps": args.steps,
                           "warmup": args.warmup, "out": out},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cpus / workers}),
        run_config=RunConfig(name=f"scaling-{cfg.method.name}-{workers}", storage_path=storage),
    ).fit()
    with open(out) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["simclr", "byol"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cpus", type=float, default=float(os.cpu_count() or 1))
    parser.add_argument("--gpus", type=int, default=16, help="GPU workers of the 224 px calculation")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "scaling.json"))
    args = parser.parse_args()

    ray.init(num_cpus=int(args.cpus) + 1, log_to_driver=False, logging_level="WARNING")
    g = torch.Generator().manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for method in args.methods:
            cfg = preset("tiny", method).override({"train.batch_size": args.batch})
            size = cfg.augment.crop_size
            views = [torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8, generator=g)
                     for _ in range(2)]
            rate = per_core_rate(size)
            for workers in args.workers:
                times = step_times(cfg.override({"train.workers": workers}), workers, args.cpus, views,
                                   args, storage)
                step = statistics.median(times)
                rows.append({"method": method, "workers": workers, "cpus_per_worker": args.cpus / workers,
                             "batch": args.batch, "median_step_s": step, "steps": len(times),
                             "images_per_s": args.batch / step, "augment_per_core": rate,
                             "augment_cpus_needed": args.batch / step / rate})
    print(f"\nTraining throughput (preset tiny, global batch {args.batch}, {args.cpus:g} CPUs shared by the "
          "workers, fixed views) and the augmentation CPUs that feed it")
    print(f"{'method':<8}{'workers':>8}{'CPU each':>10}{'step ms':>10}{'images/s':>10}{'aug CPUs':>10}")
    for r in rows:
        print(f"{r['method']:<8}{r['workers']:>8}{r['cpus_per_worker']:>10.2f}{1000 * r['median_step_s']:>10.1f}"
              f"{r['images_per_s']:>10.0f}{r['augment_cpus_needed']:>10.2f}")
    side, per_gpu = GPU_IMAGES_PER_S["resnet50"]
    per_core = per_core_rate(side)
    gpu = {"gpus": args.gpus, "view_px": side, "images_per_s_per_gpu": per_gpu,
           "augment_per_core": per_core, "cpus_per_gpu": per_gpu / per_core,
           "augment_cpus": args.gpus * per_gpu / per_core}
    print(f"\n{args.gpus} GPU workers, ResNet-50 at {side} px: {args.gpus} × {per_gpu} images/s (stated) = "
          f"{args.gpus * per_gpu:,} images/s; at {per_core:.0f} images/s per augmentation CPU (measured) that is "
          f"{gpu['cpus_per_gpu']:.1f} CPUs per GPU, {gpu['augment_cpus']:.1f} in all")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"meta": {"cpus": args.cpus, "os_cpu_count": os.cpu_count(), "torch": torch.__version__,
                            "ray": ray.__version__, "python": platform.python_version(),
                            "load_average_after": os.getloadavg()[0]},
                   "results": rows, "sixteen_gpus": gpu}, f, indent=1)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
