"""A run's checkpoint: one ``state.pt`` with model, optimizer, position and the metric history."""

from __future__ import annotations

import os
from typing import Any

import ray.train
import torch

from raycl.config import Config
from raycl.methods.base import Method

STATE_FILE = "state.pt"


def save_state(directory: str, method: Method, optimizer, epoch: int, step: int,
               history: list[dict], cfg: Config) -> None:
    torch.save({"model": method.state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "step": step, "history": history, "config": cfg.to_dict()},
               os.path.join(directory, STATE_FILE))


def load_state(checkpoint: ray.train.Checkpoint) -> dict[str, Any]:
    with checkpoint.as_directory() as d:
        return torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=False)
