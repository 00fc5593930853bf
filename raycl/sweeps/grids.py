"""The papers' ablation grids, as data: which cells, on which method, with the paper's numbers.

A :class:`Grid` is a list of :class:`Cell` s at a preset: each cell is a few dotted overrides (its
columns in ``trials.parquet``) and, where the paper prints a number for it, that number. A grid also
carries its own length per preset (its *grid preset*: epochs and images chosen so that a whole grid
fits the scale) and overrides shared by every cell. Torch-free: ``--dry-run`` lists cells without
importing torch or starting Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from raycl.checks import nearest

# SimCLR Fig. 5's transformations, in the figure's order
FIG5_OPS = ("crop", "cutout", "color", "sobel", "noise", "blur", "rotate")
IMAGENET_TOP1 = "ImageNet linear top-1 (%), ResNet-50"


@dataclass(frozen=True)
class Cell:
    """One cell: the overrides that define it and, where printed, the paper's numbers for it."""

    values: Mapping[str, Any]  # dotted overrides; every key is a column of trials.parquet
    labels: Mapping[str, Any] = field(default_factory=dict)  # readable columns (e.g. first, second)
    reference: Mapping[str, float] = field(default_factory=dict)  # e.g. {"top1": 64.5}


@dataclass(frozen=True)
class Grid:
    """A paper's ablation: cells at each preset, the method, and what the paper's numbers are."""

    name: str
    source: str  # where in which paper, e.g. "SimCLR Fig. 5"
    question: str
    method: str
    cells: Callable[[str], list[Cell]]  # preset -> cells
    base: Mapping[str, Any] = field(default_factory=dict)  # overrides shared by every cell
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # the grid preset per scale
    reference_note: str = ""  # what the reference numbers measure
    finding: str = ""  # the paper's claim where it prints no numbers
    # evaluation protocols (raycl.protocols) run in each trial after pre-training; their top-1
    # accuracies become columns of trials.parquet (e.g. linear_val_top1)
    evaluate: tuple[str, ...] = ()


def _fixed(cells: list[Cell]) -> Callable[[str], list[Cell]]:
    return lambda preset: cells


# --------------------------------------------------------------------------- SimCLR
def _pairs(preset: str) -> list[Cell]:
    return [Cell({"augment.recipe": f"pair:{a},{b}"}, {"first": a, "second": b})
            for a in FIG5_OPS for b in FIG5_OPS]


AUGMENTATION = Grid(
    name="augmentation", source="SimCLR Fig. 5", method="simclr",
    question="Which pair of transformations (first, then second, on one branch; diagonal: one "
             "transformation) makes the best views? Both branches are randomly cropped.",
    cells=_pairs,
    # tiny: one worker and half-CPU reservations per trial (the same global batch of 64), so that
    # two trials run side by side on 2 cores and share the start-up time
    presets={"tiny": {"train.epochs": 2, "train.workers": 1, "train.cpus_per_worker": 0.5,
                      "augment.cpus_per_actor": 0.5}},
    finding="No single transformation suffices; composing helps; random crop + colour distortion "
            "stands out (crops of one image share a colour histogram). Printed as a heat map only.",
)

_TABLE1 = [(1 / 8, False, 59.6), (1 / 4, False, 61.0), (1 / 2, False, 62.6), (1.0, False, 63.2),
           (1.0, True, 64.5)]
COLOR_STRENGTH = Grid(
    name="color_strength", source="SimCLR Table 1", method="simclr",
    question="How strong should the colour distortion be (and does blur help at full strength)?",
    cells=_fixed([Cell({"augment.color_strength": s, "augment.blur": blur},
                       reference={"top1": top1}) for s, blur, top1 in _TABLE1]),
    base={"augment.recipe": "simclr"},
    presets={"tiny": {"train.epochs": 4}},
    reference_note=IMAGENET_TOP1,
)

_TABLE5 = [(True, 0.05, 90.5, 59.7), (True, 0.1, 87.8, 64.4), (True, 0.5, 68.2, 60.7),
           (True, 1.0, 59.1, 58.0), (False, 10.0, 91.7, 57.2), (False, 100.0, 92.1, 57.0)]
