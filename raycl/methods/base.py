"""The small interface every method implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from raycl.methods.momentum import ema_update, momentum_at
from raycl.methods.spec import MethodSpec
from raycl.models import Normalize, build_backbone, convert_batchnorm, projection_head

if TYPE_CHECKING:
    from raycl.config import Config


def schedule_position(step: float, anchors: tuple) -> float:
    """``step`` mapped through piecewise-linear ``anchors`` ((run step, schedule step), ..., run
    steps strictly increasing); beyond the last anchor the schedules stay at their end."""
    if not anchors:
        return float(step)
    run, sched = zip(*anchors)
    return float(np.interp(step, run, sched))


class Progress(NamedTuple):
    """Where the run is: passed to the step hooks of a :class:`Method`.

    Schedules (learning rate, EMA momentum) are functions of :meth:`position` over ``total_steps``:
    the step itself, except in a run resumed with more (or fewer) epochs than it was planned with,
    whose remaining schedule is stretched over its new remaining steps (``anchors``)."""

    step: int  # optimizer steps taken before this one, over the whole run
    epoch: int  # 0-based epoch of this step
    steps_per_epoch: int
    total_steps: int  # length of the schedules, in schedule steps
    anchors: tuple = ()  # ((run step, schedule step), ...): piecewise-linear map; () is the identity

    def position(self, step: int | None = None) -> float:
        """Where ``step`` (default: this one) falls on the schedules, 0 … ``total_steps``."""
        step = self.step if step is None else step
        return schedule_position(step, self.anchors)


class Method(nn.Module):
    """A self-supervised method: its networks and its loss, nothing about data or scaling.

    ``forward(views)`` takes this worker's views (uint8 ``[B, 3, H, W]`` each, as streamed by the
    augmentation actors; large views first) and returns a dict with the local ``loss`` (a tensor to
    back-propagate) and detached metric tensors. Going through ``forward`` lets a data-parallel wrapper
    see the step. Around it the training loop calls three hooks with a :class:`Progress`:
    ``before_step`` (before forward), ``before_optimizer_step`` (after backward: e.g. dropping the
    gradient of frozen prototypes) and ``after_step`` (after the update: momentum encoders).
    ``features`` gives the backbone representation h used by every evaluation; ``head`` is the
    projection head g (``model.proj_*``), an ``nn.Sequential`` of layers (fine-tuning may keep its
    first layers).
    A subclass sets ``spec`` (its :class:`~raycl.methods.spec.MethodSpec`); a method with momentum
    networks lists its (target, online) pairs in :meth:`momentum_pairs` and the base
    :meth:`after_step` moves every target by the EMA of ``method.momentum``.
    """

    spec: ClassVar[MethodSpec]
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:
            cls.name = cls.spec.name

    def __init__(self, cfg: "Config"):
        super().__init__()
        self.cfg = cfg
        mo = cfg.model
        self.normalize = Normalize()
        self.backbone = build_backbone(mo.backbone)
        self.head = projection_head(self.backbone.out_dim, mo.proj_depth, mo.proj_hidden_dim, mo.proj_out_dim)

    @property
    def num_views(self) -> int:
        """Views per image this method consumes (the pipeline's ``view0`` … columns)."""
        small = self.cfg.augment.small_crops if self.spec.traits.multi_crop else 0
        return self.spec.traits.views + small

    def check_views(self, views: list[torch.Tensor]) -> None:
        if len(views) != self.num_views:
            small = self.num_views - self.spec.traits.views
            parts = f" ({self.spec.traits.views} large + {small} small)" if small else ""
            raise ValueError(f"{self.name} takes {self.num_views} views{parts}, got {len(views)}")

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def before_step(self, progress: Progress) -> None:
        """Hook before each forward pass."""

    def before_optimizer_step(self, progress: Progress) -> None:
        """Hook between backward and the optimizer step (gradients are in place)."""

    def after_step(self, progress: Progress) -> None:
        """Hook after each optimizer step: θ_target ← m·θ_target + (1 − m)·θ_online for every
        pair of :meth:`momentum_pairs`, m from ``method.momentum`` on its schedule."""
        pairs = self.momentum_pairs()
        if pairs:
            m = self.momentum_at(progress.position(), progress.total_steps)
            for target, online in pairs:
                ema_update(target, online, m)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(target, online) modules kept as exponential moving averages; none by default."""
        return []

    def momentum_at(self, step: float, total_steps: int) -> float:
        """The EMA coefficient at ``step`` (``method.momentum`` on ``method.momentum_schedule``)."""
        return momentum_at(step, total_steps, self.cfg.method.momentum, self.cfg.method.momentum_schedule)

    def predictor_parameters(self) -> list[nn.Parameter]:
        """Parameters of a predictor network, trained at ``optim.predictor_lr_scale`` × the lr."""
        return []

    def use_global_bn(self, use_gpu: bool) -> None:
        """Make batch norm global across workers (``model.sync_bn``); methods may limit where."""
        convert_batchnorm(self, use_gpu)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features h of uint8 or normalised images."""
        return self.backbone(self.normalize(images))

    def view_features(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Features h of all views, view-major: one backbone pass over the large views and one over
        the small ones (multi-crop), so batch norm sees each resolution as one batch."""
        large = self.spec.traits.views
        return torch.cat([self.features(torch.cat(group)) for group in (views[:large], views[large:])
                          if group])
