"""Barlow Twins (Zbontar, Jing, Misra, LeCun, Deny 2021): make the cross-correlation of the two
views' embeddings the identity matrix.

    for x in loader:
        z1, z2 = g(f(aug(x))), g(f(aug(x)))      # projector g: 3 layers, 8192 wide in the paper
        c = bn(z1).T @ bn(z2) / N                # D×D, BN and the sum over the *global* batch
        loss = Σ_i (1 − c_ii)² + λ Σ_i Σ_{j≠i} c_ij²
        loss.backward(); update(f, g)
"""

from __future__ import annotations

import torch

from raycl import distributed
from raycl.checks import positive
from raycl.methods.base import Method
from raycl.methods.spec import MethodSpec, Option

# LARS lr 0.2 per 256 (the paper's rate for weights; raycl's LARS leaves biases and BN unadapted
# instead of giving them 0.0048), weight decay 1.5e-6, 10 warm-up epochs
_PAPER_OPTIM = {"optim.optimizer": "lars", "optim.lr": 0.2, "optim.weight_decay": 1.5e-6,
                "optim.warmup_epochs": 10.0}

SPEC = MethodSpec(
    name="barlow_twins",
    paper="Zbontar, Jing, Misra, LeCun, Deny 2021",
    options=(Option("lambd", 0.0051, "λ: weight of the off-diagonal (redundancy reduction) term", positive),),
    defaults={
        "all": {"model.proj_depth": 3, "augment.recipe": "byol", "augment.blur": True},
        # tiny: the paper's colour strength, larger crops, 8 000 images and a 512-wide projector,
        # without which 2 CPU epochs stay below the random-init kNN (figures in the README)
        "tiny": {"model.proj_hidden_dim": 512, "model.proj_out_dim": 512, "augment.blur": False,
                 "augment.color_strength": 1.0, "augment.crop_scale": (0.5, 1.0), "data.num_images": 8000},
        # no CIFAR recipe in the paper: a 2048-wide projector, as solo-learn's CIFAR setting
        "cifar10": {"model.proj_hidden_dim": 2048, "model.proj_out_dim": 2048, **_PAPER_OPTIM},
        "imagenet": {"model.proj_hidden_dim": 8192, "model.proj_out_dim": 8192,
                     "train.batch_size": 2048, **_PAPER_OPTIM},
    },
)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float, eps: float = 1e-5
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Barlow Twins' loss (eq. 1) over the global batch, and the cross-correlation matrix C.

    ``L = Σ_i (1 − C_ii)² + λ Σ_i Σ_{j≠i} C_ij²`` with ``C_ij = Σ_b ẑ1_bi ẑ2_bj / N``, where ẑ is
    z standardised per dimension over all N images of all workers (BN without affine parameters).
    ``z1``, ``z2`` are this worker's ``[B, D]`` embeddings; the sums over workers carry gradients,
    so every worker gets the same loss and, after data-parallel averaging, one worker's gradient.
    """
    n = distributed.all_reduce_sum(torch.tensor(float(z1.shape[0]), device=z1.device, dtype=z1.dtype))

    def standardise(z: torch.Tensor) -> torch.Tensor:
        centred = z - distributed.all_reduce_sum(z.sum(0)) / n
        var = distributed.all_reduce_sum(centred.pow(2).sum(0)) / n
        return centred * torch.rsqrt(var + eps)

    c = distributed.all_reduce_sum(standardise(z1).T @ standardise(z2)) / n
    on_diag = torch.diagonal(c)
    loss = (on_diag - 1).pow(2).sum() + lambd * (c.pow(2).sum() - on_diag.pow(2).sum())
    return loss, c


class BarlowTwins(Method):
    """Backbone f → projector g (``model.proj_depth`` layers, 3 in the paper) → z; no negatives,
    no momentum network, no predictor. The metric ``pretext_diag`` is the mean of C's diagonal (1
    when every dimension agrees across views) and ``pretext_offdiag`` the root mean square of its
    off-diagonal entries (0 when dimensions are decorrelated)."""

    spec = SPEC

    def __init__(self, cfg):
        super().__init__(cfg)
        self.head[-1].register_parameter("bias", None)  # the loss standardises z: a bias gets no gradient
        self.lambd = cfg.method.lambd

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_views(views)
        # one pass per view, as in the reference code: BN statistics per view
        z1, z2 = (self.head(self.features(v)) for v in views)
        loss, c = barlow_twins_loss(z1, z2, self.lambd)
        with torch.no_grad():
            d = c.shape[0]
            diag = torch.diagonal(c)
            off = ((c.pow(2).sum() - diag.pow(2).sum()) / max(1, d * d - d)).sqrt()
        return {"loss": loss, "pretext_diag": diag.mean().detach(), "pretext_offdiag": off}
