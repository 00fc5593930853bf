"""Augmentation throughput: raycl's batched two-view SimCLR views vs torchvision's and albumentations'
per-image transforms.

Every method does the same work per image, JPEG decode included, with the same number of worker
processes, one torch (and OpenCV) thread each, measured in the same run (methods interleaved within
every repeat, so background load hits them alike). At 32 and 96 px the images are the first
``--images`` rows of the CIFAR-10 Parquet (JPEG bytes, read with pyarrow) and the recipe is SimCLR's
CIFAR one (below); at 224 px they are ``--photos`` photographs of about ImageNet's size, 500 × 375
JPEGs at quality 90 that the bench makes from the colour photographs scikit-image ships (random
crops of 4:3, flipped at random), and the recipe is SimCLR's ImageNet one (colour strength 1, blur
p = 0.5); raycl then decodes to 256 px (its ``imagenet`` preset's ``data.image_size``: short side
256, centre crop) and crops 224 px views, the others crop their views from the decoded photograph.
``--no-decode`` times the augmentation alone: each method starts from its own decoder's output,
decoded once before timing.

- ``torchvision``: a map-style ``Dataset`` whose item is one image: PIL decode → RGB [→ ``Resize``
  to the view size] → twice ``Compose([RandomResizedCrop(size), RandomHorizontalFlip(),
  RandomApply([ColorJitter(0.8s, 0.8s, 0.8s, 0.2s)], p=0.8), RandomGrayscale(0.2), ToTensor()])``
  (SimCLR's CIFAR recipe at colour strength s = 0.5: jitter 0.4/0.4/0.4/0.1), batched by a
  ``DataLoader`` (``batch_size`` images, ``num_workers = --cpus``).
- ``albumentations``: as torchvision, with OpenCV: ``cv2.imdecode`` → RGB [→ ``cv2.resize``] →
  twice ``Compose([RandomResizedCrop((size, size)), HorizontalFlip(), ColorJitter(0.8s, 0.8s, 0.8s,
  0.2s, p=0.8), ToGray(p=0.2)])``, uint8 HWC numpy views, batched by the same ``DataLoader``.
- ``raycl``: a ``Dataset`` whose item is one batch of ``batch_size`` encoded images, run by
  :class:`raycl.data.augmenter.Augmenter` (what an ``AugmentActor`` / ``augment_task`` runs:
  ``decode_images`` + ``make_views("simclr", color_strength=s, blur=False)``), through a
  ``DataLoader`` with ``batch_size=None`` and the same ``num_workers``: same processes, same
  transfer to the consumer.  Default backend ``"auto"``: the fused C kernel of
  :mod:`raycl.data.fused` (built before timing starts).
- ``raycl_torch_ops``: the same with ``backend="torch"`` (the batched torch ops, no compiled
  kernel): what raycl does on a machine without a C compiler.
- ``raycl_ray_data`` (``--ray``): the same ``Augmenter`` as ``map_batches`` tasks (the ``tiny``
  preset's ``augment.compute = "tasks"`` path) on a local Ray with ``num_cpus = --cpus``; Ray start-up
  and the first (warm-up) execution are not timed.

Size 96 (``--sizes 32 96``): the 32 px JPEGs are decoded and resized to 96 px as part of decode
(raycl's ``data.image_size = 96``: ``decode_images(..., 96)``; torchvision: ``Resize(96)`` on the
PIL image), then cropped and resized to 96 px views.  That is the work a 96 px run (STL-10 scale)
does per image; the alternative (crop the 32 px image and upsample the crop to 96) is cheaper for both.
Blur is off on both sides (the listed torchvision recipe has none); ``--blur`` adds SimCLR's blur
(p = 0.5, kernel 10 % of the side, σ ∈ [0.1, 2]) to both.

Outputs: raycl uint8 NCHW views; torchvision float32 (``ToTensor``) — each library's normal output.

``--harness inline`` runs every method in this one process on one thread instead (``torch`` and
OpenCV limited to one thread; the per-image methods' items collated into batches by the same
``default_collate``, in ordinary memory): the per-core cost of each library's own work, as the
scale-out issue measured it, without a ``DataLoader``'s transfer of every batch between processes
through shared memory (0.2 to 0.3 ms per image of two 224 px views, paid by every method).  The
allocator setting raycl's augmenter makes in its process (``raycl.runtime.keep_freed_memory``) is
made first, so it applies to every method alike.

    python bench/data_throughput.py [--images 5000] [--photos 1000] [--cpus 2] [--sizes 32 96 224]
        [--repeats 3] [--ray] [--no-decode] [--harness dataloader|inline]
        [--out bench/results/data_throughput[_no_decode][_inline].json]

Prints a table (method, size, cpus, images/s, per core, ratio vs torchvision and vs albumentations:
medians over repeats,
with min–max; and images per CPU-second of the worker processes plus the consumer, read from /proc,
which is far less sensitive than wall time to other jobs on a shared machine) and writes JSON with
every repeat.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from raycl.data.augmenter import Augmenter

# the shared CIFAR-10 Parquet beside the checkout (../shared/datasets/cifar10), never copied in
DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10"
                   / "train.parquet")


def load_encoded(path: str, n: int) -> tuple[list[bytes], np.ndarray]:
    table = pq.read_table(path, columns=["image", "label"]).slice(0, n)
    return table.column("image").to_pylist(), table.column("label").to_numpy().astype(np.int64)


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def make_photos(n: int, seed: int = 0, size: tuple[int, int] = (500, 375),
                quality: int = 90) -> tuple[list[bytes], np.ndarray]:
    """``n`` JPEGs of ``size`` (width, height) at ``quality``: random 4:3 crops (a quarter to all of
    the largest such crop) of scikit-image's colour photographs, resized, flipped at random."""
    import skimage.data

    rng = np.random.default_rng(seed)
    sources = [Image.fromarray(getattr(skimage.data, name)()[..., :3]) for name in PHOTOS]
    out, labels = [], np.zeros(n, dtype=np.int64)
    for i in range(n):
        k = int(rng.integers(len(sources)))
        src, labels[i] = sources[k], k
        w = min(src.width, src.height * 4 // 3) * float(np.sqrt(rng.uniform(0.25, 1.0)))
        h = w * 3 / 4
        x, y = rng.uniform(0, src.width - w), rng.uniform(0, src.height - h)
        img = src.resize(size, Image.BICUBIC, box=(x, y, x + w, y + h))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        out.append(buf.getvalue())
    return out, labels


def recipe(size: int, strength: float, blur: bool) -> dict:
    """What each size measures: SimCLR's CIFAR recipe up to 96 px (``strength``, ``blur`` as given),
    its ImageNet recipe at 224 px (colour 1, blur, raycl decoding to its preset's 256 px)."""
    if size >= 224:
        return {"strength": 1.0, "blur": True, "image_size": 256 * size // 224, "resize": False}
    return {"strength": strength, "blur": blur, "image_size": size, "resize": True}


# --------------------------------------------------------------------------- torchvision
def torchvision_transform(size: int, strength: float, blur: bool):
    from torchvision import transforms as T

    s = strength
    ops = [
        T.RandomResizedCrop(size),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]
    if blur:
        k = max(3, int(0.1 * size) | 1)
        ops.append(T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5))
    ops.append(T.ToTensor())
    return T.Compose(ops)


def pil_decode(data: bytes, size: int, resize: bool) -> Image.Image:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    if resize and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return img


class PerImagePairs(Dataset):
    """One image per item: decode (and resize to ``size`` if ``resize``), two views; with
    ``decoded``, the images decoded before timing. Subclasses give the library's decoder and views."""

    def __init__(self, images: list[bytes], labels: np.ndarray, size: int, strength: float,
                 blur: bool, resize: bool = True, decoded: bool = False):
        self.labels, self.size, self.resize = labels, size, resize
        self.transform = self.make_transform(size, strength, blur)
        self.images = [self.decode(b, size, resize) for b in images] if decoded else images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = self.images[i]
        if isinstance(img, bytes):
            img = self.decode(img, self.size, self.resize)
        return self.view(img), self.view(img), int(self.labels[i])


class TorchvisionPairs(PerImagePairs):
    decode = staticmethod(pil_decode)
    make_transform = staticmethod(torchvision_transform)

    def view(self, img):
        return self.transform(img)


# --------------------------------------------------------------------------- albumentations
def albumentations_transform(size: int, strength: float, blur: bool):
    import albumentations as A
    import cv2

    cv2.setNumThreads(1)  # one thread per worker process, as torch's (the forked workers inherit it)
    s = strength
    ops = [A.RandomResizedCrop((size, size)), A.HorizontalFlip(),
           A.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8), A.ToGray(p=0.2)]
    if blur:
        ops.append(A.GaussianBlur(blur_limit=(max(3, int(0.1 * size) | 1),) * 2, sigma_limit=(0.1, 2.0), p=0.5))
    return A.Compose(ops)


