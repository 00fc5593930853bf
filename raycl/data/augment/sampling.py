"""Random draws of the augmentations: on the generator's device, moved to the data's device.

Drawing on the generator's device keeps a batch's parameters a function of the generator state
alone, whatever device the images are on.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["generator_device", "rand", "uniform", "coin"]


def generator_device(generator: torch.Generator | None) -> torch.device:
    """The device random numbers are drawn on: the generator's (CPU without one)."""
    return generator.device if generator is not None else torch.device("cpu")


def rand(generator, *shape, device) -> Tensor:
    """``torch.rand(*shape)`` drawn from ``generator`` on its device, moved to ``device``."""
    return torch.rand(*shape, generator=generator, device=generator_device(generator)).to(device)


def uniform(generator, shape, low: float, high: float, device) -> Tensor:
    """Uniform in ``[low, high)`` of ``shape``, drawn like :func:`rand`."""
    return rand(generator, *shape, device=device) * (high - low) + low


def coin(generator, n: int, p: float, device) -> Tensor:
    """Per-sample Bernoulli(p) as a bool tensor [n]."""
    return rand(generator, n, device=device) < p
