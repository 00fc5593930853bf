"""MoCo v1 (He et al. 2020) and v2 (Chen, Fan, Girshick, He 2020): a queue of momentum-encoded keys."""

from __future__ import annotations

import torch
from torch import nn

from raycl import distributed
from raycl.config import Config
from raycl.losses import info_nce, topk_accuracy
from raycl.methods.base import Method, Progress
from raycl.methods.momentum import (KeyQueue, ema_update, momentum_at, momentum_copy,
                                    shuffled_forward)
from raycl.models import convert_batchnorm, projection_head


class MoCo(Method):
    """Query encoder f_q (backbone + head), key encoder f_k = EMA of f_q, a queue of K keys.

    Each step: keys of view 1 from f_k (shuffled BN), InfoNCE of the queries of view 0 against their
    key and the queue (τ = 0.07 in v1, 0.2 in v2), then the global batch's keys are pushed to the
    queue, and after the optimizer step θ_k ← m·θ_k + (1 − m)·θ_q. v1 and v2 are this class with
    different defaults: v2 = MLP head (``model.proj_depth=2``), blur ("aug+", ``augment.recipe=
    moco_v2``) and the cosine schedule (``optim.schedule=cosine``), so the v2 ablation is a grid over
    those three fields. Like the reference implementation, the loss is one-directional (q from view
    0, k from view 1); the views' order is random, so both directions are trained over time.
    Pretext accuracy is (K+1)-way: is the positive key the most similar of K+1?
    """

    name = "moco"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        m, mo = cfg.method, cfg.model
        self.head = projection_head(self.backbone.out_dim, mo.proj_depth, mo.proj_hidden_dim,
                                    mo.proj_out_dim)
        self.key_backbone = momentum_copy(self.backbone)
        self.key_head = momentum_copy(self.head)
        self.queue = KeyQueue(m.queue_size, mo.proj_out_dim)
        self.temperature, self.momentum = m.temperature, m.momentum
        self.schedule, self.shuffle_bn = m.momentum_schedule, m.shuffle_bn
        self.key_bn_groups, self.seed = m.key_bn_groups, cfg.train.seed
        self._step = 0

    def use_global_bn(self, use_gpu: bool) -> None:
        """Only the query side: the key encoder keeps per-group BN (that is what shuffling is for)."""
        convert_batchnorm(self.backbone, use_gpu)
        convert_batchnorm(self.head, use_gpu)

    def _key_encoder(self, x: torch.Tensor) -> torch.Tensor:
        return self.key_head(self.key_backbone(self.normalize(x)))

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(this worker's keys, the global batch's keys in rank order)."""
        if not self.shuffle_bn:
            k = self._key_encoder(x)
            return k, distributed.gather_nograd(k)
        groups = self.key_bn_groups or max(2, distributed.world_size())
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self._step)
        return shuffled_forward(self._key_encoder, x, groups, generator)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(views) != 2:
            raise ValueError(f"MoCo takes 2 views, got {len(views)}")
        q = self.head(self.features(views[0]))
        k, all_keys = self.keys(views[1])
        out = info_nce(q, k, self.queue.keys.clone(), self.temperature)
        self.queue.push(nn.functional.normalize(all_keys, dim=1))
        acc = topk_accuracy(out.logits.detach(), out.targets)
        return {"loss": out.loss,
                "pretext_top1": torch.tensor(acc[1]), "pretext_top5": torch.tensor(acc[5])}

    def before_step(self, progress: Progress) -> None:
        self._step = progress.step

    def after_step(self, progress: Progress) -> None:
        m = momentum_at(progress.step, progress.total_steps, self.momentum, self.schedule)
        ema_update(self.key_backbone, self.backbone, m)
        ema_update(self.key_head, self.head, m)


class MoCoV2(MoCo):
    """MoCo v2: same algorithm; its presets add the MLP head, blur and the cosine schedule."""

    name = "mocov2"
