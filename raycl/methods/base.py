"""The small interface every method implements."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from raycl.config import Config
from raycl.models import Normalize, build_backbone


class Method(nn.Module):
    """A self-supervised method: its networks and its loss, nothing about data or scaling.

    ``forward(views)`` takes this worker's views (uint8 ``[B, 3, H, W]`` each, as streamed by the
    augmentation actors) and returns a dict with the local ``loss`` (a tensor to back-propagate) and
    detached metric tensors. Going through ``forward`` lets a data-parallel wrapper see the step.
    ``after_step`` runs after each optimizer step (momentum encoders, queues). ``features`` gives the
    backbone representation h used by every evaluation.
    """

    name: ClassVar[str]
    num_views: ClassVar[int] = 2

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.normalize = Normalize()
        self.backbone = build_backbone(cfg.model.backbone)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """Hook after each optimizer step; ``step`` counts from 0 over the whole run."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features h of uint8 or normalised images."""
        return self.backbone(self.normalize(images))
