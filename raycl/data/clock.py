"""The data clock: a tiny actor the augmentation reads its epoch from, and where it records the
images it could not decode.

In a module of its own, importing only Ray: an actor's process imports its class's module, and
this one starts with every run (a sweep starts it once per trial), so it must not pull in torch.
"""

from __future__ import annotations

import ray

EXAMPLES = 5  # undecodable images named in a run's summary line


@ray.remote(num_cpus=0)
class EpochClock:
    """Holds the current epoch, so that reading and augmentation seed per epoch, and the set of
    undecodable images met so far (each counted once, whichever epoch meets it again)."""

    def __init__(self) -> None:
        self.epoch = 0
        self.bad: dict[str, None] = {}  # insertion-ordered set: the first ones met are the examples

    def set(self, epoch: int) -> None:
        self.epoch = epoch

    def get(self) -> int:
        return self.epoch

    def record_bad(self, keys: list[str]) -> None:
        self.bad.update(dict.fromkeys(keys))

    def bad_images(self) -> tuple[int, list[str]]:
        """How many undecodable images were skipped, and the first few of their keys."""
        return len(self.bad), list(self.bad)[:EXAMPLES]