def cv2_decode(data: bytes, size: int, resize: bool) -> np.ndarray:
    import cv2

    img = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if resize and img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return img


class AlbumentationsPairs(PerImagePairs):
    """As :class:`TorchvisionPairs`, with OpenCV's decoder and albumentations' transforms."""

    decode = staticmethod(cv2_decode)
    make_transform = staticmethod(albumentations_transform)

    def view(self, img):
        return self.transform(image=img)["image"]


# --------------------------------------------------------------------------- raycl
class RayclBatches(Dataset):
    """One batch of encoded images per item, augmented by raycl's :class:`Augmenter`."""

    def __init__(self, images: list[bytes], labels: np.ndarray, size: int, strength: float,
                 blur: bool, batch_size: int, backend: str = "auto", image_size: int | None = None,
                 decoded: bool = False):
        from raycl.data.decode import decode_images

        image_size = image_size or size
        self.blocks = []
        for start in range(0, len(images), batch_size):
            stop = min(start + batch_size, len(images))
            chunk = np.array(images[start:stop], dtype=object)
            self.blocks.append({"image": decode_images(chunk, image_size) if decoded else chunk,
                                "label": labels[start:stop],
                                "id": np.arange(start, stop, dtype=np.int64)})
        self.kwargs = {"recipe": "simclr", "image_size": image_size, "crop_size": size,
                       "color_strength": strength, "blur": blur, "seed": 0, "backend": backend}
        self.augmenter = None

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int):
        if self.augmenter is None:  # built in the worker
            self.augmenter = Augmenter(**self.kwargs)
        return self.augmenter(self.blocks[i], epoch=0)


