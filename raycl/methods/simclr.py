"""SimCLR (Chen, Kornblith, Norouzi, Hinton 2020): NT-Xent over the global batch of 2N views.

    for x in loader:                      # N images on each worker
        x1, x2 = aug(x), aug(x)           # two views (Ray Data actors)
        z = g(f(cat(x1, x2)))             # one pass: BN statistics over all 2N views (global BN)
        loss = nt_xent(z1, z2, τ)         # all-gathered: 2N·workers − 1 candidates per anchor

With multi-crop (``augment.small_crops = V``, SwAV §4 applies it to SimCLR) the V small views are
anchors too, each with the two large views of its image as positives (:func:`multi_crop_nt_xent`).
"""

from __future__ import annotations

import torch

from raycl.losses import multi_crop_nt_xent, nt_xent, topk_accuracy
from raycl.methods.base import Method
from raycl.methods.spec import MethodSpec, Option, Traits, temperature

SPEC = MethodSpec(
    name="simclr",
    paper="Chen, Kornblith, Norouzi, Hinton 2020",
    options=(temperature(0.5, "NT-Xent"),
             Option("normalize", True, "ℓ2-normalise z (cosine similarity); false: dot products, "
                    "as in Table 5's τ = 10 and 100 rows")),
    # τ: 0.5 in the CIFAR recipe (B.9), 0.1 on ImageNet; 0.2 learns fastest in a few CPU epochs
    defaults={"tiny": {"method.temperature": 0.2}, "cifar10": {"method.temperature": 0.5},
              "imagenet": {"method.temperature": 0.1}},
    # Fig. 8 compares no head with linear and non-linear ones; SwAV's Table 3 adds multi-crop
    traits=Traits(needs_head=False, multi_crop=True),
)


class SimCLR(Method):
    """Encoder f → h, projection head g → z, NT-Xent with temperature τ.

    Both views go through the network as one batch, so batch-norm statistics (global across workers
    when ``model.sync_bn``) cover all 2N views, as in the paper. Reports the contrastive ("pretext")
    top-1/top-5 accuracy: how often the positive is the most similar of the 2N−1 candidates (Table 5).
    """

    spec = SPEC

    def __init__(self, cfg):
        super().__init__(cfg)
        self.temperature, self.normalize_z = cfg.method.temperature, cfg.method.normalize

    def forward(self, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_views(views)
        b = views[0].shape[0]
        z = self.head(self.view_features(views)).split(b)
        if len(z) == 2:
            out = nt_xent(z[0], z[1], self.temperature, normalize=self.normalize_z)
        else:
            out = multi_crop_nt_xent(list(z), self.temperature, normalize=self.normalize_z)
        # the large views' anchors, comparable with and without multi-crop
        acc = topk_accuracy(out.logits[:2 * b].detach(), out.targets[:2 * b])
        return {"loss": out.loss,
                "pretext_top1": torch.tensor(acc[1]), "pretext_top5": torch.tensor(acc[5])}
