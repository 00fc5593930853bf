"""The transformation probe: linear probes predicting which transformation an image got (SimCLR
Table 3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from raycl.config import TRANSFORM_TASKS
from raycl.data.augment import Noise, grayscale, rotate90, sobel
from raycl.protocols.linear import linear_probe
from raycl.seeding import derive_seed


def _color(x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return grayscale(x, targets.bool())


def _rotation(x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return rotate90(x, targets.long())


def _sobel(x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.lerp(x, sobel(x), targets.bool().float().view(-1, 1, 1, 1))


def _noise(x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    noise = Noise(std=0.1)
    return noise.apply(x, {"noise": torch.randn(x.shape, generator=generator) * 0.1,
                           "mask": targets.bool()})


# task: (number of classes, transform of float images in [0, 1] by their per-image targets). The
# task names are raycl.config's (its validation accepts those), so each of them needs an entry here.
_TASKS = {"color": (2, _color), "rotation": (4, _rotation), "sobel": (2, _sobel), "noise": (2, _noise)}
if set(_TASKS) != set(TRANSFORM_TASKS):
    raise RuntimeError(f"transformation tasks {sorted(_TASKS)} differ from "
                       f"raycl.config.TRANSFORM_TASKS {list(TRANSFORM_TASKS)}")
TRANSFORM_CLASSES = {task: _TASKS[task][0] for task in TRANSFORM_TASKS}


def apply_transform(task: str, images: torch.Tensor, targets: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 ``images`` with transformation ``targets[i]`` of ``task`` applied to image i.

    color: 0 original, 1 grayscale; rotation: k × 90°; sobel: 0 original, 1 Sobel edges;
    noise: 0 original, 1 Gaussian noise (σ = 0.1 of the range).
    """
    if task not in TRANSFORM_CLASSES:
        raise ValueError(f"unknown transformation task {task!r}; allowed: {', '.join(TRANSFORM_CLASSES)}")
    x = _TASKS[task][1](images.float() / 255.0, targets, generator)
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def balanced_targets(n: int, k: int, seed: int) -> torch.Tensor:
    """``n`` targets in ``0..k-1``, as balanced as possible, in a seeded random order."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.arange(n) % k)[torch.randperm(n, generator=gen)]


def transformation_probe(featurize: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                         splits: dict[str, torch.Tensor], tasks: Sequence[str] = tuple(TRANSFORM_CLASSES),
                         weight_decays: Sequence[float] = (0.0, 1e-3, 1e-1), steps: int = 200,
                         seed: int = 0) -> list[dict[str, Any]]:
    """Linear probes predicting the transformation applied (SimCLR Table 3).

    ``splits``: uint8 images of ``"train"``, ``"val"`` and optionally ``"test"``; each image gets one
    balanced random transformation of the task. ``featurize(images)`` returns named representations
    (e.g. ``{"h": ..., "z": ...}``). The weight decay is chosen on val. One row per task,
    representation and evaluated split: ``{task, features, split, top1}``.
    """
    rows = []
    for t, task in enumerate(tasks):
        k = TRANSFORM_CLASSES[task]
        feats, targets = {}, {}
        for s, (split, images) in enumerate(splits.items()):
            y = balanced_targets(len(images), k, derive_seed(seed, "transform_targets", t, s))
            gen = torch.Generator().manual_seed(derive_seed(seed, "transform_noise", t, s))
            targets[split] = y
            feats[split] = featurize(apply_transform(task, images, y, gen))
        for rep in feats["train"]:
            res = linear_probe((feats["train"][rep], targets["train"]),
                               (feats["val"][rep], targets["val"]), k, weight_decays, steps,
                               test=(feats["test"][rep], targets["test"]) if "test" in feats else None)
            for split in ("val", "test"):
                if split in res:
                    rows.append({"task": task, "features": rep, "split": split,
                                 "top1": res[split]["top1"], "chance": 1 / k,
                                 "weight_decay": res["weight_decay"]})
    return rows
