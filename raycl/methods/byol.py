"""BYOL (Grill et al. 2020): predict a slowly moving target network's projection; no negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raycl.config import Config
from raycl.losses import byol_loss
from raycl.methods.base import Method, Progress
from raycl.methods.momentum import ema_update, momentum_at, momentum_copy
from raycl.models import projection_head


class BYOL(Method):
    """Online network: backbone → projector g (``head``) → predictor q; target: EMA of backbone + g.

    Loss (symmetric, eq. 2): ``mean_b [(2 − 2·cos(q(z₁), z'₂)) + (2 − 2·cos(q(z₂), z'₁))]`` where z'
    comes from the target network without gradient. After each optimizer step the target moves by
    ``θ' ← τ·θ' + (1 − τ)·θ`` with τ rising from τ_base (``method.momentum``: 0.996, 0.99 for short
    runs) to 1 on a cosine over all steps. Projector and predictor depths are ``model.proj_depth``
    and ``model.pred_depth`` (BYOL Table 14). There is no classification pretext task; the metric
    ``pretext_cos`` is the mean cosine between predictions and targets. The predictor may learn at
    its own rate (``optim.predictor_lr_scale``, ``optim.predictor_fixed_lr``; the tiny preset does).
    """

    name = "byol"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        m, mo = cfg.method, cfg.model
        self.head = projection_head(self.backbone.out_dim, mo.proj_depth, mo.proj_hidden_dim,
                                    mo.proj_out_dim)
        self.predictor = projection_head(mo.proj_out_dim, mo.pred_depth, mo.pred_hidden_dim,
                                         mo.proj_out_dim)
        self.target_backbone = momentum_copy(self.backbone)
        self.target_head = momentum_copy(self.head)
        self.momentum, self.schedule = m.momentum, m.momentum_schedule
        self.current_momentum = m.momentum

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(views) != 2:
            raise ValueError(f"BYOL takes 2 views, got {len(views)}")
        x = self.normalize(torch.cat(views))
        p1, p2 = self.predictor(self.head(self.backbone(x))).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_head(self.target_backbone(x)).chunk(2)
        loss = (byol_loss(p1, t2) + byol_loss(p2, t1)).mean()
        cos = torch.cat([F.cosine_similarity(p1, t2), F.cosine_similarity(p2, t1)]).mean()
        return {"loss": loss, "pretext_cos": cos.detach(),
                "target_momentum": torch.tensor(self.current_momentum)}

    def predictor_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.predictor.parameters())

    def after_step(self, progress: Progress) -> None:
        tau = momentum_at(progress.step, progress.total_steps, self.momentum, self.schedule)
        ema_update(self.target_backbone, self.backbone, tau)
        ema_update(self.target_head, self.head, tau)
        self.current_momentum = momentum_at(progress.step + 1, progress.total_steps,
                                            self.momentum, self.schedule)
