"""The small interface every method implements."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from torch import nn

from raycl.config import Config
from raycl.models import Normalize, build_backbone, convert_batchnorm


class Progress(NamedTuple):
    """Where the run is: passed to the step hooks of a :class:`Method`."""

    step: int  # optimizer steps taken before this one, over the whole run
    epoch: int  # 0-based epoch of this step
    steps_per_epoch: int
    total_steps: int


class Method(nn.Module):
    """A self-supervised method: its networks and its loss, nothing about data or scaling.

    ``forward(views)`` takes this worker's views (uint8 ``[B, 3, H, W]`` each, as streamed by the
    augmentation actors; large views first) and returns a dict with the local ``loss`` (a tensor to
    back-propagate) and detached metric tensors. Going through ``forward`` lets a data-parallel wrapper
    see the step. Around it the training loop calls three hooks with a :class:`Progress`:
    ``before_step`` (before forward), ``before_optimizer_step`` (after backward: e.g. dropping the
    gradient of frozen prototypes) and ``after_step`` (after the update: momentum encoders).
    ``features`` gives the backbone representation h used by every evaluation; ``head`` is the
    projection head, an ``nn.Sequential`` of layers (fine-tuning may keep its first layers).
    """

    name: ClassVar[str]

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.normalize = Normalize()
        self.backbone = build_backbone(cfg.model.backbone)

    @property
    def num_views(self) -> int:
        """Views per image this method consumes (the pipeline's ``view0`` … columns)."""
        return 2

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def before_step(self, progress: Progress) -> None:
        """Hook before each forward pass."""

    def before_optimizer_step(self, progress: Progress) -> None:
        """Hook between backward and the optimizer step (gradients are in place)."""

    def after_step(self, progress: Progress) -> None:
        """Hook after each optimizer step."""

    def predictor_parameters(self) -> list[nn.Parameter]:
        """Parameters of a predictor network, trained at ``optim.predictor_lr_scale`` × the lr."""
        return []

    def use_global_bn(self, use_gpu: bool) -> None:
        """Make batch norm global across workers (``model.sync_bn``); methods may limit where."""
        convert_batchnorm(self, use_gpu)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features h of uint8 or normalised images."""
        return self.backbone(self.normalize(images))
