"""Presets: the papers' defaults at three scales, and a run described as a flat dict of overrides.

A scale preset (``tiny``, ``cifar10``, ``imagenet``) sets data, backbone, batch, optimiser and
SimCLR's augmentation; the method's spec then lays its own paper recipe for that scale over it
(:meth:`raycl.methods.spec.MethodSpec.paper_defaults`).
"""

from __future__ import annotations

from typing import Any, Mapping

from raycl.checks import ConfigError, nearest, one_of
from raycl.config.core import Config
from raycl.config.sections import (AugmentConfig, DataConfig, EvalConfig, ModelConfig, OptimConfig,
                                   TrainConfig)
from raycl import plugins
from raycl.methods import check_method_name, method_spec
from raycl.methods.spec import SCALES

PRESETS = SCALES


def preset(name: str, method: str = "simclr") -> Config:
    """``method``'s paper defaults at the scale ``name`` (``tiny``, ``cifar10`` or ``imagenet``)."""
    one_of("preset", name, PRESETS)
    check_method_name(method)
    return _scale(name).override({"method.name": method, **method_spec(method).paper_defaults(name)})


def from_overrides(overrides: Mapping[str, Any] | None = None, **more: Any) -> Config:
    """A validated run from one flat dict of dotted overrides, as a Tune ``param_space`` varies it.

    ``preset`` (default ``tiny``) and ``method`` (or ``method.name``; default ``simclr``) are keys of
    the dict like any other and are applied first: ``from_overrides({"preset": "tiny", "method":
    "byol", "optim.lr": 1e-3})``."""
    flat = {**(overrides or {}), **more}
    if "plugins" in flat:  # first: they may register the method and recipe named below
        flat["plugins"] = plugins.load(flat["plugins"])
    scale = flat.pop("preset", "tiny")
    method = flat.pop("method", None)
    method = flat.pop("method.name", method) or "simclr"
    return preset(scale, method).override(flat).validate()


def _scale(name: str) -> Config:
    """SimCLR's recipe at each scale, before the method's own defaults.

    - ``tiny``: CPU, about a minute: the small CNN on the embedded 32 px set with AdamW (not a paper
      recipe: SGD at the same budget barely moves), batch 64 over 4 000 images.
    - ``cifar10``: ResNet-18 with the CIFAR stem, SimCLR's CIFAR recipe (appendix B.9: colour strength
      0.5, no blur, LARS, lr 1.0 × B/256, wd 1e-6, 10 warm-up epochs, cosine).
    - ``imagenet``: ResNet-50 at 224 px, SimCLR's ImageNet recipe (colour strength 1, blur, batch 4096,
      LARS lr 0.3 × B/256, wd 1e-6), augmentation actors sized to feed its GPUs (``augment.actors =
      "auto"``: :mod:`raycl.data.sizing`).
    """
    if name == "tiny":
        return Config(
            data=DataConfig(source="embedded", image_size=32, num_images=4000, num_test_images=500),
            augment=AugmentConfig(crop_size=32, color_strength=0.5, blur=False, compute="tasks",
                                  actors=1, cpus_per_actor=1.0, batch_size=128),
            model=ModelConfig(backbone="tiny_cnn", proj_depth=2, proj_hidden_dim=256, proj_out_dim=64),
            optim=OptimConfig(optimizer="adamw", lr=6e-3, weight_decay=1e-4, warmup_epochs=0.5),
            train=TrainConfig(epochs=4, batch_size=64, workers=2, cpus_per_worker=1.0),
            eval=EvalConfig(knn_k=20, knn_temperature=0.1),
            preset="tiny",
        )
    if name == "cifar10":
        return Config(
            data=DataConfig(source="cifar10", image_size=32),
            augment=AugmentConfig(crop_size=32, color_strength=0.5, blur=False, actors=4,
                                  cpus_per_actor=1.0, batch_size=256),
            model=ModelConfig(backbone="resnet18_cifar", proj_depth=2, proj_hidden_dim=2048,
                              proj_out_dim=128),
            optim=OptimConfig(optimizer="lars", lr=1.0, weight_decay=1e-6, warmup_epochs=10),
            train=TrainConfig(epochs=500, batch_size=512, workers=1, cpus_per_worker=4.0),
            eval=EvalConfig(knn_k=200, knn_temperature=0.1),
            preset="cifar10",
        )
    if name == "imagenet":
        return Config(
            data=DataConfig(source="folder", path=None, image_size=256),
            augment=AugmentConfig(crop_size=224, color_strength=1.0, blur=True, actors="auto",
                                  cpus_per_actor=1.0, batch_size=128),
            model=ModelConfig(backbone="resnet50", proj_depth=2, proj_hidden_dim=2048, proj_out_dim=128),
            optim=OptimConfig(optimizer="lars", lr=0.3, weight_decay=1e-6, warmup_epochs=10),
            train=TrainConfig(epochs=100, batch_size=4096, workers=8, cpus_per_worker=8.0, use_gpu=True),
            eval=EvalConfig(knn_k=200, knn_temperature=0.1, knn_bank_size=100_000),
            preset="imagenet",
        )
    raise ConfigError("preset", name, "one of " + ", ".join(PRESETS) + nearest(name, PRESETS))
