"""Command line: ``python -m raycl run --method simclr --workers 2 --preset tiny --set optim.lr=0.3``."""

from __future__ import annotations

import argparse
import sys

from raycl.checks import one_of, parse_sets
from raycl.config import METHODS, PRESETS, ConfigError, all_keys, parse_value, preset
from raycl.methods import method_spec
from raycl.sweeps.command import (add_log_option, add_plugin_option, add_sweep_options, log_overrides,
                                  plugin_overrides, run_grids)
from raycl.sweeps.grids import GRIDS
from raycl.train.best import best_so_far
from raycl.train.recovery import RunFailedError, one_line


# names are checked by the configuration, whose errors say the nearest valid name in one line
_ONE_OF_METHODS = "one of: " + ", ".join(METHODS) + ", or a plugin's (--plugin)"
_ONE_OF_PRESETS = "one of: " + ", ".join(PRESETS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raycl",
                                     description="Self-supervised contrastive learning on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="pre-train a method and write its results")
    run.add_argument("--method", default="simclr", help=_ONE_OF_METHODS)
    run.add_argument("--workers", type=int, default=None, help="Ray Train workers")
    run.add_argument("--preset", default="tiny", help=_ONE_OF_PRESETS)
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field (repeatable), e.g. --set optim.lr=0.3")
    run.add_argument("--resume", action="store_true",
                     help="continue the run named by --set name=... from its last checkpoint")
    run.add_argument("--verbose", action="store_true", help="also show Ray's own worker output")
    add_plugin_option(run)
    add_log_option(run)

    show = sub.add_parser("config", help="print a preset's configuration, with overrides applied")
    show.add_argument("--method", default="simclr", help=_ONE_OF_METHODS)
    show.add_argument("--preset", default="tiny", help=_ONE_OF_PRESETS)
    show.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    add_plugin_option(show)
    keys = sub.add_parser("keys", help="list every field a method's configuration has, with its value")
    keys.add_argument("--method", default="simclr", help=_ONE_OF_METHODS)
    keys.add_argument("--preset", default=None,
                      help="show the preset's values (default: the fields' own defaults); " + _ONE_OF_PRESETS)
    add_plugin_option(keys)

    sweep = sub.add_parser("sweep", help="run a paper's ablation grid as a Ray Tune sweep")
    sweep.add_argument("grid", help="one of: " + ", ".join(GRIDS))
    add_sweep_options(sweep)

    figures = sub.add_parser("figures", help="write a sweep's figures (PNG and SVG) beside its tables")
    figures.add_argument("sweep", help="the sweep's directory (storage_path/name)")
    figures.add_argument("--value", default=None, help="the trials' column to show (default: the grid's)")
    figures.add_argument("--out", default=None, help="folder (default: SWEEP/figures)")
    figures.add_argument("--embedding", action="store_true", help="also map the best trial's embeddings")

    report = sub.add_parser("report", help="write a sweep's self-contained HTML report")
    report.add_argument("sweep", help="the sweep's directory (storage_path/name)")
    report.add_argument("--value", default=None, help="the trials' column to show (default: the grid's)")
    report.add_argument("--out", default=None, help="file (default: SWEEP/report.html)")
    report.add_argument("--no-embedding", dest="embedding", action="store_false",
                        help="leave out the embedding map (it loads the best checkpoint)")

    export = sub.add_parser("export", help="write a checkpoint's backbone as a plain PyTorch state dict")
    export.add_argument("checkpoint", help="a checkpoint or run directory (its latest checkpoint; RUN/best: "
                        "the best by kNN)")
    export.add_argument("out", help="the .pt file to write (a .json beside it says what it is)")
    export.add_argument("--part", default="backbone", help="backbone (torchvision's keys for ResNets) or "
                        "backbone+head")

    evaluate = sub.add_parser("evaluate", help="run evaluation protocols on a checkpoint or on weights")
    evaluate.add_argument("checkpoint", help="a checkpoint or run directory, or a weights file (raycl "
                          "export, torchvision ResNet state dict)")
    evaluate.add_argument("--protocols", default="knn,linear",
                          help="comma-separated: knn, linear, linear_z, finetune<P>, distill<P>, transform; "
                          "random_ in front for the randomly initialised network")
    evaluate.add_argument("--preset", default="tiny", help="for a weights file: the network and data; "
                          + _ONE_OF_PRESETS)
    evaluate.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                          help="override a config field (repeatable), e.g. --set data.path=...")
    evaluate.add_argument("--out", default=None, help="folder for evaluation.parquet (default: the run's, "
                          "or the weights file's)")
    add_plugin_option(evaluate)

    views = sub.add_parser("views", help="write a PNG grid of a recipe's augmented views")
    views.add_argument("--recipe", default="simclr",
                       help="simclr, moco_v1, moco_v2, byol, swav, pair:a,b, or a plugin's (--plugin)")
    views.add_argument("--n", type=int, default=8, help="images (rows)")
    views.add_argument("--out", default="views.png")
    views.add_argument("--size", type=int, default=32, help="side of the (large) views")
    views.add_argument("--color-strength", type=float, default=1.0)
    views.add_argument("--blur", type=parse_value, default=None, help="true/false (default: the recipe's)")
    views.add_argument("--small-crops", type=int, default=0, help="multi-crop: number of small views")
    views.add_argument("--small-size", type=int, default=None)
    views.add_argument("--source", default="embedded")
    views.add_argument("--path", default=None, help="file/folder for non-embedded sources")
    views.add_argument("--seed", type=int, default=0)
    add_plugin_option(views)
    return parser


