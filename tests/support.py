"""Helpers shared by the method tests: views shaped for a method, and the overrides that make every
part of a method take part in one step (so that a test of its gradients sees all of them)."""

import torch

from raycl.methods import method_spec

# a part that is off at the tiny preset's defaults, switched on so that tests exercise it
EXERCISE = {
    "simclrv2": {"method.queue_size": 32},  # the memory of negatives
    "moco": {"method.queue_size": 64, "method.key_bn_groups": 2},
    "mocov2": {"method.queue_size": 64, "method.key_bn_groups": 2},
    "swav": {"method.freeze_prototypes_epochs": 0},  # prototypes learn from the first step
}


def make_views(cfg, batch: int, seed: int = 0) -> list[torch.Tensor]:
    """Random uint8 views for ``cfg``'s method: its large views, then its small crops."""
    traits = method_spec(cfg.method.name).traits
    sizes = [cfg.augment.crop_size] * traits.views
    if traits.multi_crop:
        sizes += [cfg.augment.small_crop_size] * cfg.augment.small_crops
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (batch, 3, s, s), dtype=torch.uint8, generator=g) for s in sizes]
