"""The augmenter: one batch of encoded images in, its views out, seeded per (seed, epoch, batch).

What every augmentation worker (task or actor, :mod:`raycl.data.workers`) runs.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from raycl.data.augment import make_views
from raycl.data.decode import decode_images
from raycl.plugins import load as load_plugins
from raycl.runtime import keep_freed_memory
from raycl.seeding import derive_seed


def batch_seed(seed: int, epoch: int, first_id: int) -> int:
    """The seed of one batch's views in one epoch, independent of which actor processes it."""
    return derive_seed(seed, "views", epoch, first_id)


class Augmenter:
    """Decode a batch of encoded images and draw its views (``view0``, ``view1``, …) as uint8 NCHW.

    The generator of each batch is seeded from ``(seed, epoch, first row id)``: reproducible for a
    fixed seed whatever actor or task runs the batch, and different every epoch.
    """

    def __init__(self, recipe: str, image_size: int, crop_size: int, color_strength: float,
                 blur: bool, seed: int, scale: tuple | None = None, small_crops: int = 0,
                 small_crop_size: int | None = None, small_crop_scale: tuple = (0.05, 0.14),
                 remove: tuple = (), backend: str = "auto", plugins: tuple = ()):
        load_plugins(plugins)  # a recipe a plugin registers, in this Ray Data worker too
        keep_freed_memory()  # batch-sized temporaries reuse heap blocks instead of fresh mmaps
        cv2.setNumThreads(1)  # a worker is given one CPU: decoding's resizes must not start a thread pool
        # multi-crop: view0, view1 at crop_size, then view2 .. view{1+small_crops} at small_crop_size
        self.views = make_views(recipe, size=crop_size, color_strength=color_strength, blur=blur,
                                scale=scale, small_crops=small_crops, small_size=small_crop_size,
                                small_scale=small_crop_scale, remove=tuple(remove), backend=backend)
        self.image_size = image_size
        self.seed = seed

    def __call__(self, batch: dict[str, np.ndarray], epoch: int) -> dict[str, np.ndarray]:
        """Views of ``batch`` (``image``: encoded bytes or decoded uint8 HWC, ``label``, ``id``)."""
        images = decode_images(batch["image"], self.image_size)
        n = len(images)
        if n == 0:  # every image of the batch was undecodable: views of the right shape, no rows
            images = np.zeros((1, *images.shape[1:]), np.uint8)
        generator = torch.Generator().manual_seed(
            batch_seed(self.seed, epoch, int(batch["id"][0]) if n else 0))
        tensor = torch.from_numpy(images)
        out = {f"view{i}": view(tensor, generator).numpy()[:n] for i, view in enumerate(self.views)}
        return {**out, "label": batch["label"], "id": batch["id"]}
