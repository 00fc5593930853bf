"""Fine-tuning the whole network on a label subset, and distilling a fine-tuned teacher into a
student on every training image (SimCLRv2's semi-supervised protocol)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from raycl.data.augment import Crop, ViewPipeline
from raycl.seeding import derive_seed


class Classifier(nn.Module):
    """uint8 images → logits: normalisation, backbone, the first ``keep`` head layers, a new linear."""

    def __init__(self, method: nn.Module, keep: int, num_classes: int):
        super().__init__()
        self.normalize = copy.deepcopy(method.normalize)
        self.backbone = copy.deepcopy(method.backbone)
        layers = list(method.head)[:keep]
        self.head = nn.Sequential(*[copy.deepcopy(layer) for layer in layers])
        dim = method.backbone.out_dim
        for layer in layers:
            linears = [m for m in layer.modules() if isinstance(m, nn.Linear)]
            if linears:
                dim = linears[-1].out_features
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.backbone(self.normalize(images))))


def light_augment(crop_size: int) -> ViewPipeline:
    """Fine-tuning augmentation: random resized crop (scale 0.25–1) and horizontal flip."""
    return ViewPipeline([Crop(crop_size, scale=(0.25, 1.0), flip=0.5)])


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` in eval mode, batched."""
    was = model.training
    model.eval()
    out = torch.cat([model(b) for b in images.split(batch_size)]) if len(images) else \
        torch.zeros(0, 1)
    model.train(was)
    return out


def _train_sgd(model: nn.Module, n: int, loss_fn: Callable[[torch.Tensor], torch.Tensor], *,
              epochs: int, batch_size: int, lr: float, weight_decay: float,
              generator: torch.Generator) -> None:
    """SGD (Nesterov, momentum 0.9, lr × B/256, cosine per step) over ``n`` examples in the batch
    order ``generator`` shuffles; ``loss_fn(batch_indices)`` returns the batch loss. Batches of one
    are dropped (batch norm)."""
    bs = min(batch_size, n)
    steps_per_epoch = max(1, math.ceil(n / bs))
    total = epochs * steps_per_epoch
    peak = lr * bs / 256
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=peak,
                          momentum=0.9, nesterov=True, weight_decay=weight_decay)
    model.train()
    step = 0
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=generator).split(bs):
            if len(idx) < 2:
                continue
            for g in opt.param_groups:
                g["lr"] = 0.5 * peak * (1 + math.cos(math.pi * step / total))
            loss = loss_fn(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    model.eval()


def _generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose))


def finetune(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int = 30,
             batch_size: int = 64, lr: float = 0.1, weight_decay: float = 0.0,
             augment: ViewPipeline | None = None, seed: int = 0) -> nn.Module:
    """Train ``model`` (uint8 images → logits) with cross-entropy on augmented ``images``."""
    gen = _generator(seed, "finetune_augment")
    labels = labels.long()

    def loss_fn(idx):
        x = images[idx] if augment is None else augment(images[idx], gen)
        return F.cross_entropy(model(x), labels[idx])

    _train_sgd(model, len(images), loss_fn, epochs=epochs, batch_size=batch_size, lr=lr,
              weight_decay=weight_decay, generator=_generator(seed, "finetune_batches"))
    return model


def distill(teacher: nn.Module, student: nn.Module, images: torch.Tensor,
            labelled: torch.Tensor | None = None, labels: torch.Tensor | None = None, *,
            temperature: float = 1.0, alpha: float = 0.0, epochs: int = 10, batch_size: int = 64,
            lr: float = 0.1, weight_decay: float = 0.0, augment: ViewPipeline | None = None,
            seed: int = 0) -> nn.Module:
    """Train ``student`` on all ``images`` from ``teacher``'s softened outputs (SimCLRv2 eq. 3).

    Loss ``(1 − α) · T² · KL(softmax(t/T) ‖ softmax(s/T)) + α · CE(s, y)``, the second term over the
    batch's labelled images (``labelled``: indices into ``images`` with ``labels``). Teacher and
    student see the same augmented batch; the teacher stays in eval mode.
    """
    gen = _generator(seed, "distill_augment")
    teacher.eval()
    y_full = torch.full((len(images),), -1, dtype=torch.long)
    if labelled is not None and alpha > 0:
        y_full[torch.as_tensor(labelled).long()] = torch.as_tensor(labels).long()
    T = temperature

    def loss_fn(idx):
        x = images[idx] if augment is None else augment(images[idx], gen)
        with torch.no_grad():
            target = F.softmax(teacher(x).float() / T, dim=1)
        logits = student(x)
        loss = F.kl_div(F.log_softmax(logits / T, dim=1), target, reduction="batchmean") * T * T
        y = y_full[idx]
        if alpha > 0 and (y >= 0).any():
            loss = (1 - alpha) * loss + alpha * F.cross_entropy(logits[y >= 0], y[y >= 0])
        elif alpha > 0:
            loss = (1 - alpha) * loss
        return loss

    _train_sgd(student, len(images), loss_fn, epochs=epochs, batch_size=batch_size, lr=lr,
              weight_decay=weight_decay, generator=_generator(seed, "distill_batches"))
    return student
