"""SimCLR (Chen, Kornblith, Norouzi, Hinton 2020): NT-Xent over the global batch of 2N views."""

from __future__ import annotations

import torch

from raycl.config import Config
from raycl.losses import nt_xent, topk_accuracy
from raycl.methods.base import Method
from raycl.models import projection_head


class SimCLR(Method):
    """Encoder f → h, projection head g → z, NT-Xent with temperature τ.

    Both views go through the network as one batch, so batch-norm statistics (global across workers
    when ``model.sync_bn``) cover all 2N views, as in the paper. Reports the contrastive ("pretext")
    top-1/top-5 accuracy: how often the positive is the most similar of the 2N−1 candidates (Table 5).
    """

    name = "simclr"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        m = cfg.model
        self.head = projection_head(self.backbone.out_dim, m.proj_depth, m.proj_hidden_dim,
                                    m.proj_out_dim)
        self.temperature = cfg.method.temperature

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(views) != 2:
            raise ValueError(f"SimCLR takes 2 views, got {len(views)}")
        z = self.head(self.features(torch.cat(views)))
        z1, z2 = z.chunk(2)
        out = nt_xent(z1, z2, self.temperature)
        acc = topk_accuracy(out.logits.detach(), out.targets)
        return {"loss": out.loss,
                "pretext_top1": torch.tensor(acc[1]), "pretext_top5": torch.tensor(acc[5])}