def _loader(ds: Dataset, cpus: int, batch_size: int | None) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=cpus,
                      persistent_workers=cpus > 0, prefetch_factor=4 if cpus > 0 else None)


def _proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process from /proc (Linux), None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _worker_cpu(loader: DataLoader) -> float | None:
    it = getattr(loader, "_iterator", None)
    workers = getattr(it, "_workers", None) if it is not None else None
    if not workers:
        return None
    times = [_proc_cpu_seconds(w.pid) for w in workers]
    return None if any(t is None for t in times) else sum(times)


def _epoch(loader: DataLoader) -> tuple[float, int, float | None]:
    """Wall seconds, images, and CPU seconds (workers + this process) of one pass."""
    cpu0, main0 = _worker_cpu(loader), time.process_time()
    start, n = time.perf_counter(), 0
    for batch in loader:
        first = batch["view0"] if isinstance(batch, dict) else batch[0]
        n += len(first)
    wall = time.perf_counter() - start
    cpu1 = _worker_cpu(loader)
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0 + time.process_time() - main0
    return wall, n, cpu


def _inline_epoch(ds: Dataset, batch_size: int | None) -> tuple[float, int, float]:
    """Wall seconds, images and CPU seconds of one pass over ``ds`` in this process: per-image items
    collated ``batch_size`` at a time (as a DataLoader worker does), or one batch per item."""
    from torch.utils.data import default_collate

    cpu0, start, n = time.process_time(), time.perf_counter(), 0
    if batch_size is None:
        for i in range(len(ds)):
            n += len(ds[i]["view0"])
    else:
        for first in range(0, len(ds), batch_size):
            batch = default_collate([ds[i] for i in range(first, min(first + batch_size, len(ds)))])
            n += len(batch[0])
    return time.perf_counter() - start, n, time.process_time() - cpu0


