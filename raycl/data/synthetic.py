"""Procedurally generated, labelled image set: the embedded default dataset.

Every image shows one of ten patterns (a shape or a texture) drawn in a random
foreground colour over a random background colour, with random position, scale,
orientation, phase and frequency, and mild Gaussian pixel noise.  Foreground and
background colours are drawn independently of the class, so the class is carried
by shape and texture only: the per-image mean colour is close to useless for
classification, while a small CNN trained with crop and colour-jitter
augmentations can learn the classes.

Image ``i`` depends only on ``(seed, i)``, so any slice of the set can be
generated on its own, e.g. by different workers.  Rendering is vectorised over
each chunk of images with numpy; the per-image random parameters come from
``np.random.default_rng([seed, stream, index])``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLASS_NAMES", "MIN_IMAGE_SIZE", "MAX_IMAGE_SIZE", "make_images", "make_labels"]

CLASS_NAMES: tuple[str, ...] = (
    "disk",
    "square",
    "triangle",
    "ring",
    "cross",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
    "diagonal_stripes",
    "dot_grid",
)

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 224

# Independent random streams, so that labels and image parameters never share draws.
_PARAM_STREAM = 0
_LABEL_STREAM = 1

# Minimum luminance difference (0-255 scale) between foreground and background,
# so that the pattern survives a grayscale augmentation.
_MIN_LUMA_CONTRAST = 60.0
_LUMA = np.array([0.299, 0.587, 0.114])

# Pixels rendered per chunk (bounds memory for large image sizes).
_CHUNK_PIXELS = 1 << 22

# Columns of the per-image parameter matrix.
_CX, _CY, _SIZE, _ANGLE, _PERIOD, _PHASE_U, _PHASE_V, _NOISE = range(8)
_NUM_GEOMETRY = 8


def make_labels(n: int, *, seed: int = 0, start: int = 0, num_classes: int = 10) -> np.ndarray:
    """Return the int64 labels of images ``start .. start + n - 1``.

    Indices are grouped in consecutive blocks of ``num_classes``; each block holds
    every class once, in an order drawn from ``(seed, block)``.  Labels are hence
    exactly balanced over any range of whole blocks and within one per class over
    any range.
    """
    _check_int("n", n, 0, None)
    _check_int("seed", seed, 0, None)
    _check_int("start", start, 0, None)
    _check_int("num_classes", num_classes, 2, len(CLASS_NAMES))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    index = np.arange(start, start + n, dtype=np.int64)
    first, last = start // num_classes, (start + n - 1) // num_classes
    perms = np.stack([
        np.random.default_rng([seed, _LABEL_STREAM, block]).permutation(num_classes)
        for block in range(first, last + 1)
    ])
    return perms[index // num_classes - first, index % num_classes].astype(np.int64)


def make_images(
    n: int, *, seed: int = 0, image_size: int = 32, start: int = 0, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` for the images with indices ``start .. start + n - 1``.

    ``images`` is uint8 ``[n, image_size, image_size, 3]`` (RGB) and ``labels`` int64 ``[n]``
    with values in ``0 .. num_classes - 1`` naming ``CLASS_NAMES[label]``.  Image ``i``
    depends only on ``(seed, start + i)`` (and ``image_size``/``num_classes``), so
    ``make_images(10, start=5)[0]`` equals ``make_images(20)[0][5:15]``.
    """
    _check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    labels = make_labels(n, seed=seed, start=start, num_classes=num_classes)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    chunk = max(1, _CHUNK_PIXELS // (image_size * image_size))
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        images[lo:hi] = _render_chunk(seed, start + lo, labels[lo:hi], image_size)
    return images, labels


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is an integer in ``[low, high]``."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = ok and value >= low and (high is None or value <= high)
    if not ok:
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name}={value!r} is invalid; expected {allowed}")


