"""SimCLRv2 (Chen, Kornblith, Swersky, Norouzi, Hinton 2020b): SimCLR with a deeper head and memory.

    z1, z2 = g(f(x1)), g(f(x2))           # g: 3 layers; fine-tuning keeps its first layer
    memory = queue of g'(f'(x1)) from past global batches   # f', g': EMA of f, g (optional)
    loss = nt_xent(z1, z2, τ, negatives += memory)
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from raycl import distributed
from raycl.losses import nt_xent, topk_accuracy
from raycl.methods.momentum import KeyQueue, momentum_copy
from raycl.methods.simclr import SPEC as SIMCLR_SPEC, SimCLR
from raycl.methods.spec import momentum_options, queue_holds_whole_batches, queue_option

SPEC = SIMCLR_SPEC.variant(
    name="simclrv2",
    paper="Chen, Kornblith, Swersky, Norouzi, Hinton 2020b",
    options=(queue_option(0, "memory of negatives from a momentum encoder (0: off)"),
             *momentum_options(0.999)),
    defaults={"all": {"model.proj_depth": 3, "model.finetune_from": 1}},
    rules=(queue_holds_whole_batches,),
    traits=dataclasses.replace(SIMCLR_SPEC.traits, multi_crop=False),  # its memory holds large views
)


class SimCLRv2(SimCLR):
    """SimCLR with a 3-layer projection head by default (``model.proj_depth``, 0–4) whose first
    ``model.finetune_from`` layers (1 in the paper) are kept when fine-tuning on labels, and an
    optional MoCo-style memory: with ``method.queue_size > 0``, a momentum copy of the encoder and
    head (``method.momentum``) encodes view 0 of each global batch into a queue whose entries are extra
    negatives for every anchor of NT-Xent (the paper's "memory network"). Fine-tuning on few labels and
    distillation are evaluation protocols (``raycl.evaluate``).
    """

    spec = SPEC

    def __init__(self, cfg):
        super().__init__(cfg)
        self.memory: KeyQueue | None = None
        if cfg.method.queue_size:
            self.memory = KeyQueue(cfg.method.queue_size, cfg.model.proj_out_dim)
            self.memory_backbone = momentum_copy(self.backbone)
            self.memory_head = momentum_copy(self.head)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_views(views)
        z1, z2 = self.head(self.features(torch.cat(views))).chunk(2)
        memory = self.memory.keys.clone() if self.memory is not None else None
        out = nt_xent(z1, z2, self.temperature, memory=memory, normalize=self.normalize_z)
        if self.memory is not None:
            with torch.no_grad():
                keys = self.memory_head(self.memory_backbone(self.normalize(views[0])))
                self.memory.push(F.normalize(distributed.gather_nograd(keys), dim=1))
        acc = topk_accuracy(out.logits.detach(), out.targets)
        return {"loss": out.loss,
                "pretext_top1": torch.tensor(acc[1]), "pretext_top5": torch.tensor(acc[5])}

    def momentum_pairs(self):
        if self.memory is None:
            return []
        return [(self.memory_backbone, self.backbone), (self.memory_head, self.head)]
