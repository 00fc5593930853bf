"""Does the driver's memory grow with the data? Driver peak RSS and time to the first augmented batch
for a Parquet source of 6 000 and of 60 000 CIFAR-10 images, and for a folder of 20 000 JPEG files.

The Parquet sources replicate the rows of ``../shared/datasets/cifar10/train.parquet`` into several
files (row groups of 2 500) under a scratch directory; the folder holds JPEGs the benchmark writes
(10 classes, 32-48 px). Each measurement runs in a fresh process (``--child``) that starts a local
Ray, builds the run's pipelines (list, split, kNN sets) and takes one batch from the training
stream; its ``ru_maxrss`` is the driver's peak. Prints a table and writes JSON (default
``bench/results/input_scale.json``).

    python bench/input_scale.py [--scratch /tmp/raycl-input-scale] [--sizes 6000,60000] [--folder 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10" / "train.parquet"
ROW_GROUP = 2500
ROWS_PER_FILE = 10_000


def make_parquet(root: Path, n: int) -> Path:
    """``root/parquet-<n>/train/part-*.parquet``: ``n`` CIFAR-10 rows (repeated as needed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = root / f"parquet-{n}" / "train"
    if out.is_dir():
        return out.parent
    out.mkdir(parents=True)
    source = pq.read_table(CIFAR, columns=["image", "label"])
    for f, start in enumerate(range(0, n, ROWS_PER_FILE)):
        rows = np.arange(start, min(n, start + ROWS_PER_FILE)) % source.num_rows
        pq.write_table(source.take(pa.array(rows)), out / f"part-{f:03d}.parquet", row_group_size=ROW_GROUP)
    return out.parent


def make_folder(root: Path, n: int) -> Path:
    """``root/folder-<n>/<class>/<i>.jpg``: ``n`` small JPEGs of noise tinted by class."""
    from PIL import Image

    out = root / f"folder-{n}"
    if out.is_dir():
        return out
    rng = np.random.default_rng(0)
    for i in range(n):
        cls = out / f"class{i % 10}"
        cls.mkdir(parents=True, exist_ok=True)
        side = int(rng.integers(32, 49))
        image = rng.integers(0, 160, (side, side, 3), dtype=np.uint8)
        image[..., i % 3] += 90
        Image.fromarray(image).save(cls / f"{i:06d}.jpg", quality=90)
    return out


def child(source: str, path: str) -> None:
    """One measurement, in this fresh process: prints a JSON line."""
    started = time.perf_counter()
    import ray

    import raycl
    from raycl.data.pipeline import build_pipelines
    from raycl.train.trainer import ensure_ray

    cfg = raycl.make_config("simclr", 1, "tiny", **{"data.source": source, "data.path": path,
                                                    "data.num_images": None}).validate()
    ensure_ray(cfg)
    t0 = time.perf_counter()
    pipes = build_pipelines(cfg)
    built = time.perf_counter()
    batch = next(iter(pipes.datasets["train"].iter_batches(batch_size=cfg.local_batch_size,
                                                             batch_format="numpy")))
    first = time.perf_counter()
    print(json.dumps({"source": source, "images": pipes.num_train, "batch": len(batch["id"]),
                      "ray_start_s": round(t0 - started, 2), "build_s": round(built - t0, 2),
                      "first_batch_s": round(first - t0, 2),
                      "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
                      }))
    ray.shutdown()


def measure(source: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", source, str(path)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scratch", default="/tmp/raycl-input-scale")
    parser.add_argument("--sizes", default="6000,60000")
    parser.add_argument("--folder", type=int, default=20_000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "input_scale.json"))
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    scratch = Path(args.scratch)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append({"data": f"parquet {n}", **measure("parquet", make_parquet(scratch, n))})
    if args.folder:
        t = time.perf_counter()
        folder = make_folder(scratch, args.folder)
        print(f"(folder of {args.folder} JPEGs ready in {time.perf_counter() - t:.0f} s)", flush=True)
        rows.append({"data": f"folder {args.folder}", **measure("folder", folder)})
    print(f"{'data':<16}{'train images':>14}{'build s':>10}{'first batch s':>15}{'driver peak RSS MB':>20}")
    for r in rows:
        print(f"{r['data']:<16}{r['images']:>14}{r['build_s']:>10}{r['first_batch_s']:>15}"
              f"{r['driver_peak_rss_mb']:>20}")
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    Path(args.out).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
