"""Pre-train briefly on a CIFAR-10 subset, then run the evaluation protocols and time each.

Reads the CIFAR-10 Parquet files (``train.parquet`` / ``test.parquet``, JPEG bytes + labels) from
``--data`` (default: ``../shared/datasets/cifar10`` beside the checkout) in place; nothing is copied.

    python experiments/evaluate_cifar10.py [--images 10000] [--test-images 2000] [--epochs 5]
        [--method simclr] [--protocols knn linear finetune10 random_linear] [--set key=value ...]

Prints the pre-training history and the evaluation table (top-1 / top-5 per protocol and split,
with the seconds each took) and leaves everything under the run directory it names.
"""

import argparse
import time
from pathlib import Path

import raycl
from raycl.cli import parse_sets

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=10_000, help="training images (class-balanced)")
    parser.add_argument("--test-images", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--protocols", nargs="+",
                        default=["knn", "linear", "finetune10", "random_knn", "random_linear"])
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = {"data.source": "parquet", "data.path": args.data, "data.num_images": args.images,
                 "data.num_test_images": args.test_images, "train.epochs": args.epochs,
                 **parse_sets(args.sets)}
    start = time.perf_counter()
    result = raycl.run(method=args.method, workers=args.workers, preset="tiny",
                       evaluate=args.protocols, **overrides)
    total = time.perf_counter() - start
    cols = [c for c in ("epoch", "loss", "knn_top1", "images_per_s", "epoch_time_s") if c in result.history]
    print(result.history[cols].to_string(index=False, float_format="%.3f"))
    ev = result.evaluation[["protocol", "split", "features", "labels", "top1", "top5", "seconds"]]
    print(ev.to_string(index=False, float_format="%.3f"))
    print(f"pre-training + evaluation: {total:.0f} s; results: {result.path}")


if __name__ == "__main__":
    main()
