"""MoCo v1 (He et al. 2020) and v2 (Chen, Fan, Girshick, He 2020): a queue of momentum-encoded keys.

    f_k.params = f_q.params
    for x in loader:
        q = f_q(aug(x))                          # queries: per-worker BN
        k = f_k(aug(x)).detach()                 # keys: shuffled BN over the global batch
        loss = info_nce(q, k, queue, τ)          # (K+1)-way: positive key vs the queue
        loss.backward(); update(f_q)
        f_k.params = m·f_k.params + (1 − m)·f_q.params
        enqueue(queue, all_gather(k)); dequeue the oldest
"""

from __future__ import annotations

import torch
from torch import nn

from raycl import distributed
from raycl.checks import ConfigError, at_least
from raycl.losses import info_nce, topk_accuracy
from raycl.methods.base import Method, Progress
from raycl.methods.momentum import KeyQueue, momentum_copy, shuffled_forward
from raycl.methods.spec import (MethodSpec, Option, momentum_options, needs_queue,
                                queue_holds_whole_batches, queue_option, temperature)
from raycl.models import convert_batchnorm
from raycl.seeding import derive_seed


def _key_bn_groups_fit(cfg) -> None:
    groups, workers, batch = cfg.method.key_bn_groups, cfg.train.workers, cfg.train.batch_size
    if not groups or not isinstance(workers, int) or workers < 1:
        return
    if groups % workers:
        raise ConfigError("method.key_bn_groups", groups, f"a multiple of train.workers = {workers}")
    if batch % groups or batch // groups < 2:
        raise ConfigError("method.key_bn_groups", groups,
                          f"a divisor of train.batch_size = {batch} leaving at least 2 keys per group")


# SGD lr 0.03 per 256, weight decay 1e-4, momentum 0.9, no warm-up, step decay (v2: cosine)
_PAPER_OPTIM = {"optim.optimizer": "sgd", "optim.lr": 0.03, "optim.weight_decay": 1e-4,
                "optim.momentum": 0.9, "optim.warmup_epochs": 0.0, "optim.schedule": "step"}

SPEC = MethodSpec(
    name="moco",
    paper="He, Fan, Wu, Xie, Girshick 2020",
    options=(temperature(0.07, "InfoNCE"),
             queue_option(4096, "K: keys in the queue, a multiple of the global batch"),
             *momentum_options(0.999),
             Option("shuffle_bn", True, "shuffled BN for the key encoder (§3.3)"),
             Option("key_bn_groups", 0, "BN groups of the shuffled keys (0: one per worker, at least 2)",
                    at_least(0))),
    defaults={
        "all": {"model.sync_bn": False,  # per-worker BN for queries, shuffled BN for keys
                "model.proj_depth": 1, "model.proj_hidden_dim": 2048,  # v1: a linear (fc) head
                "augment.recipe": "moco_v1", "augment.blur": False},
        # tiny keeps the scale's AdamW so that a few CPU epochs learn
        "tiny": {"method.momentum": 0.99, "method.queue_size": 1024, "model.proj_hidden_dim": 256},
        "cifar10": {"method.queue_size": 4096, **_PAPER_OPTIM},
        "imagenet": {"method.queue_size": 65536, **_PAPER_OPTIM},
    },
    rules=(needs_queue, queue_holds_whole_batches, _key_bn_groups_fit),
)


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

    spec = SPEC

    def __init__(self, cfg):
        super().__init__(cfg)
        m, mo = cfg.method, cfg.model
        self.key_backbone = momentum_copy(self.backbone)
        self.key_head = momentum_copy(self.head)
        self.queue = KeyQueue(m.queue_size, mo.proj_out_dim)
        self.temperature, self.shuffle_bn, self.key_bn_groups = m.temperature, m.shuffle_bn, m.key_bn_groups
        self.seed = cfg.train.seed
        self.step = 0

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
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "moco_key_shuffle", self.step))
        return shuffled_forward(self._key_encoder, x, groups, generator)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_views(views)
        q = self.head(self.features(views[0]))
        k, all_keys = self.keys(views[1])
        out = info_nce(q, k, self.queue.keys.clone(), self.temperature)
        self.queue.push(nn.functional.normalize(all_keys, dim=1))
        acc = topk_accuracy(out.logits.detach(), out.targets)
        return {"loss": out.loss,
                "pretext_top1": torch.tensor(acc[1]), "pretext_top5": torch.tensor(acc[5])}

    def before_step(self, progress: Progress) -> None:
        self.step = progress.step  # seeds the key shuffle: the same permutation on every worker

    def momentum_pairs(self):
        return [(self.key_backbone, self.backbone), (self.key_head, self.head)]


class MoCoV2(MoCo):
    """MoCo v2: same algorithm; its presets add the MLP head, blur and the cosine schedule."""

    spec = SPEC.variant(
        name="mocov2",
        paper="Chen, Fan, Girshick, He 2020",
        defaults={
            # "MLP head" (2 layers), "aug+" (blur), "cos" (cosine schedule), τ 0.2: MoCo v2 Table 1
            "all": {"method.temperature": 0.2, "model.proj_depth": 2, "augment.recipe": "moco_v2",
                    "augment.blur": True, "optim.schedule": "cosine"},
            "tiny": {"augment.blur": False},
        },
    )