TEMPERATURE = Grid(
    name="temperature", source="SimCLR Table 5", method="simclr",
    question="ℓ2-normalised projections and τ: contrastive accuracy against linear accuracy.",
    cells=_fixed([Cell({"method.normalize": norm, "method.temperature": tau},
                       reference={"pretext_top1": acc, "top1": top1})
                  for norm, tau, acc, top1 in _TABLE5]),
    presets={"tiny": {"train.epochs": 4}},
    reference_note="contrastive accuracy (%) and " + IMAGENET_TOP1,
)


def _heads(preset: str) -> list[Cell]:
    dims = (16, 32, 64, 128) if preset == "tiny" else (32, 64, 128, 256, 512, 1024, 2048)
    cells = [Cell({"model.proj_depth": 0}, {"head": "none"})]
    cells += [Cell({"model.proj_depth": depth, "model.proj_out_dim": d},
                   {"head": "linear" if depth == 1 else "non-linear"})
              for depth in (1, 2) for d in dims]
    return cells


PROJECTION_HEAD = Grid(
    name="projection_head", source="SimCLR Fig. 8", method="simclr",
    question="No head, a linear head or a non-linear one, by output dimension.",
    cells=_heads, presets={"tiny": {"train.epochs": 4}},
    finding="A non-linear head beats a linear one by ~3% and no head by >10%; the output dimension "
            "hardly matters; h beats g(h) by >10%. Printed as a plot only.",
    evaluate=("linear", "linear_z"),  # a linear probe on h and on z = g(h)
)


def _v2_heads(preset: str) -> list[Cell]:
    return [Cell({"model.proj_depth": depth, "model.finetune_from": keep},
                 {"head_depth": depth, "finetune_from": "encoder" if keep == 0 else f"head layer {keep}"})
            for depth in (2, 3, 4) for keep in range(depth)]


SIMCLRV2_HEAD = Grid(
    name="simclrv2_head", source="SimCLRv2 §2 and Fig. 4 (head depth × fine-tuning layer)",
    method="simclrv2",
    question="How deep a projection head, and fine-tune from which of its layers, with few labels?",
    cells=_v2_heads, presets={"tiny": {"train.epochs": 4}},
    finding="A deeper head helps semi-supervised fine-tuning; fine-tuning from the head's first "
            "layer beats fine-tuning from the encoder output, most at 1% labels. Printed as plots.",
    evaluate=("finetune10", "linear"),
)

_TABLE_B1 = {256: (57.5, 61.9, 64.7, 66.6), 512: (60.7, 64.0, 66.2, 67.8),
             1024: (62.8, 65.3, 67.2, 68.5), 2048: (64.0, 66.1, 68.1, 68.9),
             4096: (64.6, 66.5, 68.2, 68.9), 8192: (64.8, 66.6, 67.8, 69.0)}


def _batches(preset: str) -> list[Cell]:
    if preset == "tiny":  # the tiny set holds a few thousand images: smaller batches, fewer epochs
        return [Cell({"train.batch_size": b, "train.epochs": e}) for b in (32, 64, 128, 256)
                for e in (2, 4, 8)]
    return [Cell({"train.batch_size": b, "train.epochs": e}, reference={"top1": top1})
            for b, row in _TABLE_B1.items() for e, top1 in zip((100, 200, 400, 800), row)]


BATCH_SIZE = Grid(
    name="batch_size", source="SimCLR Fig. 9 / Table B.1", method="simclr",
    question="Batch size × training epochs, with the learning rate scaled linearly with the batch.",
    cells=_batches, base={"optim.lr_scaling": "linear"}, reference_note=IMAGENET_TOP1 + " (LARS)",
)

# --------------------------------------------------------------------------- MoCo
MOCO_MOMENTUM = Grid(
    name="moco_momentum", source="MoCo v1 §4.1 (momentum)", method="moco",
    question="How slowly must the key encoder move? m = 0 fails (the loss oscillates).",
    cells=_fixed([Cell({"method.momentum": m}, reference={"top1": t} if t else {})
                  for m, t in ((0.0, None), (0.9, 55.2), (0.99, 57.8), (0.999, 59.0), (0.9999, 58.9))]),
    presets={"tiny": {"train.epochs": 4}}, reference_note=IMAGENET_TOP1 + ", K = 4096",
)