# --------------------------------------------------------------------------- Ray Data
def _ray_dataset(images, labels, size, strength, blur, batch_size, cpus, image_size):
    import pyarrow as pa
    import ray

    from raycl.data.workers import augment_task

    if not ray.is_initialized():
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    table = pa.table({"image": pa.array(images, pa.binary()), "label": labels,
                      "id": np.arange(len(images), dtype=np.int64)})
    blocks = [table.slice(i, batch_size) for i in range(0, table.num_rows, batch_size)]
    kwargs = {"recipe": "simclr", "image_size": image_size, "crop_size": size,
              "color_strength": strength, "blur": blur, "seed": 0, "clock": None, "threads": 1}
    return ray.data.from_arrow(blocks).map_batches(
        augment_task, fn_kwargs=kwargs, batch_size=batch_size, batch_format="numpy", num_cpus=1)


def _ray_epoch(ds) -> tuple[float, int, None]:
    start, n = time.perf_counter(), 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        n += len(batch["view0"])
    return time.perf_counter() - start, n, None  # Ray's workers are not our children: no CPU time


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--images", type=int, default=5000, help="CIFAR-10 images (32 and 96 px)")
    p.add_argument("--photos", type=int, default=1000, help="500 x 375 photographs made here (224 px)")
    p.add_argument("--cpus", type=int, default=2, help="DataLoader workers / Ray CPUs")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 96, 224])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--strength", type=float, default=0.5, help="SimCLR colour strength s")
    p.add_argument("--blur", action="store_true", help="add SimCLR's blur (p=0.5) up to 96 px")
    p.add_argument("--no-decode", dest="decode", action="store_false",
                   help="time the augmentation alone: images decoded by each method before timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ray", action="store_true", help="also time raycl through Ray Data map_batches")
    p.add_argument("--harness", choices=("dataloader", "inline"), default="dataloader",
                   help="inline: every method in this process on one thread, no DataLoader")
    p.add_argument("--out", default=None, help="default: bench/results/data_throughput.json, "
                   "data_throughput_no_decode.json with --no-decode, with _inline before .json "
                   "for --harness inline")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = (f"bench/results/data_throughput{'_no_decode' if not args.decode else ''}"
                    f"{'_inline' if args.harness == 'inline' else ''}.json")
    if args.cpus < 1:
        p.error("--cpus must be >= 1")
    if args.harness == "inline":
        if args.ray:
            p.error("--ray times Ray Data's own workers: not with --harness inline")
        args.cpus = 1  # this process, one thread
        torch.set_num_threads(1)
        import cv2

        from raycl.runtime import keep_freed_memory

        cv2.setNumThreads(1)
        keep_freed_memory()  # what raycl's augmenter sets in its process, here for every method alike

    from raycl.data import fused

    print(f"fused kernel: {fused.library()._name}", flush=True)  # build it outside the timing
    where = "this process, one thread" if args.harness == "inline" else f"{args.cpus} worker processes"
    print(f"{where}; batch {args.batch_size}; decode {'included' if args.decode else 'excluded'}; "
          f"{args.repeats} repeats; load average {os.getloadavg()[0]:.2f}", flush=True)
    cifar = photos = None
    rows = []
    for size in args.sizes:
        r = recipe(size, args.strength, args.blur)
        if r["resize"]:
            cifar = cifar or load_encoded(args.data, args.images)
            images, labels = cifar
            source = f"{len(images)} CIFAR-10 JPEGs from {args.data}"
        else:
            photos = photos or make_photos(args.photos)
            images, labels = photos
            source = f"{len(images)} 500x375 JPEGs (q90) made from scikit-image's photographs"
        print(f"{size} px: {source}; colour strength {r['strength']}, blur {r['blur']}", flush=True)
        common = {"size": size, "strength": r["strength"], "blur": r["blur"], "decoded": not args.decode}
        raycl_kw = {**common, "batch_size": args.batch_size, "image_size": r["image_size"]}
        methods = {
            "torchvision": _loader(TorchvisionPairs(images, labels, resize=r["resize"], **common),
                                   args.cpus, args.batch_size),
            "albumentations": _loader(AlbumentationsPairs(images, labels, resize=r["resize"], **common),
                                      args.cpus, args.batch_size),
            "raycl": _loader(RayclBatches(images, labels, **raycl_kw), args.cpus, None),
            "raycl_torch_ops": _loader(RayclBatches(images, labels, backend="torch", **raycl_kw),
                                       args.cpus, None),
        }
        if args.harness == "inline":
            runners = {name: (lambda ld=ld: _inline_epoch(ld.dataset, ld.batch_size))
                       for name, ld in methods.items()}
        else:
            runners = {name: (lambda ld=ld: _epoch(ld)) for name, ld in methods.items()}
        if args.ray and args.decode:
            ds = _ray_dataset(images, labels, size, r["strength"], r["blur"], args.batch_size,
                              args.cpus, r["image_size"])
            runners["raycl_ray_data"] = lambda ds=ds: _ray_epoch(ds)
        for run in runners.values():  # warm-up: worker start-up, imports, caches
            run()
        times: dict[str, list[float]] = {name: [] for name in runners}
        cpu: dict[str, list[float | None]] = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, run in runners.items():
                seconds, n, cpu_seconds = run()
                assert n == len(images), (name, n)
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
        rates = {name: [len(images) / t for t in ts] for name, ts in times.items()}
        cpu_rates = {name: [len(images) / c for c in cs] if all(cs) else None
                     for name, cs in cpu.items()}
        base = statistics.median(rates["torchvision"])
        albu = statistics.median(rates["albumentations"])
        cpu_base = cpu_rates["torchvision"]
        for name, rs in rates.items():
            med = statistics.median(rs)
            c = cpu_rates[name]
            rows.append({
                "method": name, "size": size, "cpus": args.cpus, "images": len(images),
                "source": source, "decode": args.decode, "harness": args.harness,
                "strength": r["strength"], "blur": r["blur"],
                "images_per_s": med, "images_per_s_min": min(rs), "images_per_s_max": max(rs),
                "per_core": med / args.cpus, "ratio_vs_torchvision": med / base,
                "ratio_vs_albumentations": med / albu,
                "ratios_per_repeat": [x / y for x, y in zip(rs, rates["torchvision"])],
                "albumentations_ratios_per_repeat": [x / y for x, y in zip(rs, rates["albumentations"])],
                "seconds": times[name],
                "cpu_seconds": cpu[name],
                "images_per_cpu_s": statistics.median(c) if c else None,
                "cpu_ratio_vs_torchvision": (statistics.median(c) / statistics.median(cpu_base)
                                             if c and cpu_base else None),
            })
        del methods

    header = f"{'method':<16} {'size':>4} {'cpus':>4} {'images/s':>10} {'(min-max)':>15} " \
             f"{'per core':>9} {'vs tv':>6} {'ratio min-max':>14} {'vs albu':>8} {'img/cpu-s':>10} {'vs tv':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        spread = f"{r['images_per_s_min']:.0f}-{r['images_per_s_max']:.0f}"
        rs = r["ratios_per_repeat"]
        per_cpu = f"{r['images_per_cpu_s']:.0f}" if r["images_per_cpu_s"] else "-"
        cpu_ratio = f"{r['cpu_ratio_vs_torchvision']:.2f}x" if r["cpu_ratio_vs_torchvision"] else "-"
        print(f"{r['method']:<16} {r['size']:>4} {r['cpus']:>4} {r['images_per_s']:>10.0f} "
              f"{spread:>15} {r['per_core']:>9.0f} {r['ratio_vs_torchvision']:>5.2f}x "
              f"{min(rs):>6.2f}-{max(rs):<7.2f} {r['ratio_vs_albumentations']:>7.2f}x {per_cpu:>10} {cpu_ratio:>6}")
    print("images/s: wall clock, median over repeats; per core = images/s / cpus; img/cpu-s: images "
          "per CPU-second of the worker processes + the consumer (from /proc; inline: of this process), "
          "less sensitive to other load on the machine")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import albumentations
    import cv2

    meta = {"data": args.data, "images": args.images, "photos": args.photos, "cpus": args.cpus,
            "batch_size": args.batch_size, "strength": args.strength, "blur": args.blur,
            "decode": args.decode, "harness": args.harness,
            "albumentations": albumentations.__version__, "opencv": cv2.__version__,
            "repeats": args.repeats, "torch": torch.__version__, "python": sys.version.split()[0],
            "machine": platform.processor() or platform.machine(), "os_cpu_count": os.cpu_count(),
            "load_average_after": os.getloadavg()[0],
            "note": "two views per image, JPEG decode " + ("included" if args.decode else "excluded")
                    + ("; one process, one thread" if args.harness == "inline" else
                       f"; {args.cpus} DataLoader worker processes")
                    + "; medians over repeats; 224 px: SimCLR's ImageNet recipe on 500x375 photographs"}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
