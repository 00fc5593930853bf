"""SimSiam (Chen & He 2021), a milder recipe and an op, as a raycl plugin: no fork, one file.
Run it: python -m raycl run --plugin examples/simsiam.py --method simsiam --set augment.recipe=mild"""
import torch
import torch.nn.functional as F

import raycl
from raycl.data.augment import Color, ViewPipeline
from raycl.methods import Method
from raycl.methods.spec import MethodSpec, Traits
from raycl.models import projection_head


@raycl.register_method
class SimSiam(Method):
    """loss = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2, D = −cos, p = h(z): no negatives, no EMA."""

    spec = MethodSpec("simsiam", paper="Chen & He 2021", traits=Traits(predictor=True),
                      defaults={"all": {"optim.predictor_fixed_lr": True}})  # the paper's §4.2

    def __init__(self, cfg):
        super().__init__(cfg)
        m = cfg.model
        self.predictor = projection_head(m.proj_out_dim, m.pred_depth, m.pred_hidden_dim, m.proj_out_dim)

    def forward(self, views):
        self.check_views(views)
        z1, z2 = self.head(self.view_features(views)).chunk(2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = -(F.cosine_similarity(p1, z2.detach()) + F.cosine_similarity(p2, z1.detach())).mean() / 2
        return {"loss": loss}

    def predictor_parameters(self):
        return list(self.predictor.parameters())


@raycl.register_recipe("mild", crop_scale=(0.3, 1.0))
def mild(size, strength, blur, crop):
    """Both views: a crop (with flip) and half the colour distortion."""
    ops = [crop(), Color(strength / 2, p=0.8, gray_p=0.1)]
    return [ViewPipeline(ops), ViewPipeline(ops)]


@raycl.register_op("invert")  # augment.recipe=pair:crop,invert: colours inverted at p = 1/2
def invert(size, strength):
    return lambda x, g: torch.where(torch.rand(len(x), 1, 1, 1, generator=g) < 0.5, 1 - x, x)
