"""SwAV (Caron et al. 2020): swapped prediction of online cluster codes, with multi-crop.

    C = normalize(C)                                 # K prototypes
    z = normalize(g(f(cat(large_views, small_views))))
    scores = z @ C.T
    q_s = sinkhorn(scores_s over the global batch)   # codes of the large views only, no gradient
    loss = Σ_{s ≠ t} cross_entropy(softmax(scores_t / τ), q_s)   # swapped prediction
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raycl import distributed
from raycl.checks import at_least, positive
from raycl.losses import sinkhorn, swav_loss
from raycl.methods.base import Method, Progress
from raycl.methods.spec import (MethodSpec, Option, Traits, queue_holds_whole_batches, queue_option,
                                temperature)

# LARS, lr 4.8 at batch 4096 = 0.3 per 256, final lr 0.001 × peak
_PAPER_OPTIM = {"optim.optimizer": "lars", "optim.lr": 0.3, "optim.weight_decay": 1e-6,
                "optim.min_lr_ratio": 0.001}

SPEC = MethodSpec(
    name="swav",
    paper="Caron, Misra, Mairal, Goyal, Bojanowski, Joulin 2020",
    options=(temperature(0.1, "the swapped prediction"),
             Option("prototypes", 3000, "K: number of prototypes", at_least(2)),
             Option("epsilon", 0.05, "Sinkhorn entropy regularisation ε", positive),
             Option("sinkhorn_iters", 3, "Sinkhorn-Knopp iterations", at_least(1)),
             queue_option(0, "embeddings kept from past batches (0: none)"),
             Option("queue_start_epoch", 15, "epoch from which the queue is used", at_least(0)),
             Option("freeze_prototypes_epochs", 1, "epochs in which the prototypes get no update",
                    at_least(0))),
    defaults={
        "all": {"augment.recipe": "swav", "augment.small_crops": 2, "augment.small_crop_size": 16},
        # tiny: τ 0.2, 30 prototypes, the scale's AdamW at lr 1e-2 and 8 000 images, without which
        # the swapped-prediction loss stays near ln K for 2 CPU epochs (figures in the README)
        "tiny": {"method.temperature": 0.2, "method.prototypes": 30,
                 "optim.lr": 1e-2, "data.num_images": 8000},
        "cifar10": _PAPER_OPTIM,
        # batch 256 with a queue of 3840, 2 × 224 + 6 × 96 crops
        "imagenet": {"method.queue_size": 3840, "train.batch_size": 256,
                     "augment.small_crops": 6, "augment.small_crop_size": 96, **_PAPER_OPTIM},
    },
    traits=Traits(multi_crop=True),
    rules=(queue_holds_whole_batches,),
)


class SwAV(Method):
    """Backbone → projection head → L2-normalised z → scores ``zᵀC`` against K normalised prototypes.

    Views are the 2 large crops followed by V small crops (``augment.small_crops``). Codes come only
    from the large crops: Sinkhorn-Knopp (ε, 3 iterations) over the *global* batch (the row sums are
    all-reduced, so N workers equal one worker), optionally on top of a queue of embeddings from past
    global batches (``method.queue_size``, from epoch ``method.queue_start_epoch``; every worker holds
    the whole queue, unlike the reference code's per-worker parts, so checkpoints carry it and resume
    on any number of workers, and gives Sinkhorn its share of the rows). Each view predicts
    the codes of every other large view through ``softmax(scores/τ)`` (swapped prediction). The
    prototypes are re-normalised before every step and get no update during the first
    ``method.freeze_prototypes_epochs`` epochs. Pretext accuracy: how often the prototype a view
    predicts is the one its partner was assigned (top-1/top-5 over views and partners).
    """

    spec = SPEC

    def __init__(self, cfg):
        super().__init__(cfg)
        m, mo = cfg.method, cfg.model
        self.prototypes = nn.Linear(mo.proj_out_dim, m.prototypes, bias=False)
        self.temperature, self.epsilon, self.iterations = m.temperature, m.epsilon, m.sinkhorn_iters
        self.queue_start_epoch, self.freeze_epochs = m.queue_start_epoch, m.freeze_prototypes_epochs
        self.queue_size = m.queue_size
        if self.queue_size:  # past global batches' embeddings, newest first: the same on every worker
            # and in checkpoints, so a run resumes on any number of workers
            self.register_buffer("queue", torch.zeros(2, self.queue_size, mo.proj_out_dim))
            self.register_buffer("queue_rows", torch.zeros((), dtype=torch.long))
        self._epoch = 0

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def embed(self, views: list[torch.Tensor]) -> torch.Tensor:
        """L2-normalised embeddings of all views, large first (one backbone pass per resolution,
        one head pass over everything, as in the reference code)."""
        return F.normalize(self.head(self.view_features(views)), dim=1)

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_views(views)
        self.normalize_prototypes()
        b = views[0].shape[0]
        z = self.embed(views)
        scores = list(self.prototypes(z).split(b))
        codes = []
        use_queue = bool(self.queue_size) and self._epoch >= self.queue_start_epoch
        for s in range(2):
            out = scores[s].detach()
            if use_queue and int(self.queue_rows) >= self.queue_size:
                out = torch.cat([self._queue_share(s) @ self.prototypes.weight.T, out])
            codes.append(sinkhorn(out, self.epsilon, self.iterations)[-b:])
        if use_queue:
            self._push(z.detach()[:2 * b].view(2, b, -1))
        loss = swav_loss(scores, codes, self.temperature)
        top1, top5 = self._agreement(scores, codes)
        return {"loss": loss, "pretext_top1": top1, "pretext_top5": top5}

    def _queue_share(self, view: int) -> torch.Tensor:
        """This worker's rows of the queue: Sinkhorn sees the workers' shares as one set, the whole
        queue, whatever the number of workers."""
        w, r = distributed.world_size(), distributed.rank()
        return self.queue[view, r * self.queue_size // w:(r + 1) * self.queue_size // w]

    @torch.no_grad()
    def _push(self, z: torch.Tensor) -> None:
        """Push the global batch's embeddings of the 2 large views (``z``: this worker's ``[2, b, D]``,
        gathered in rank order) in front of the queue, dropping the oldest."""
        z = distributed.gather_nograd(z.transpose(0, 1).contiguous()).transpose(0, 1)
        n = z.shape[1]
        self.queue[:, n:] = self.queue[:, :-n].clone()
        self.queue[:, :n] = z.to(self.queue.dtype)
        self.queue_rows.add_(n)

    @torch.no_grad()
    def _agreement(self, scores: list[torch.Tensor], codes: list[torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        hits1, hits5, n = 0.0, 0.0, 0
        for s, q in enumerate(codes):
            assigned = q.argmax(dim=1, keepdim=True)
            for t, x in enumerate(scores):
                if t == s:
                    continue
                top = x.topk(min(5, x.shape[1]), dim=1).indices
                hits1 += (top[:, :1] == assigned).any(dim=1).float().mean()
                hits5 += (top == assigned).any(dim=1).float().mean()
                n += 1
        return hits1 / n, hits5 / n

    def before_step(self, progress: Progress) -> None:
        self._epoch = progress.epoch

    def before_optimizer_step(self, progress: Progress) -> None:
        if progress.epoch < self.freeze_epochs:
            self.prototypes.weight.grad = None
