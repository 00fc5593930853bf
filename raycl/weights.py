"""``raycl.export``: a checkpoint's backbone as a plain PyTorch state dict, for use outside raycl.

The file holds tensors only (``torch.load(path, weights_only=True)`` reads it). For the ResNet
backbones the keys are torchvision's, so ``torchvision.models.resnet18().load_state_dict(state,
strict=False)`` loads everything but ``fc`` (which raycl does not train); ``resnet18_cifar`` needs
torchvision's ResNet-18 with the CIFAR stem first (a 3×3 stride-1 ``conv1`` and no max-pool, as the
JSON beside the weights says). The JSON also says what the weights expect: input size and the
normalisation applied to RGB values in [0, 1].
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from raycl.checks import one_of
from raycl.config import Config
from raycl.models import MEAN, STD
from raycl.train.state import load_checkpoint
from raycl.train.model import build_model

PARTS = ("backbone", "backbone+head")
STEMS = {"resnet18_cifar": "cifar: 3x3 stride-1 conv1, no max-pool", "resnet18": "imagenet",
         "resnet50": "imagenet"}


def export(checkpoint: Any, path: str, part: str = "backbone") -> dict[str, Any]:
    """Write ``checkpoint``'s ``part`` to ``path`` (a ``.pt`` state dict) and what it is to
    ``path`` with ``.json``; return that description.

    ``checkpoint``: a checkpoint directory, a run directory (its latest checkpoint; ``<run>/best``
    is the best by kNN) or a :class:`~raycl.api.RunResult`. ``part``: ``"backbone"`` (the encoder f,
    torchvision's keys for ResNets) or ``"backbone+head"`` (f and the projection head g, under
    ``backbone.`` and ``head.``)."""
    one_of("part", part, PARTS)
    state, checkpoint_dir, _ = load_checkpoint(checkpoint)
    cfg = Config.from_stored(state["config"])
    method = build_model(cfg)
    method.load_state_dict(state["model"])  # through the model: a checkpoint that does not fit fails here
    if part == "backbone":
        weights = method.backbone.state_dict()
    else:
        weights = {**{f"backbone.{k}": v for k, v in method.backbone.state_dict().items()},
                   **{f"head.{k}": v for k, v in method.head.state_dict().items()}}
    history = state.get("history") or [{}]
    about = {
        "format": "raycl-export-1", "part": part, "method": cfg.method.name, "backbone": cfg.model.backbone,
        "stem": STEMS.get(cfg.model.backbone, "raycl"), "feature_dim": method.backbone.out_dim,
        "input_size": cfg.augment.crop_size, "input": "RGB float in [0, 1], then (x - mean) / std",
        "mean": list(MEAN), "std": list(STD), "epoch": state.get("epoch"),
        "knn_top1": history[-1].get("knn_top1"), "checkpoint": checkpoint_dir,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({k: v.detach().cpu().clone() for k, v in weights.items()}, path)
    with open(_about_path(path), "w") as f:
        json.dump(about, f, indent=1)
    return about


def describe(path: str) -> dict[str, Any] | None:
    """What :func:`export` said of the weights at ``path`` (the JSON beside them), or None."""
    about = _about_path(path)
    if not os.path.isfile(about):
        return None
    with open(about) as f:
        described = json.load(f)
    return described if isinstance(described, dict) and described.get("format") == "raycl-export-1" else None


def _about_path(path: str) -> str:
    return os.path.splitext(path)[0] + ".json"
