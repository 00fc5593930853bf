"""``raycl.evaluate``: run protocols on a checkpoint, or on exported or torchvision weights, and save
their rows in the evaluation table."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from raycl.config import Config
from raycl.protocols.names import parse_protocols
from raycl.protocols.session import Session
from raycl.protocols.table import tidy, write_evaluation
from raycl.train.state import STATE_FILE, load_checkpoint


def evaluate(checkpoint: Any, protocols: Sequence[str] | str = ("knn", "linear"), *,
             path: str | None = None, verbose: bool = True, use_ray: bool | None = None,
             preset: str = "tiny", **overrides: Any) -> pd.DataFrame:
    """Run evaluation ``protocols`` on a raycl checkpoint or on weights; return and save the results.

    ``checkpoint``: a checkpoint directory (holding ``state.pt``), a run directory (its latest
    checkpoint is used) or a :class:`~raycl.api.RunResult`; ``overrides`` then change the stored
    config (dotted keys or unique names: ``linear_steps=100``, ``**{"data.num_test_images": 2000}``).
    Or a weights file, as ``model.init_from`` takes one (a :func:`raycl.export` file, torchvision's
    ResNet state dict): the network is ``preset``'s with the export's method and backbone (its JSON)
    and ``overrides`` on top, its backbone (and head, when the file has one that fits) loaded from the
    file; ``path`` then defaults to the file's folder.
    Features are extracted with Ray Data when ``use_ray`` (default: when Ray is running).
    Rows (one per protocol and split, per task and representation for ``transform``) go to
    ``<path or run dir>/evaluation.parquet``, replacing earlier rows of the same protocols.

    Columns: ``protocol``, ``network`` (pretrained / random), ``split`` (val / test), ``features``
    (h, g<k>, network), ``task`` (class or a transformation), ``labels`` (fraction of training labels
    used), ``top1``, ``top5``, ``teacher_top1`` / ``teacher_top5`` (distill), ``chance``
    (transform), ``seconds`` (wall time of the protocol, feature extraction included) and
    ``settings`` (JSON).
    """
    parsed = parse_protocols(protocols)
    if _is_weights_file(checkpoint):
        state, cfg = _from_weights(str(checkpoint), preset, overrides, verbose)
        run_dir = os.path.dirname(os.path.abspath(str(checkpoint)))
    else:
        state, _, run_dir = load_checkpoint(checkpoint)
        cfg = Config.from_stored(state["config"]).override(overrides).validate()
    out_dir = path or run_dir
    session = Session(cfg, state, out_dir, use_ray)
    rows = []
    for p in parsed:
        t0 = time.perf_counter()
        got, settings = session.run(p)
        seconds = time.perf_counter() - t0
        labels = 1.0 if p.base in ("knn", "linear", "linear_z") else p.fraction
        for r in map(dict, got):
            rows.append({"protocol": p.name, "network": "random" if p.random else "pretrained",
                         "split": r.pop("split"), "features": r.pop("features"),
                         "task": r.pop("task", "class"), "labels": labels, **r,
                         "seconds": seconds, "settings": json.dumps(settings, default=str)})
        if verbose:
            print(_progress(p.name, got, seconds), flush=True)
    df = tidy(pd.DataFrame(rows))
    df = write_evaluation(out_dir, df, cfg)
    return df[df["protocol"].isin([p.name for p in parsed])].reset_index(drop=True)


def _is_weights_file(checkpoint: Any) -> bool:
    """A local file that is not a checkpoint's ``state.pt`` (an export or a plain state dict)."""
    return (isinstance(checkpoint, (str, os.PathLike)) and os.path.isfile(checkpoint)
            and os.path.basename(checkpoint) != STATE_FILE)


def _from_weights(path: str, preset_name: str, overrides: dict, verbose: bool) -> tuple[dict, Config]:
    """``(state, config)`` of a network built from ``preset_name`` (with the method and backbone an
    export's JSON names) and loaded from the weights at ``path``, as ``model.init_from`` loads them."""
    from raycl.config import preset
    from raycl.methods import method_names
    from raycl.train import build_model
    from raycl.train.init_from import init_from
    from raycl.weights import describe

    about = describe(path) or {}
    method = about.get("method") if about.get("method") in method_names() else "simclr"
    base = {"model.backbone": about["backbone"]} if "backbone" in about else {}
    cfg = preset(preset_name, overrides.get("method", method)).override(
        {**base, **{k: v for k, v in overrides.items() if k != "method"}, "model.init_from": path}).validate()
    model = build_model(cfg, global_bn=False)
    said = init_from(model, path, cfg.model.backbone)
    if verbose:
        print(f"[raycl] {said}", flush=True)
    return {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": about.get("epoch"),
            "history": []}, cfg


def _progress(name: str, rows: list[dict], seconds: float) -> str:
    if rows and "task" in rows[0]:
        parts = [f"{r['task']}/{r['features']} {r['top1']:.3f}" for r in rows if r["split"] == "val"]
        return f"[raycl] eval {name}: val " + ", ".join(parts) + f" ({seconds:.1f} s)"
    parts = []
    for r in rows:
        text = f"{r['split']} top-1 {r['top1']:.3f}"
        if "teacher_top1" in r:
            text += f" (teacher {r['teacher_top1']:.3f})"
        parts.append(text)
    return f"[raycl] eval {name}: " + ", ".join(parts) + f" ({seconds:.1f} s)"
