"""SimCLR on the embedded data at the `tiny` preset: the single run beside the quickstart's grid, also for `ray job submit`.

    python experiments/simclr_tiny.py [--workers 2] [--epochs 4] [--set optim.lr=0.3 ...]
    ray job submit --working-dir . -- python experiments/simclr_tiny.py --workers 4
"""

import argparse

import raycl
from raycl.cli import parse_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = parse_sets(args.sets)
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    result = raycl.run(method="simclr", workers=args.workers, preset="tiny", **overrides)
    cols = [c for c in ("epoch", "loss", "pretext_top1", "knn_top1", "images_per_s") if c in result.history]
    print(result.history[cols].to_string(index=False, float_format="%.3f"))
    print(f"results: {result.path}")


if __name__ == "__main__":
    main()
