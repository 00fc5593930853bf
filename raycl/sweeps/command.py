"""The command line of sweeps: ``python -m raycl sweep GRID`` and the ``experiments/*.py`` scripts,
which share their options (``--preset``, ``--data``, ``--seeds``, ``--storage-path``, ``--resume``,
``--dry-run``, ``--set``, ``--scheduler``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from raycl import plugins
from raycl.checks import ConfigError, parse_sets
from raycl.config import PRESETS, TRACKERS
from raycl.sweeps.grids import GRIDS, get_grid


def add_sweep_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="one of: " + ", ".join(PRESETS))
    parser.add_argument("--seeds", type=int, default=1, help="seeds per cell (0 .. N-1)")
    parser.add_argument("--data", default=None,
                        help="a Parquet file or folder (train.parquet/test.parquet), or an image folder")
    parser.add_argument("--storage-path", default="raycl_sweeps")
    parser.add_argument("--name", default=None, help="sweep name (default: <grid>-<preset>)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field in every cell (repeatable)")
    parser.add_argument("--only", action="append", default=[], metavar="KEY=V1,V2",
                        help="run a slice: cells whose label or value KEY is one of V1, V2 (repeatable), "
                             "e.g. --only first=crop,color --only second=crop,color")
    parser.add_argument("--scheduler", default=None, choices=["asha"],
                        help="stop weak trials early on the kNN monitor")
    parser.add_argument("--concurrency", type=int, default=None, help="trials at once (default: fit)")
    parser.add_argument("--evaluate", default=None, metavar="P1,P2",
                        help="protocols each trial runs after pre-training, e.g. linear,linear_z "
                             "(default: the grid's)")
    parser.add_argument("--resume", action="store_true", help="continue the sweep of that name")
    parser.add_argument("--dry-run", action="store_true", help="print the cells; train nothing")
    parser.add_argument("--verbose", action="store_true", help="also show Tune's live trial table")
    add_plugin_option(parser)
    add_log_option(parser)


def add_log_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", dest="trackers", action="append", default=[], metavar="TRACKER",
                        help="also log per-epoch metrics to " + ", ".join(TRACKERS) + " (repeatable)")


def log_overrides(args: argparse.Namespace) -> dict[str, object]:
    """``--log tensorboard --log mlflow`` (or ``--log tensorboard,mlflow``) as ``train.trackers``."""
    names = [n.strip() for arg in getattr(args, "trackers", None) or () for n in arg.split(",") if n.strip()]
    return {"train.trackers": tuple(names)} if names else {}


def add_plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="a .py file or module registering methods or recipes of your own (repeatable)")


def plugin_overrides(args: argparse.Namespace) -> dict[str, object]:
    """``--plugin``: imported here (so that their names are known at once) and kept in the run's
    configuration, for its workers."""
    refs = plugins.load(getattr(args, "plugins", None) or ())
    return {"plugins": refs} if refs else {}


def data_overrides(path: str | None) -> dict[str, object]:
    """``--data``: a Parquet file or folder, or a folder of class sub-folders."""
    if path is None:
        return {}
    path = os.path.abspath(os.path.expanduser(path))
    parquet = path.endswith(".parquet") or os.path.isfile(os.path.join(path, "train.parquet"))
    return {"data.source": "parquet" if parquet else "folder", "data.path": path}


def parse_only(pairs: Sequence[str]) -> dict[str, list[str]]:
    """``["first=crop,color"]`` as ``{"first": ["crop", "color"]}``."""
    out = {}
    for pair in pairs:
        key, sep, values = pair.partition("=")
        if not sep or not key or not values:
            raise ConfigError("--only", pair, "KEY=V1,V2, e.g. first=crop,color")
        out[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return out


def run_grids(grids: Sequence[str], args: argparse.Namespace) -> int:
    """Dry-run or run each grid in turn with the shared options; 0 on success, 2 on bad input."""
    from raycl.sweeps.plan import plan

    try:
        overrides = {**plugin_overrides(args), **log_overrides(args), **data_overrides(args.data),
                     **parse_sets(args.sets)}
        only = parse_only(args.only)
        for name in grids:
            grid = get_grid(name)
            if args.dry_run:
                runs = plan(grid, args.preset, args.seeds, overrides, only)
                print(f"# {grid.name}: {grid.source}, method {grid.method}, preset {args.preset}: "
                      f"{len(runs)} trials ({sum(r.skip is None for r in runs)} to run)")
                for r in runs:
                    print(r.describe())
                continue
            from raycl.sweeps.runner import sweep

            result = sweep(grid, args.preset, args.seeds, storage_path=args.storage_path,
                           name=args.name if len(grids) == 1 else None, resume=args.resume,
                           scheduler=args.scheduler, overrides=overrides, concurrency=args.concurrency,
                           verbose=args.verbose, only=only,
                           evaluate=args.evaluate.split(",") if args.evaluate else None)
            print(summary(result))
    except (ConfigError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def summary(result) -> str:
    """A sweep's trials as a person reads them: the cell's labels (or swept values), status, final
    and best kNN, the paper's numbers."""
    trials = result.trials
    if not len(trials):
        return "(no trials)"
    shown = [k for c in result.meta.get("cells", []) for k in (c["labels"] or c["values"])]
    evaluated = [c for c in trials.columns if c.endswith("_val_top1")]
    cols = ["key", *shown, "seed", "status", "epochs", "knn_top1", "best_knn_top1", *evaluated,
            *[c for c in trials.columns if c.startswith("paper_")]]
    cols = [c for c in dict.fromkeys(cols) if c in trials.columns]
    return trials[cols].to_string(index=False, float_format="%.3f")


def script_main(grids: Sequence[str], description: str, argv: Sequence[str] | None = None) -> int:
    """``main`` of an ``experiments/*.py`` script running ``grids``."""
    parser = argparse.ArgumentParser(description=description)
    add_sweep_options(parser)
    return run_grids(grids, parser.parse_args(argv))


__all__ = ["GRIDS", "add_log_option", "add_plugin_option", "add_sweep_options", "data_overrides",
           "log_overrides", "plugin_overrides", "run_grids", "script_main", "summary"]
