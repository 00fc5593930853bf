"""Command line: ``python -m raycl run --method simclr --workers 2 --preset tiny --set optim.lr=0.3``."""

from __future__ import annotations

import argparse
import sys

from raycl.config import METHODS, PRESETS, ConfigError, all_keys, parse_value, preset


def _parse_sets(pairs: list[str]) -> dict[str, object]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError("--set", pair, "KEY=VALUE, e.g. optim.lr=0.3")
        out[key.strip()] = parse_value(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m raycl",
                                     description="Self-supervised contrastive learning on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="pre-train a method and write its results")
    run.add_argument("--method", default="simclr", choices=METHODS)
    run.add_argument("--workers", type=int, default=None, help="Ray Train workers")
    run.add_argument("--preset", default="tiny", choices=PRESETS)
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field (repeatable), e.g. --set optim.lr=0.3")

    show = sub.add_parser("config", help="print a preset's configuration, with overrides applied")
    show.add_argument("--method", default="simclr", choices=METHODS)
    show.add_argument("--preset", default="tiny", choices=PRESETS)
    show.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    sub.add_parser("keys", help="list every configurable field")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "keys":
            print("\n".join(all_keys()))
            return 0
        overrides = _parse_sets(args.sets)
        if args.command == "config":
            cfg = preset(args.preset, args.method).override(overrides).validate()
            for key, value in cfg.flat().items():
                print(f"{key} = {value!r}")
            return 0
        from raycl.api import run as run_method

        result = run_method(method=args.method, workers=args.workers, preset=args.preset,
                            **overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.history.drop(columns=["run"]).to_string(index=False, float_format="%.4g"))
    print(f"checkpoint: {result.checkpoint}")
    print(f"results:    {result.path}")
    return 0