_V2_TABLE1 = [(1, False, "step", 60.6), (2, False, "step", 66.2), (1, True, "step", 63.4),
              (2, True, "step", 67.3), (2, True, "cosine", 67.5)]
MOCOV2_ABLATION = Grid(
    name="mocov2_ablation", source="MoCo v2 Table 1", method="mocov2",
    question="MoCo v1 → v2 one change at a time: MLP head, aug+ (blur), cosine schedule.",
    cells=_fixed([Cell({"model.proj_depth": depth, "augment.recipe": "moco_v2" if aug else "moco_v1",
                        "augment.blur": aug, "optim.schedule": sched},
                       {"mlp": depth == 2, "aug_plus": aug, "cos": sched == "cosine"},
                       {"top1": top1}) for depth, aug, sched, top1 in _V2_TABLE1]),
    presets={"tiny": {"train.epochs": 4}}, reference_note=IMAGENET_TOP1 + ", 200 epochs",
)

_V2_TAU = {1: (60.6, 60.7, 59.0, 58.2, 57.2, 56.4), 2: (62.9, 64.9, 66.2, 65.7, 65.0, 64.3)}
MOCOV2_TEMPERATURE = Grid(
    name="mocov2_temperature", source="MoCo v2 (τ sweep)", method="mocov2",
    question="InfoNCE temperature, with and without the MLP head.",
    cells=_fixed([Cell({"model.proj_depth": depth, "method.temperature": tau}, {"mlp": depth == 2},
                       {"top1": top1})
                  for depth, row in _V2_TAU.items()
                  for tau, top1 in zip((0.07, 0.1, 0.2, 0.3, 0.4, 0.5), row)]),
    presets={"tiny": {"train.epochs": 4}}, reference_note=IMAGENET_TOP1,
)

# --------------------------------------------------------------------------- BYOL
_TABLE16 = {4096: (72.5, 67.9), 2048: (72.4, 67.8), 1024: (72.2, 67.4), 512: (72.2, 66.5),
            256: (71.8, 64.3), 128: (69.6, 63.6), 64: (59.7, 59.2)}


def _byol_batches(preset: str) -> list[Cell]:
    batches = (16, 32, 64, 128, 256) if preset == "tiny" else tuple(_TABLE16)
    return [Cell({"method": m, "train.batch_size": b},
                 reference={"top1": _TABLE16[b][i]} if b in _TABLE16 and preset != "tiny" else {})
            for b in batches for i, m in enumerate(("byol", "simclr"))]


BYOL_BATCH = Grid(
    name="byol_batch", source="BYOL Table 16", method="byol",
    question="Does BYOL, without negatives, hold up at small batches better than SimCLR?",
    cells=_byol_batches, presets={"tiny": {"train.epochs": 4}},
    reference_note=IMAGENET_TOP1 + ", 300 epochs",
)

_TABLE5A = ((1.0, 18.8), (0.999, 69.8), (0.99, 72.5), (0.9, 68.4), (0.0, 0.3))
BYOL_TAU = Grid(
    name="byol_tau", source="BYOL Table 5a", method="byol",
    question="Target decay τ_base: 1 keeps a random target, 0 copies the online network.",
    cells=_fixed([Cell({"method.momentum": tau, "method.momentum_schedule": "constant"},
                       reference={"top1": top1}) for tau, top1 in _TABLE5A]),
    presets={"tiny": {"train.epochs": 4}}, reference_note=IMAGENET_TOP1 + ", 300 epochs",
)

