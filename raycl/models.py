"""Backbones f, projection heads g, input normalisation and global batch norm."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from raycl import distributed

log = logging.getLogger(__name__)

# ImageNet statistics, used by the papers for every dataset.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """uint8 [B, 3, H, W] (as streamed from the augmentation actors) → normalised float."""

    def __init__(self, mean=MEAN, std=STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.mean.dtype if x.dtype == torch.uint8 else x.dtype
        return (x.to(dtype) - self.mean.to(dtype)) / self.std.to(dtype)


class TinyCNN(nn.Module):
    """A small 4-stage CNN for CPU runs and tests (≈0.1 M parameters, 128-d features)."""

    def __init__(self, widths=(16, 32, 64, 128)):
        super().__init__()
        layers, cin = [], 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


def _torchvision_resnet(name: str, cifar_stem: bool) -> nn.Module:
    import torchvision.models  # deferred: it imports torch._dynamo, about 1 s in every Ray process

    net = getattr(torchvision.models, name)(weights=None)
    if cifar_stem:  # SimCLR appendix B.9: 3×3 stride-1 first conv, no max-pool
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.out_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net


# name -> builder; the names are raycl.config.BACKBONES (tests/test_config.py checks they agree)
BACKBONE_BUILDERS = {
    "tiny_cnn": TinyCNN,
    "resnet18_cifar": lambda: _torchvision_resnet("resnet18", cifar_stem=True),
    "resnet18": lambda: _torchvision_resnet("resnet18", cifar_stem=False),
    "resnet50": lambda: _torchvision_resnet("resnet50", cifar_stem=False),
}


def build_backbone(name: str) -> nn.Module:
    """A backbone with an ``out_dim`` attribute mapping normalised images to feature vectors h."""
    if name not in BACKBONE_BUILDERS:
        raise ValueError(f"model.backbone = {name!r} is not allowed: one of "
                         + ", ".join(BACKBONE_BUILDERS))
    return BACKBONE_BUILDERS[name]()


def projection_head(in_dim: int, depth: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """MLP g with ``depth`` linear layers: (Linear → BN → ReLU) × (depth−1) → Linear.

    depth 0 is the identity ("no head" in SimCLR Fig. 8), depth 1 a linear head, depth 2 SimCLR's
    non-linear head, depth 3 SimCLRv2's. Layers are kept as separate children so a later fine-tune can
    start from any of them.
    """
    if depth == 0:
        return nn.Sequential()
    layers, d = [], in_dim
    for _ in range(depth - 1):
        layers.append(nn.Sequential(nn.Linear(d, hidden_dim, bias=False),
                                    nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)))
        d = hidden_dim
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose statistics are taken over the global batch of all workers.

    Works on any device and backend (gloo included, where ``nn.SyncBatchNorm`` does not run): the
    per-channel sums go through :func:`raycl.distributed.all_reduce_sum`, which carries gradients, so N
    workers with batch B normalise and back-propagate exactly like one worker with batch N·B. Two
    passes (mean, then centred second moment) keep float32 accurate. With one process it is plain BN.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and distributed.is_distributed()):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = distributed.all_reduce_sum(
            torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=x.dtype))
        mean = distributed.all_reduce_sum(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = distributed.all_reduce_sum((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: nn.Module, use_gpu: bool) -> nn.Module:
    """Make every BN layer global: ``nn.SyncBatchNorm`` on GPUs, :class:`GlobalBatchNorm` elsewhere."""
    if use_gpu:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_global_bn(module)


def _to_global_bn(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        like = next(iter([*module.parameters(), *module.buffers()]), None)  # keep dtype and device
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=getattr(like, "device", None),
                              dtype=like.dtype if like is not None and like.is_floating_point() else None)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        if module.affine:  # keep frozen (momentum-network) BN parameters frozen
            new.weight.requires_grad_(module.weight.requires_grad)
            new.bias.requires_grad_(module.bias.requires_grad)
        return new
    for name, child in module.named_children():
        module.add_module(name, _to_global_bn(child))
    return module
