"""BYOL (Grill et al. 2020): predict a slowly moving target network's projection; no negatives.

    for x in loader:
        v1, v2 = aug(x), aug(x)
        p1, p2 = q(g(f(v1))), q(g(f(v2)))            # online: backbone, projector, predictor
        t1, t2 = g'(f'(v1)), g'(f'(v2))              # target: EMA of backbone and projector
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)  # 2 − 2·cos, symmetric
        loss.backward(); update(f, g, q)
        f', g' = τ·(f', g') + (1 − τ)·(f, g)          # τ: τ_base → 1 on a cosine
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raycl.losses import byol_loss
from raycl.methods.base import Method, Progress
from raycl.methods.momentum import momentum_copy
from raycl.methods.spec import MethodSpec, Traits, momentum_options
from raycl.models import projection_head

_PAPER_OPTIM = {"optim.optimizer": "lars", "optim.lr": 0.2, "optim.weight_decay": 1.5e-6}  # per 256

SPEC = MethodSpec(
    name="byol",
    paper="Grill et al. 2020",
    options=momentum_options(0.996),  # τ_base (0.99 for short runs)
    defaults={
        "all": {"method.momentum_schedule": "cosine",
                "model.proj_depth": 2, "model.proj_hidden_dim": 4096, "model.proj_out_dim": 256,
                "model.pred_depth": 2, "model.pred_hidden_dim": 4096,
                "augment.recipe": "byol", "augment.blur": True},
        # tiny: the scale's AdamW; BYOL's own colour strength, larger crops, a faster EMA, more
        # images and a fixed 5x predictor rate (SimSiam's fixed predictor lr, DirectPred's faster
        # predictor), without which the online network first matches the target's shared mean
        # direction and 2 CPU epochs fall below the random-init kNN (figures in the README)
        "tiny": {"method.momentum": 0.98,
                 "model.proj_hidden_dim": 256, "model.proj_out_dim": 64, "model.pred_hidden_dim": 256,
                 "augment.blur": False, "augment.color_strength": 1.0, "augment.crop_scale": (0.5, 1.0),
                 "data.num_images": 8000,
                 "optim.predictor_lr_scale": 5.0, "optim.predictor_fixed_lr": True},
        "cifar10": _PAPER_OPTIM,
        "imagenet": _PAPER_OPTIM,
    },
    traits=Traits(predictor=True),
)


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

    spec = SPEC

    def __init__(self, cfg):
        super().__init__(cfg)
        mo = cfg.model
        self.predictor = projection_head(mo.proj_out_dim, mo.pred_depth, mo.pred_hidden_dim,
                                         mo.proj_out_dim)
        self.target_backbone = momentum_copy(self.backbone)
        self.target_head = momentum_copy(self.head)
        self.current_momentum = cfg.method.momentum  # reported: the τ of the next update

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_views(views)
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

    def momentum_pairs(self):
        return [(self.target_backbone, self.backbone), (self.target_head, self.head)]

    def after_step(self, progress: Progress) -> None:
        super().after_step(progress)
        self.current_momentum = self.momentum_at(progress.position(progress.step + 1), progress.total_steps)
