"""The papers' qualitative findings, checked on a sweep's cells.

Each grid of :data:`raycl.sweeps.GRIDS` has a few claims its paper makes (``a`` beats ``b``; ``x``
loses less than ``y``; the value hardly moves). :func:`check_findings` weighs each on the seeds'
means: *holds* when the difference has the paper's sign and is larger than the noise (the half-width
of the difference's 95 % interval: Welch's t from each side's seeds), *within noise* when it is not
(saying whether the difference at least has the paper's sign), *reversed* when
the opposite difference is larger than the noise, *unmeasured* when a side did not run. With one seed
per cell there is no interval: the verdict then says so.

    check_findings(raycl.load_sweep(path).trials, "color_strength")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from raycl.analysis.stats import aggregate_seeds, t_critical

__all__ = ["FINDINGS", "Claim", "check_findings"]

Select = Mapping[str, Any]  # column -> value, a list of values, "min"/"max" (over the cells), or a test


@dataclass(frozen=True)
class Claim:
    """``a`` beats ``b`` on ``metric`` (the best cell of each selection). With ``drop``, the claim is
    that ``a``'s loss from ``a`` to ``drop[0]`` is smaller than ``b``'s from ``b`` to ``drop[1]``. With
    ``flat``, that the spread of ``metric`` over the cells selected by ``a`` is within the noise."""

    text: str
    a: Select
    b: Select = field(default_factory=dict)
    metric: str = "knn_top1"
    b_metric: str | None = None
    drop: tuple[Select, Select] | None = None
    flat: bool = False


def _select(cells: pd.DataFrame, select: Select) -> pd.DataFrame:
    keep = pd.Series(True, index=cells.index)
    for column, want in select.items():
        if column not in cells.columns:
            return cells.iloc[:0]
        values = cells[column]
        if callable(want):
            keep &= values.map(want).astype(bool)
        elif isinstance(want, (list, tuple)):
            keep &= values.isin(want)
        elif want in ("min", "max"):
            keep &= values == (values.min() if want == "min" else values.max())
        else:
            keep &= values == want
    return cells[keep]


Side = tuple[float, float, int]  # (mean, variance of the mean, seeds) of one cell


def _best(cells: pd.DataFrame, select: Select) -> tuple[Side, str]:
    """The best measured cell of a selection as a :data:`Side`, and its name; NaNs when none ran."""
    chosen = _select(cells, select).dropna(subset=["mean"])
    if not len(chosen):
        return (math.nan, math.nan, 0), ""
    row = chosen.loc[chosen["mean"].idxmax()]
    n = int(row["count"])
    var = float(row["std"]) ** 2 / n if n > 1 else math.nan
    return (float(row["mean"]), var, n), str(row["cell"])


def _noise(*sides: Side) -> float:
    """Half-width of the 95 % interval of a signed sum of independent cell means: Welch's t, its
    degrees of freedom from Welch–Satterthwaite (rounded down); NaN when a side has one seed."""
    variances = [(v, n) for _, v, n in sides]
    if any(not np.isfinite(v) for v, _ in variances):
        return math.nan
    total = sum(v for v, _ in variances)
    if total == 0:
        return 0.0
    dof = total**2 / sum(v**2 / (n - 1) for v, n in variances)
    return t_critical(max(1, int(dof))) * math.sqrt(total)


def _num(v: float) -> str:
    return f"{v:.3f}" if np.isfinite(v) else "–"


def _verdict(diff: float, noise: float) -> str:
    if not np.isfinite(diff):
        return "unmeasured"
    if not np.isfinite(noise):
        return "holds (one seed: no interval)" if diff > 0 else "reversed (one seed: no interval)"
    if diff > noise:
        return "holds"
    if -diff > noise:
        return "reversed"
    return "within noise (the paper's sign)" if diff > 0 else "within noise (the opposite sign)"


def _check(cells_by_metric: Callable[[str], pd.DataFrame], claim: Claim) -> dict[str, Any]:
    cells = cells_by_metric(claim.metric)
    if claim.flat:
        chosen = _select(cells, claim.a).dropna(subset=["mean"])
        if len(chosen) < 2:
            return {"claim": claim.text, "verdict": "unmeasured", "ours": ""}
        spread = float(chosen["mean"].max() - chosen["mean"].min())
        top, _ = _best(chosen, {})
        bottom, _ = _best(chosen.assign(mean=-chosen["mean"]), {})  # the lowest cell
        noise = _noise(top, bottom)
        verdict = (
            "holds (one seed: no interval)"
            if not np.isfinite(noise)
            else "holds"
            if spread <= noise
            else "does not hold"
        )
        return {
            "claim": claim.text,
            "verdict": verdict,
            "ours": f"spread {spread:.3f} over {len(chosen)} cells (noise ±{noise:.3f})",
        }
    a, _ = _best(cells, claim.a)
    b, _ = _best(cells_by_metric(claim.b_metric or claim.metric), claim.b)
    if claim.drop:
        a_to, _ = _best(cells, claim.drop[0])
        b_to, _ = _best(cells, claim.drop[1])
        loss_a, loss_b = a[0] - a_to[0], b[0] - b_to[0]
        return {
            "claim": claim.text,
            "verdict": _verdict(loss_b - loss_a, _noise(a, a_to, b, b_to)),
            "ours": f"loses {loss_a:+.3f} vs {loss_b:+.3f}".replace("+", ""),
        }
    return {
        "claim": claim.text,
        "verdict": _verdict(a[0] - b[0], _noise(a, b)),
        "ours": f"{_num(a[0])} vs {_num(b[0])}",
    }


def check_findings(trials: pd.DataFrame, grid: str) -> pd.DataFrame:
    """One row per claim of ``grid``'s paper: ``claim``, ``verdict`` and ``ours`` (the numbers
    compared). Empty for a grid with no claims listed."""
    cache: dict[str, pd.DataFrame] = {}

    def cells(metric: str) -> pd.DataFrame:
        if metric not in cache:
            out = (
                aggregate_seeds(trials, metric)
                if metric in trials.columns
                else aggregate_seeds(trials.assign(**{metric: np.nan}), metric)
            )
            if {"first", "second"} <= set(out.columns):  # the pair grid's diagonal and colour rows
                out["diagonal"] = out["first"] == out["second"]
                out["with_color"] = (out["first"] == "color") | (out["second"] == "color")
            cache[metric] = out
        return cache[metric]

    return pd.DataFrame(
        [_check(cells, c) for c in FINDINGS.get(grid, ())], columns=["claim", "verdict", "ours"]
    )


_FULL, _EIGHTH = {"augment.color_strength": 1.0, "augment.blur": False}, {"augment.color_strength": 0.125}
_NORM, _RAW = {"method.normalize": True}, {"method.normalize": False}
_GOOD_M = {"method.momentum": [0.99, 0.999]}

FINDINGS: dict[str, tuple[Claim, ...]] = {
    "augmentation": (
        Claim(
            "the best composition (off the diagonal) beats every single transformation",
            {"diagonal": False},
            {"diagonal": True},
        ),
        Claim(
            "crop + colour beats every pair without colour",
            {"first": ["crop", "color"], "second": ["crop", "color"], "diagonal": False},
            {"with_color": False},
        ),
    ),
    "color_strength": (
        Claim("full colour strength beats 1/8", _FULL, _EIGHTH),
        Claim(
            "blur adds to full-strength colour", {"augment.color_strength": 1.0, "augment.blur": True}, _FULL
        ),
    ),
    "temperature": (
        Claim(
            "τ = 0.1 beats τ = 1 with ℓ2 normalisation",
            {**_NORM, "method.temperature": 0.1},
            {**_NORM, "method.temperature": 1.0},
        ),
        Claim("ℓ2 normalisation (best τ) beats none (best τ) on top-1", _NORM, _RAW),
        Claim("without ℓ2, contrastive accuracy is higher than with it", _RAW, _NORM, metric="pretext_top1"),
    ),
    "projection_head": (
        Claim(
            "a non-linear head beats a linear one",
            {"head": "non-linear"},
            {"head": "linear"},
            metric="linear_val_top1",
        ),
        Claim("a linear head beats no head", {"head": "linear"}, {"head": "none"}, metric="linear_val_top1"),
        Claim(
            "h beats z = g(h) for a linear probe (non-linear head)",
            {"head": "non-linear"},
            {"head": "non-linear"},
            metric="linear_val_top1",
            b_metric="linear_z_val_top1",
        ),
    ),
    "simclrv2_head": (
        Claim(
            "fine-tuning from the head's first layer beats from the encoder (3-layer head)",
            {"model.proj_depth": 3, "finetune_from": "head layer 1"},
            {"model.proj_depth": 3, "finetune_from": "encoder"},
            metric="finetune10_val_top1",
        ),
        Claim(
            "a deeper head (3 or 4 layers) beats a 2-layer one when fine-tuning",
            {"model.proj_depth": [3, 4]},
            {"model.proj_depth": 2},
            metric="finetune10_val_top1",
        ),
    ),
    "batch_size": (
        Claim(
            "at the fewest epochs, the largest batch beats the smallest",
            {"train.epochs": "min", "train.batch_size": "max"},
            {"train.epochs": "min", "train.batch_size": "min"},
        ),
        Claim(
            "at the smallest batch, more epochs help",
            {"train.batch_size": "min", "train.epochs": "max"},
            {"train.batch_size": "min", "train.epochs": "min"},
        ),
    ),
    "moco_momentum": (
        Claim("m = 0.99–0.999 beats m = 0.9", _GOOD_M, {"method.momentum": 0.9}),
        Claim("m = 0.99–0.999 beats m = 0 (no momentum)", _GOOD_M, {"method.momentum": 0.0}),
    ),
    "mocov2_ablation": (
        Claim("the MLP head helps", {"mlp": True, "aug_plus": False}, {"mlp": False, "aug_plus": False}),
        Claim("aug+ (blur) helps", {"mlp": False, "aug_plus": True}, {"mlp": False, "aug_plus": False}),
        Claim(
            "MLP + aug+ + cos beats MoCo v1",
            {"mlp": True, "aug_plus": True, "cos": True},
            {"mlp": False, "aug_plus": False},
        ),
    ),
    "mocov2_temperature": (
        Claim(
            "with the MLP head, τ = 0.2 beats τ = 0.07",
            {"mlp": True, "method.temperature": 0.2},
            {"mlp": True, "method.temperature": 0.07},
        ),
        Claim("the MLP head helps (each at its best τ)", {"mlp": True}, {"mlp": False}),
    ),
    "byol_batch": (
        Claim(
            "BYOL loses less than SimCLR from the largest batch to the smallest",
            {"method": "byol", "train.batch_size": "max"},
            {"method": "simclr", "train.batch_size": "max"},
            drop=(
                {"method": "byol", "train.batch_size": "min"},
                {"method": "simclr", "train.batch_size": "min"},
            ),
        ),
    ),
    "byol_tau": (
        Claim(
            "τ_base in [0.9, 0.999] beats τ = 1 (a fixed random target)",
            {"method.momentum": [0.9, 0.99, 0.999]},
            {"method.momentum": 1.0},
        ),
        Claim(
            "τ_base in [0.9, 0.999] beats τ = 0 (the online network as target)",
            {"method.momentum": [0.9, 0.99, 0.999]},
            {"method.momentum": 0.0},
        ),
    ),
    "byol_augmentations": (
        Claim(
            "removing colour costs BYOL less than SimCLR",
            {"method": "byol", "augmentations": "baseline"},
            {"method": "simclr", "augmentations": "baseline"},
            drop=(
                {"method": "byol", "augmentations": "no colour"},
                {"method": "simclr", "augmentations": "no colour"},
            ),
        ),
        Claim(
            "crop only is worse than all transformations (BYOL)",
            {"method": "byol", "augmentations": "baseline"},
            {"method": "byol", "augmentations": "crop only"},
        ),
    ),
    "swav_multicrop": (
        Claim(
            "small crops help SwAV",
            {"method": "swav", "crops": lambda c: "+" in c},
            {"method": "swav", "crops": lambda c: "+" not in c},
        ),
        Claim(
            "small crops help SimCLR",
            {"method": "simclr", "crops": lambda c: "+" in c},
            {"method": "simclr", "crops": lambda c: "+" not in c},
        ),
    ),
    "swav_prototypes": (
        Claim("the number of prototypes hardly matters", {"method.prototypes": lambda k: True}, flat=True),
    ),
}
