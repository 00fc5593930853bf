"""SimCLRv2 (Chen, Kornblith, Swersky, Norouzi, Hinton 2020b): SimCLR with a deeper head and memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raycl import distributed
from raycl.config import Config
from raycl.losses import nt_xent, topk_accuracy
from raycl.methods.base import Progress
from raycl.methods.momentum import KeyQueue, ema_update, momentum_at, momentum_copy
from raycl.methods.simclr import SimCLR


class SimCLRv2(SimCLR):
    """SimCLR with a 3-layer projection head by default (``model.proj_depth``, 0–4) whose first
    ``model.finetune_from`` layers (1 in the paper) are kept when fine-tuning on labels, and an
    optional MoCo-style memory: with ``method.queue_size > 0``, a momentum copy of the encoder and
    head (``method.momentum``) encodes view 0 of each global batch into a queue whose entries are extra
    negatives for every anchor of NT-Xent (the paper's "memory network"). Fine-tuning on few labels and
    distillation are evaluation protocols (``raycl.evaluate``).
    """

    name = "simclrv2"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        m = cfg.method
        self.memory: KeyQueue | None = None
        if m.queue_size:
            self.memory = KeyQueue(m.queue_size, cfg.model.proj_out_dim)
            self.memory_backbone = momentum_copy(self.backbone)
            self.memory_head = momentum_copy(self.head)
        self.momentum, self.schedule = m.momentum, m.momentum_schedule

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(views) != 2:
            raise ValueError(f"SimCLRv2 takes 2 views, got {len(views)}")
        z = self.head(self.features(torch.cat(views)))
        z1, z2 = z.chunk(2)
        memory = self.memory.keys.clone() if self.memory is not None else None
        out = nt_xent(z1, z2, self.temperature, memory=memory)
        if self.memory is not None:
            with torch.no_grad():
                keys = self.memory_head(self.memory_backbone(self.normalize(views[0])))
                self.memory.push(F.normalize(distributed.gather_nograd(keys), dim=1))
        acc = topk_accuracy(out.logits.detach(), out.targets)
        return {"loss": out.loss,
                "pretext_top1": torch.tensor(acc[1]), "pretext_top5": torch.tensor(acc[5])}

    def after_step(self, progress: Progress) -> None:
        if self.memory is not None:
            m = momentum_at(progress.step, progress.total_steps, self.momentum, self.schedule)
            ema_update(self.memory_backbone, self.backbone, m)
            ema_update(self.memory_head, self.head, m)
