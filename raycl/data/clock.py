"""The epoch clock: a tiny actor the augmentation reads its epoch from.

In a module of its own, importing only Ray: an actor's process imports its class's module, and
this one starts with every run (a sweep starts it once per trial), so it must not pull in torch.
"""

from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class EpochClock:
    """Holds the current epoch so that augmentation actors and tasks can seed per epoch."""

    def __init__(self) -> None:
        self.epoch = 0

    def set(self, epoch: int) -> None:
        self.epoch = epoch

    def get(self) -> int:
        return self.epoch