# (label, ops removed, (BYOL, SimCLR) top-1 or None): "colour" removes jitter and grayscale
_TABLE17 = (("baseline", (), (72.5, 67.9)), ("no flip", ("flip",), (71.9, 67.3)),
            ("no blur", ("blur",), (71.2, 65.2)), ("no colour", ("color",), (63.4, 45.7)),
            ("no jitter", ("jitter",), (71.8, 63.7)), ("no grayscale", ("grayscale",), (70.3, 61.9)),
            ("no solarize", ("solarize",), None),
            ("crop only", ("flip", "color", "blur", "solarize"), (59.4, 40.3)),
            ("crop + flip", ("color", "blur", "solarize"), (60.1, 40.2)),
            ("crop + colour", ("flip", "blur", "solarize"), (70.7, 64.2)),
            ("crop + blur", ("flip", "color", "solarize"), (61.1, 41.7)))

BYOL_AUGMENTATIONS = Grid(
    name="byol_augmentations", source="BYOL Table 17", method="byol",
    question="What does removing each transformation cost? BYOL should need colour less than SimCLR.",
    cells=_fixed([Cell({"method": m, "augment.remove": removed}, {"method": m, "augmentations": label},
                       {"top1": top1[i]} if top1 else {})
                  for label, removed, top1 in _TABLE17 for i, m in enumerate(("byol", "simclr"))]),
    base={"augment.recipe": "byol"},  # both methods on BYOL's augmentations, as in the paper
    presets={"tiny": {"train.epochs": 4}}, reference_note=IMAGENET_TOP1 + ", 300 epochs",
)

# --------------------------------------------------------------------------- SwAV
def _multicrop(preset: str) -> list[Cell]:
    """Both methods with 2 large crops, with small crops added, and with smaller large crops plus
    small ones at about the pixels (the compute) of the 2 large crops, as the paper compares."""
    if preset == "imagenet":
        crops = [(224, 0, None), (224, 6, None), (160, 4, "≈ compute of 2×224")]
        small = 96
    else:  # 32 px images
        crops = [(32, 0, None), (32, 2, None), (32, 6, None), (24, 4, "≈ compute of 2×32")]
        small = 16
    cells = []
    for method in ("swav", "simclr"):
        for large, v, note in crops:
            label = f"2×{large}" + (f" + {v}×{small}" if v else "") + (f" ({note})" if note else "")
            reference = {}
            if method == "swav" and large == 224:
                reference = {"top1": 74.6 if v == 6 else 70.1}
            cells.append(Cell({"method": method, "augment.crop_size": large, "augment.small_crops": v,
                               "augment.small_crop_size": small},
                              {"method": method, "crops": label}, reference))
    return cells


SWAV_MULTICROP = Grid(
    name="swav_multicrop", source="SwAV Table 3 (multi-crop)", method="swav",
    question="Two large crops against two large plus small crops, for SwAV and SimCLR; the last "
             "cells trade large-crop pixels for small crops at about the same compute (their kNN "
             "monitor runs at the smaller crop size).",
    cells=_multicrop, presets={"tiny": {"train.epochs": 4}},
    reference_note=IMAGENET_TOP1 + " (2×224 → 2×224 + 6×96)",
    finding="Multi-crop helps every method by 2–4 points, clustering methods more than contrastive ones.",
)

SWAV_PROTOTYPES = Grid(
    name="swav_prototypes", source="SwAV §4 (number of prototypes)", method="swav",
    question="Does the number of prototypes matter? (3k to 100k: at most 0.3 points)",
    cells=lambda preset: [Cell({"method.prototypes": k}) for k in
                          ((10, 30, 100, 300) if preset == "tiny" else (3000, 10000, 30000, 100000))],
    presets={"tiny": {"train.epochs": 4}},
)

GRIDS: dict[str, Grid] = {g.name: g for g in (
    AUGMENTATION, COLOR_STRENGTH, TEMPERATURE, PROJECTION_HEAD, SIMCLRV2_HEAD, BATCH_SIZE,
    MOCO_MOMENTUM, MOCOV2_ABLATION, MOCOV2_TEMPERATURE, BYOL_BATCH, BYOL_TAU, BYOL_AUGMENTATIONS,
    SWAV_MULTICROP, SWAV_PROTOTYPES)}


def get_grid(name: str) -> Grid:
    if name not in GRIDS:
        raise ValueError(f"grid {name!r} is not known: one of {', '.join(GRIDS)}{nearest(name, GRIDS)}")
    return GRIDS[name]
