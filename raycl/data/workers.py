"""The functions Ray Data runs on its workers: augmentation (task or actor) and eval decoding.

Torch-free at import: the datasets name these functions, and Ray's coordinator processes that
unpickle a dataset (``SplitCoordinator``, Train's ``DatasetManager``, one of each per run) import
their module, which would otherwise cost each of them torch's import (about 2 s of CPU) for nothing.
The augmenter, and torch with it, is imported where a batch is augmented.
"""

from __future__ import annotations

import functools

import numpy as np
import ray

from raycl.data.sources import decode_images


def _epoch(clock) -> int:
    return ray.get(clock.get.remote()) if clock is not None else 0


class AugmentActor:
    """``map_batches`` actor: one :class:`~raycl.data.augmenter.Augmenter` per actor, the epoch read
    from the clock."""

    def __init__(self, clock, threads: int = 1, **augmenter_kwargs):
        import torch

        from raycl.data.augmenter import Augmenter

        torch.set_num_threads(max(1, threads))
        self.augment = Augmenter(**augmenter_kwargs)
        self.clock = clock

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.augment(batch, _epoch(self.clock))


@functools.lru_cache(maxsize=4)
def _cached_augmenter(**kwargs):
    from raycl.data.augmenter import Augmenter

    return Augmenter(**kwargs)


def augment_task(batch: dict[str, np.ndarray], clock, threads: int = 1, **augmenter_kwargs
                 ) -> dict[str, np.ndarray]:
    """``map_batches`` task version of :class:`AugmentActor` (worker processes are reused, and the
    augmenter is cached in them, so there is no per-epoch actor start-up)."""
    import torch

    torch.set_num_threads(max(1, threads))
    return _cached_augmenter(**augmenter_kwargs)(batch, _epoch(clock))


def decode_for_eval(batch: dict[str, np.ndarray], image_size: int, crop_size: int
                    ) -> dict[str, np.ndarray]:
    """Decode and centre-crop (no augmentation): uint8 NCHW ``image`` and ``label``."""
    images = decode_images(batch["image"], image_size)
    if image_size < crop_size:
        images = decode_images(images, crop_size)
    top = (images.shape[1] - crop_size) // 2
    left = (images.shape[2] - crop_size) // 2
    images = images[:, top:top + crop_size, left:left + crop_size]
    return {"image": np.ascontiguousarray(images.transpose(0, 3, 1, 2)), "label": batch["label"]}
