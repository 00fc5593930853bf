"""Look at a recipe's views: a PNG grid, one row per image, the original then each view.

    from raycl.data import show_views
    show_views("swav", small_crops=2, small_size=16, out="swav.png")

or ``python -m raycl views --recipe simclr --n 8 --out views.png``.  Uses matplotlib's Agg canvas
directly (no pyplot, no global backend change), so it works headless and inside Ray workers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from raycl.data.augment import make_views
from raycl.data.decode import decode_images
from raycl.data.sources import load_table

__all__ = ["CELL_INCHES", "DPI", "grid_pixels", "show_views"]

CELL_INCHES = 1.0  # side of one image cell
TITLE_INCHES = 0.4  # figure title (the recipe)
HEADER_INCHES = 0.25  # column names above the first row
DPI = 100


def grid_pixels(rows: int, cols: int) -> tuple[int, int]:
    """(width, height) in pixels of the PNG :func:`show_views` writes for ``rows`` images and
    ``cols`` columns (1 + number of views)."""
    w = cols * CELL_INCHES
    h = TITLE_INCHES + HEADER_INCHES + rows * CELL_INCHES
    return round(w * DPI), round(h * DPI)


def _load_images(source: str, n: int, image_size: int, path: str | None) -> np.ndarray:
    table = load_table(source, "train", path=path, image_size=image_size, num_images=n, seed=0)
    return decode_images(table.column("image"), image_size)


def show_views(
    recipe: str = "simclr",
    *,
    images=None,
    source: str = "embedded",
    path: str | None = None,
    n: int = 8,
    size: int = 32,
    image_size: int | None = None,
    color_strength: float = 1.0,
    blur: bool | None = None,
    seed: int = 0,
    out: str | os.PathLike = "views.png",
    **kwargs,
) -> Path:
    """Write a PNG grid of ``recipe``'s views and return its path.

    One row per original image: the original (decoded at ``image_size``, default ``size``) in the
    first column, then every view of :func:`~raycl.data.augment.make_views` (``recipe``, ``size``,
    ``color_strength``, ``blur`` and any ``kwargs`` such as ``scale``, ``small_crops``,
    ``small_size``) drawn from one generator seeded with ``seed``.  Multi-crop's small views are
    drawn at their true size relative to the large ones (centred in their cell).

    ``images``: uint8 ``[n, H, W, 3]`` (or encoded image bytes) to use instead of the first ``n``
    training images of ``source`` (``path`` for file-based sources).  The PNG is
    :func:`grid_pixels` ``(n, 1 + views)`` pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    image_size = image_size or size
    if images is None:
        images = _load_images(source, n, image_size, path)
    elif not (isinstance(images, np.ndarray) and images.dtype == np.uint8):
        images = decode_images(images, image_size)
    images = np.ascontiguousarray(images[:n])
    rows = images.shape[0]

    views = make_views(recipe, size=size, color_strength=color_strength, blur=blur, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    drawn = [v(images, generator).permute(0, 2, 3, 1).numpy() for v in views]
    columns = [("original", images)] + [(f"view {i}", d) for i, d in enumerate(drawn)]
    side = max(max(c[1].shape[1], c[1].shape[2]) for c in columns)

    cols = len(columns)
    width_px, height_px = grid_pixels(rows, cols)
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    W, H = width_px / DPI, height_px / DPI
    pad = 0.04  # inches around each image
    title = f"{recipe}  (size {size}, colour strength {color_strength:g}"
    title += "".join(f", {k}={v}" for k, v in kwargs.items()) + ")"
    fig.text(0.5, 1 - (TITLE_INCHES / 2) / H, title, ha="center", va="center", fontsize=9)
    for c, (name, batch) in enumerate(columns):
        h, w = batch.shape[1:3]
        for r in range(rows):
            left = c * CELL_INCHES + pad
            top = TITLE_INCHES + HEADER_INCHES + r * CELL_INCHES + pad
            cell = CELL_INCHES - 2 * pad
            ax = fig.add_axes((left / W, 1 - (top + cell) / H, cell / W, cell / H))
            # the axes spans `side` pixels: smaller views keep their relative size, centred
            x0, y0 = (side - w) / 2, (side - h) / 2
            ax.imshow(batch[r], extent=(x0, x0 + w, y0 + h, y0), interpolation="nearest")
            ax.set_xlim(0, side)
            ax.set_ylim(side, 0)
            ax.set_axis_off()
            if r == 0:
                label = name if (h, w) == (side, side) or c == 0 else f"{name} ({w}px)"
                ax.set_title(label, fontsize=7, pad=2)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, format="png")
    return out
