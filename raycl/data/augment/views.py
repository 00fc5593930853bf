"""View pipelines: uint8 batches in, one augmented view out, on torch ops or the fused kernel.

:data:`BACKENDS` (``raycl.config.AUGMENT_BACKENDS``) says how a :class:`ViewPipeline` runs on CPU:
``"fused"`` the compiled kernel of :mod:`raycl.data.fused`, ``"torch"`` the torch ops of
:mod:`raycl.data.augment.ops`, ``"auto"`` the kernel where it applies (uint8 CPU images; a Crop
then Color/Grayscale/Blur/Solarize/Flip; a C compiler) and torch ops otherwise.  Both give the
same views for the same generator state.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import torch

import raycl.data.fused as fused
from raycl.config import AUGMENT_BACKENDS as BACKENDS
from raycl.data.augment.ops import unknown_choice_error

Tensor = torch.Tensor

__all__ = ["BACKENDS", "MIN_CHUNK", "ViewPipeline"]

MIN_CHUNK = 32  # images per chunk at least, whatever their size


def _as_nchw(images) -> Tensor:
    """uint8/float batch, numpy or torch, HWC or CHW -> torch [B, 3, H, W] (a view when possible)."""
    if isinstance(images, np.ndarray):
        with warnings.catch_warnings():  # read-only arrays (Ray Data); we never write into them
            warnings.simplefilter("ignore", UserWarning)
            images = torch.from_numpy(images)
    elif not isinstance(images, Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.ndim != 4:
        raise ValueError(f"expected a batch [B, H, W, 3] or [B, 3, H, W], got shape {tuple(images.shape)}")
    if images.shape[1] == 3 and images.shape[-1] == 3:
        raise ValueError(f"the layout of a batch of shape {tuple(images.shape)} is ambiguous: it reads as "
                         "[B, H=3, W, 3] or [B, 3, H, W=3]; pass images whose sides are not 3 pixels")
    if images.shape[1] != 3 and images.shape[-1] == 3:
        images = images.permute(0, 3, 1, 2)
    elif images.shape[1] != 3:
        raise ValueError(f"expected 3 channels (HWC or CHW), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"expected uint8 (or float in [0, 1]) images, got {images.dtype}")
    return images


def _to_float(images: Tensor) -> Tensor:
    """A contiguous float32 copy in [0, 1] (uint8 scaled by 1/255)."""
    if images.dtype == torch.uint8:
        return images.contiguous().float().div_(255.0)
    return images.float().contiguous()


class ViewPipeline:
    """A sequence of ops producing ONE view of a batch.

    ``images``: uint8 ``[B, H, W, 3]`` (numpy or torch, as decoded) or
    ``[B, 3, H, W]`` (float in [0, 1] also accepted); returns uint8
    ``[B, 3, h, w]`` (``size x size`` for pipelines from :func:`make_views`) on
    the images' device.  Normalisation is left to the trainer.

    The batch is processed in chunks of ``chunk_size`` images (default: about
    ``2**20`` float values per chunk, e.g. 341 images at 32 px, 37 at 96 px, and at
    least :data:`MIN_CHUNK`): on CPU, tensors that fit in cache and stay below
    malloc's mmap threshold cost less per element than one huge batch, and a chunk
    of a few large images would spend more on drawing its parameters than on them.
    Random parameters are drawn per chunk from the same generator, so the output is
    a deterministic function of (images, generator state, chunk_size), whichever
    ``backend`` (see :data:`BACKENDS`) computes it.
    """

    def __init__(self, ops: Sequence[Callable[[Tensor, torch.Generator | None], Tensor]],
                 chunk_size: int | None = None, backend: str = "auto"):
        self.ops = list(ops)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        if backend not in BACKENDS:
            raise unknown_choice_error("backend", backend, BACKENDS)
        self.chunk_size = chunk_size
        self.backend = backend

    def forward_float(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Apply the ops to float ``[B, 3, H, W]`` in [0, 1]; returns float."""
        for op in self.ops:
            x = op(x, generator)
        return x

    def _use_fused(self, images: Tensor) -> bool:
        if self.backend == "torch":
            return False
        fits = images.dtype == torch.uint8 and images.device.type == "cpu" and fused.supports(self.ops)
        if self.backend == "fused":
            if not fits:
                raise ValueError(
                    "backend='fused' needs uint8 CPU images and a Crop followed only by "
                    f"Color/Grayscale/Blur/Solarize/Flip; got {images.dtype} on {images.device} for {self!r}")
            fused.library()  # raises FusedUnavailable with the reason
            return True
        return fits and fused.available()

    def __call__(self, images, generator: torch.Generator | None = None) -> Tensor:
        images = _as_nchw(images)
        B, C, H, W = images.shape
        chunk = self.chunk_size or max(MIN_CHUNK, (1 << 20) // (C * H * W))
        if self._use_fused(images):
            return fused.run(self.ops, images, generator, chunk)
        outs = []
        for part in images.split(chunk):
            x = self.forward_float(_to_float(part), generator)
            outs.append(x.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def __repr__(self) -> str:
        return "ViewPipeline([" + ", ".join(map(repr, self.ops)) + "])"
