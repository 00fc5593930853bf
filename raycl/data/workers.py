"""The functions Ray Data runs on its workers: read a window of the listing, then augment it (task
or actor) or decode it for evaluation.

Each call gets window numbers (a batch of ``id``) and yields batches: reading and augmenting in
one function keeps one task per window (Ray Data would fuse two map steps into one task over many
windows) and passes the bytes straight from the reader to the decoder.

Undecodable images are dropped from their batch and their keys recorded on the run's clock
(``on_bad="skip"``), or stop the run with an error naming the file (``"fail"``).

Torch-free at import: the datasets name these functions, and Ray's coordinator processes that
unpickle a dataset (``SplitCoordinator``, Train's ``DatasetManager``, one of each per run) import
their module, which would otherwise cost each of them torch's import (about 2 s of CPU) for nothing.
The augmenter, and torch with it, is imported where a batch is augmented.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import ray

from raycl.data.decode import decode_batch
from raycl.data.reading import ReadPlan, read_window


def _epoch(clock) -> int:
    return ray.get(clock.get.remote()) if clock is not None else 0


def _batches(windows: dict[str, np.ndarray], plan: ReadPlan, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    for window in windows["id"]:
        yield from read_window(int(window), plan, epoch)


def decoded(batch: dict[str, np.ndarray], image_size: int, on_bad: str = "fail", clock=None
            ) -> dict[str, np.ndarray]:
    """``batch`` with its ``image`` column decoded to uint8 ``[n, S, S, 3]`` and the rows whose image
    could not be decoded left out (their keys recorded on ``clock``)."""
    keys = batch.get("key")
    images, ok = decode_batch(batch["image"], image_size, on_bad, keys=keys)
    out = {k: v for k, v in batch.items() if k != "image"}
    if not ok.all():
        out = {k: v[ok] for k, v in out.items()}
        if clock is not None:
            bad = keys[~ok] if keys is not None else batch["id"][~ok]
            clock.record_bad.remote([str(k) for k in bad])
    out["image"] = images
    return out


class AugmentActor:
    """``map_batches`` actor: one :class:`~raycl.data.augmenter.Augmenter` per actor, the epoch read
    from the clock."""

    def __init__(self, plan: ReadPlan, clock, threads: int = 1, on_bad: str = "skip", **augmenter_kwargs):
        import torch

        from raycl.data.augmenter import Augmenter

        torch.set_num_threads(max(1, threads))
        self.augment = Augmenter(**augmenter_kwargs)
        self.plan, self.clock, self.on_bad = plan, clock, on_bad

    def __call__(self, windows: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        epoch = _epoch(self.clock)
        for batch in _batches(windows, self.plan, epoch):
            yield self.augment(decoded(batch, self.augment.image_size, self.on_bad, self.clock), epoch)


@functools.lru_cache(maxsize=4)
def _cached_augmenter(**kwargs):
    from raycl.data.augmenter import Augmenter

    return Augmenter(**kwargs)


def augment_task(windows: dict[str, np.ndarray], plan: ReadPlan, clock, threads: int = 1,
                 on_bad: str = "skip", **augmenter_kwargs) -> Iterator[dict[str, np.ndarray]]:
    """``map_batches`` task version of :class:`AugmentActor` (worker processes are reused, and the
    augmenter is cached in them, so there is no per-epoch actor start-up)."""
    import torch

    torch.set_num_threads(max(1, threads))
    augment = _cached_augmenter(**augmenter_kwargs)
    epoch = _epoch(clock)
    for batch in _batches(windows, plan, epoch):
        yield augment(decoded(batch, augment.image_size, on_bad, clock), epoch)


def decode_windows(windows: dict[str, np.ndarray], plan: ReadPlan, image_size: int, crop_size: int,
                   on_bad: str = "fail", clock=None) -> Iterator[dict[str, np.ndarray]]:
    """``map_batches`` generator: the windows' images for evaluation (:func:`decode_for_eval`)."""
    for batch in _batches(windows, plan, epoch=0):
        yield decode_for_eval(batch, image_size, crop_size, on_bad, clock)


def decode_for_eval(batch: dict[str, np.ndarray], image_size: int, crop_size: int,
                    on_bad: str = "fail", clock=None) -> dict[str, np.ndarray]:
    """Decode and centre-crop (no augmentation): uint8 NCHW ``image``, ``label`` and (if the batch has
    it) ``id``, undecodable rows left out (``on_bad="skip"``, keys recorded on ``clock``) or an error."""
    batch = decoded(batch, image_size, on_bad, clock)
    images = batch.pop("image")
    if image_size < crop_size:
        images = decode_batch(images, crop_size)[0]
    top = (images.shape[1] - crop_size) // 2
    left = (images.shape[2] - crop_size) // 2
    images = images[:, top:top + crop_size, left:left + crop_size]
    out = {k: v for k, v in batch.items() if k in ("label", "id")}  # numeric columns: torch takes them
    return {**out, "image": np.ascontiguousarray(images.transpose(0, 3, 1, 2))}


def decode_listing(listing, image_size: int, crop_size: int, on_bad: str = "fail", clock=None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A whole (small) listing read and decoded for evaluation: ``(images, labels)``, uint8 NCHW and
    int64 (a Ray task's body: its two results go to the object store, not through the driver)."""
    table = listing.read()
    batch = decode_for_eval({name: table.column(name).to_numpy(zero_copy_only=False)
                             for name in ("image", "label", "key")}, image_size, crop_size, on_bad, clock)
    return batch["image"], batch["label"].astype(np.int64)
