"""The device-side switches of a run, in one place: process-group backend, mixed precision, memory
format, compilation and host-to-device copies (``train.precision``, ``train.channels_last``,
``train.compile``; ``train.use_gpu`` picks NCCL and pinned memory).

They follow PyTorch's and Ray Train's documented GPU recipes: ``torch.autocast`` around the forward
pass only (bf16 needs no loss scaling), ``torch.channels_last`` for the model and its inputs,
``torch.compile`` of the data-parallel model after ``prepare_model``, NCCL for CUDA tensors, and
``iter_torch_batches(pin_memory=True)`` so that the copy to the GPU can overlap. Everything but NCCL,
pinned memory and CUDA itself also runs on CPU tensors, and is tested there; the CUDA-only calls are
the two ``use_gpu`` branches below and Ray Train's own device placement.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from raycl.config import Config


def backend(cfg: Config) -> str:
    """The ``torch.distributed`` backend: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if cfg.train.use_gpu else "gloo"


def pin_memory(cfg: Config) -> bool:
    """Page-locked host batches (only with CUDA: pinning needs an accelerator)."""
    return bool(cfg.train.use_gpu)


def autocast(cfg: Config, device: torch.device):
    """The forward pass's precision context: bf16 autocast on ``device``'s type, or nothing."""
    if cfg.train.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(cfg: Config) -> torch.memory_format:
    return torch.channels_last if cfg.train.channels_last else torch.contiguous_format


def prepare_method(method: nn.Module, cfg: Config) -> nn.Module:
    """The method in the run's memory format (before the data-parallel wrapper is made)."""
    return method.to(memory_format=memory_format(cfg)) if cfg.train.channels_last else method


def compiled(model: nn.Module, cfg: Config) -> nn.Module:
    """``torch.compile`` of the (data-parallel) model when ``train.compile``; the method's own hooks
    keep using the uncompiled module, which shares its parameters."""
    return torch.compile(model) if cfg.train.compile else model


def views_to(views: list[torch.Tensor], cfg: Config) -> list[torch.Tensor]:
    """The batch's views in the run's memory format (they are on the device already)."""
    if not cfg.train.channels_last:
        return views
    return [v.contiguous(memory_format=torch.channels_last) for v in views]