def _views(args) -> int:
    from raycl.data.show import show_views

    extra = {"small_crops": args.small_crops, "small_size": args.small_size} if args.small_crops else {}
    try:
        out = show_views(args.recipe, n=args.n, out=args.out, size=args.size,
                         color_strength=args.color_strength, blur=args.blur, source=args.source,
                         path=args.path, seed=args.seed, **extra)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _evaluate(args, overrides: dict) -> int:
    from raycl.protocols import evaluate

    one_of("preset", args.preset, PRESETS)
    table = evaluate(args.checkpoint, [p for p in args.protocols.split(",") if p.strip()], path=args.out,
                     use_ray=False, preset=args.preset, **overrides)
    columns = [c for c in ("protocol", "split", "features", "task", "top1", "top5", "seconds") if c in table]
    print(table[columns].to_string(index=False, float_format="%.4g"))
    return 0


def _keys(method: str, scale: str | None) -> int:
    """``key = value  # help`` for every field of ``method`` (its own options marked by their help)."""
    from raycl.config import Config, MethodConfig

    cfg = preset(scale, method) if scale else Config(method=MethodConfig(method))
    values = cfg.flat()
    helps = {f"method.{o.name}": o.help for o in method_spec(method).options}
    spec = method_spec(method)
    print(f"# {method} ({spec.paper}); values of "
          + (f"preset {scale!r}" if scale else "the fields' defaults (presets: --preset)"))
    for key in all_keys(method):
        note = f"  # {helps[key]}" if key in helps else ""
        print(f"{key} = {values[key]!r}{note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from_plugins = plugin_overrides(args)  # first: a plugin's method or recipe is then a name here
        if args.command == "keys":
            method_spec(args.method)  # a mistyped name: the one-line error below
            if args.preset is not None:
                one_of("preset", args.preset, PRESETS)
            return _keys(args.method, args.preset)
        if args.command == "views":
            return _views(args)
        if args.command == "export":
            from raycl.weights import export

            about = export(args.checkpoint, args.out, args.part)
            print(f"[raycl] wrote {args.out}: {about['part']} of {about['method']} ({about['backbone']}, "
                  f"epoch {about['epoch']}, {about['feature_dim']}-d features)")
            return 0
        if args.command == "sweep":
            return run_grids([args.grid], args)
        if args.command == "figures":
            from raycl.analysis import sweep_figures

            print("\n".join(sweep_figures(args.sweep, args.value, args.out, args.embedding)))
            return 0
        if args.command == "report":
            from raycl.analysis import sweep_report

            print(sweep_report(args.sweep, args.out, args.value, args.embedding))
            return 0
        if args.command == "evaluate":
            return _evaluate(args, {**from_plugins, **parse_sets(args.sets)})
        overrides = {**from_plugins, **log_overrides(args), **parse_sets(args.sets)}
        if args.command == "config":
            from raycl.train.plan import plan_lines

            cfg = preset(args.preset, args.method).override(overrides).validate()
            for line in plan_lines(cfg):  # comments: the listing below stays KEY = VALUE lines
                print(f"# {line}")
            for key, value in cfg.flat().items():
                print(f"{key} = {value!r}")
            return 0
        from raycl.api import run as run_method

        result = run_method(method=args.method, workers=args.workers, preset=args.preset,
                            resume=args.resume, verbose=args.verbose, **overrides)
    except (ConfigError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # the run diverged: a one-line reason, not Ray's traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RunFailedError as exc:  # what failed, in a line each; the traceback is in Ray's logs
        cause = one_line(exc.__cause__) if exc.__cause__ else "unknown"
        print(f"error: {exc}\ncause: {cause}", file=sys.stderr)
        return 1
    print(result.history.drop(columns=["run"]).to_string(index=False, float_format="%.4g"))
    print(f"checkpoint: {result.checkpoint}")
    if result.best_checkpoint:
        print(f"best:       {result.best_checkpoint} (kNN top-1 {best_so_far(result.path):.3f})")
    print(f"results:    {result.path}")
    return 0