def _image_params(
    seed: int, index: int, image_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw one image's parameters: (geometry [8] in [0, 1), fg [3], bg [3], noise [S, S, 3])."""
    rng = np.random.default_rng([seed, _PARAM_STREAM, index])
    geometry = rng.random(_NUM_GEOMETRY)
    while True:
        fg, bg = rng.uniform(0.0, 255.0, size=(2, 3))
        if abs(float((fg - bg) @ _LUMA)) >= _MIN_LUMA_CONTRAST:
            break
    noise = rng.standard_normal((image_size, image_size, 3), dtype=np.float32)
    return geometry, fg, bg, noise


def _render_chunk(seed: int, start: int, labels: np.ndarray, image_size: int) -> np.ndarray:
    """Render images ``start .. start + len(labels) - 1`` as uint8 ``[m, S, S, 3]``."""
    params = [_image_params(seed, start + i, image_size) for i in range(len(labels))]
    geometry = np.stack([p[0] for p in params])
    fg = np.stack([p[1] for p in params]).astype(np.float32)
    bg = np.stack([p[2] for p in params]).astype(np.float32)
    noise = np.stack([p[3] for p in params])

    alpha = np.empty((len(labels), image_size, image_size), dtype=np.float32)
    for label in np.unique(labels):
        rows = labels == label
        alpha[rows] = _alpha(CLASS_NAMES[label], geometry[rows], image_size)

    # pixels = bg + alpha * (fg - bg) + sigma * noise, computed in place in the noise buffer.
    pixels = noise
    pixels *= (2.0 + 6.0 * geometry[:, _NOISE]).astype(np.float32)[:, None, None, None]
    pixels += bg[:, None, None, :]
    pixels += alpha[..., None] * (fg - bg)[:, None, None, :]
    np.rint(pixels, out=pixels)
    np.clip(pixels, 0, 255, out=pixels)
    return pixels.astype(np.uint8)


def _alpha(name: str, geometry: np.ndarray, image_size: int) -> np.ndarray:
    """Anti-aliased foreground coverage ``[m, S, S]`` in [0, 1] of pattern ``name``."""
    distance = _shape_distance if name in _SHAPES else _texture_distance
    d = distance(name, geometry, *_grid(image_size))
    return np.clip(0.5 - d * image_size, 0.0, 1.0).astype(np.float32)


def _shape_distance(name: str, geometry: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance to a randomly placed, scaled and rotated shape."""
    size = 0.18 + 0.14 * geometry[:, _SIZE]  # radius-like extent, as a fraction of the image
    reach = 0.5 - 1.1 * size  # keep the shape (almost) inside the image
    cx = (2.0 * geometry[:, _CX] - 1.0) * reach
    cy = (2.0 * geometry[:, _CY] - 1.0) * reach
    u, v = _rotate(x - _col(cx), y - _col(cy), 2.0 * np.pi * geometry[:, _ANGLE])
    return _SHAPES[name](u, v, _col(size))


def _texture_distance(name: str, geometry: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance to a periodic texture with a random period, phase and orientation."""
    period = 0.14 + 0.14 * geometry[:, _SIZE]  # fraction of the image
    return _TEXTURES[name](x, y, geometry, period)


def _grid(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-0.5, 0.5], shaped ``[1, S, 1]`` (y) and ``[1, 1, S]`` (x)."""
    coords = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size - 0.5
    return coords[None, None, :], coords[None, :, None]


def _col(values: np.ndarray) -> np.ndarray:
    """Reshape per-image values ``[m]`` to broadcast against ``[m, S, S]`` grids."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _rotate(x: np.ndarray, y: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(u, v)`` of points ``(x, y)`` in a frame rotated by ``angle`` (per image)."""
    cos, sin = _col(np.cos(angle)), _col(np.sin(angle))
    return cos * x + sin * y, cos * y - sin * x


# --- shapes: signed distance (negative inside), in image units, of a centred, rotated shape --------


def _disk(u, v, r):
    return np.sqrt(u * u + v * v) - r


def _square(u, v, r):
    half_side = 0.85 * r
    return np.maximum(np.abs(u), np.abs(v)) - half_side


def _triangle(u, v, r):
    inradius = 0.65 * r  # circumradius 1.3 r
    normals = np.pi / 2 + np.array([0.0, 2.0, 4.0]) * np.pi / 3  # outward edge normals
    edges = [np.cos(a) * u + np.sin(a) * v for a in normals]
    return np.maximum(np.maximum(edges[0], edges[1]), edges[2]) - inradius


def _ring(u, v, r):
    return np.abs(np.sqrt(u * u + v * v) - 0.72 * r) - 0.28 * r


def _cross(u, v, r):
    half_width = 0.3 * r
    au, av = np.abs(u), np.abs(v)
    return np.minimum(np.maximum(au - r, av - half_width), np.maximum(au - half_width, av - r))


_SHAPES = {"disk": _disk, "square": _square, "triangle": _triangle, "ring": _ring, "cross": _cross}


# --- textures: signed distance of a periodic pattern filling the image --------------------------


def _stripe_distance(t: np.ndarray, period: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Signed distance to stripes of half duty cycle along coordinate ``t``."""
    p = _col(period)
    s = np.mod(t / p + _col(phase), 1.0)
    return (np.abs(s - 0.5) - 0.25) * p


def _oriented_stripes(x, y, geometry, period, angle):
    u, _ = _rotate(x, y, angle)
    return _stripe_distance(u, period, geometry[:, _PHASE_U])


def _jitter(geometry: np.ndarray, degrees: float) -> np.ndarray:
    """Per-image orientation jitter in radians, uniform in [-degrees, degrees]."""
    return np.deg2rad(degrees) * (2.0 * geometry[:, _ANGLE] - 1.0)


def _horizontal_stripes(x, y, geometry, period):
    return _oriented_stripes(x, y, geometry, period, np.pi / 2 + _jitter(geometry, 12.0))


def _vertical_stripes(x, y, geometry, period):
    return _oriented_stripes(x, y, geometry, period, _jitter(geometry, 12.0))


def _diagonal_stripes(x, y, geometry, period):
    # Both diagonals, so that the class is invariant to horizontal flips.
    base = np.where(geometry[:, _CX] < 0.5, np.pi / 4, 3 * np.pi / 4)
    return _oriented_stripes(x, y, geometry, period, base + _jitter(geometry, 10.0))


def _checkerboard(x, y, geometry, period):
    u, v = _rotate(x, y, 0.5 * np.pi * geometry[:, _ANGLE])
    cell_period = 1.5 * period  # larger cells than the stripes', so that cells stay visible at 32 px
    du = _stripe_distance(u, cell_period, geometry[:, _PHASE_U])
    dv = _stripe_distance(v, cell_period, geometry[:, _PHASE_V])
    # Inside exactly one of the two stripe sets (xor): distance sign is the product of signs.
    return np.where((du < 0) ^ (dv < 0), -1.0, 1.0) * np.minimum(np.abs(du), np.abs(dv))


def _dot_grid(x, y, geometry, period):
    u, v = _rotate(x, y, 0.5 * np.pi * geometry[:, _ANGLE])
    p = _col(period)
    du = (np.mod(u / p + _col(geometry[:, _PHASE_U]), 1.0) - 0.5) * p
    dv = (np.mod(v / p + _col(geometry[:, _PHASE_V]), 1.0) - 0.5) * p
    radius = (0.25 + 0.1 * _col(geometry[:, _CY])) * p
    return np.sqrt(du * du + dv * dv) - radius


_TEXTURES = {
    "horizontal_stripes": _horizontal_stripes,
    "vertical_stripes": _vertical_stripes,
    "checkerboard": _checkerboard,
    "diagonal_stripes": _diagonal_stripes,
    "dot_grid": _dot_grid,
}
