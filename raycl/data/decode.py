"""Image decoding: encoded bytes (JPEG, PNG, ...) to uint8 RGB arrays of one size, and back to PNG.

What a folder of real images holds is decoded the way a person looking at it would see it:

- the EXIF orientation is applied (phone pictures are stored sideways);
- 16-bit and 32-bit integer images are rescaled to 8 bits, not clipped (a 16-bit 60000 is 233);
- transparent images (RGBA, LA, palette with transparency) are composited onto
  :data:`BACKGROUND`; grayscale, palette and CMYK images become RGB;
- an image of another size has its shorter side resized and is centre-cropped.

A file that cannot be decoded (truncated, not an image) raises :class:`BadImageError`, naming it when
its key is known; :func:`decode_batch` can instead skip it and say which rows it skipped.
JPEGs and 8-bit RGB or grey PNGs (what datasets hold) are decoded and resized with OpenCV
(libjpeg-turbo, with its DCT-domain downscaling when the image is at least twice the size asked
for), which is several times faster than Pillow's resize; every other file, and any that OpenCV
refuses, is decoded by Pillow. Every image is then fitted by the same OpenCV resize.  Torch-free: Ray
Data's workers import this module.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import cv2
import numpy as np
import pyarrow as pa
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["BACKGROUND", "ON_BAD_IMAGE", "BadImageError", "decode_batch", "decode_images", "encode_png"]

BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as an image viewer does
ON_BAD_IMAGE = ("skip", "fail")  # what a run does with an undecodable file

# what Pillow raises on a damaged or foreign file (a truncated JPEG: OSError; garbage: Unidentified-
# ImageError, an OSError; some broken PNG chunks: SyntaxError or ValueError)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class BadImageError(ValueError):
    """An image's bytes could not be decoded."""


def decode_images(images, size: int) -> np.ndarray:
    """Decode images to a uint8 RGB array ``[n, size, size, 3]``; :class:`BadImageError` on a
    damaged one.

    ``images`` is a sequence (list, numpy object array, pyarrow array, pandas Series) of encoded
    image bytes, or an already decoded uint8 array ``[n, H, W, 3]`` (returned as is when it is
    ``size x size``).
    """
    return decode_batch(images, size, on_bad="fail")[0]


def decode_batch(images, size: int, on_bad: str = "fail", keys: Sequence[str] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(decoded, ok)``: the decodable images as uint8 ``[m, size, size, 3]`` and a boolean mask of
    length ``n`` saying which input rows they are.

    ``on_bad="skip"`` leaves undecodable rows out (``ok`` is False there); ``"fail"`` raises
    :class:`BadImageError` naming the row's key (``keys[i]``) or index.
    """
    _check_size(size)
    if on_bad not in ON_BAD_IMAGE:
        allowed = ", ".join(map(repr, ON_BAD_IMAGE))
        raise ValueError(f"on_bad={on_bad!r} is invalid; expected one of {allowed}")
    if isinstance(images, np.ndarray) and images.dtype != object:
        return _resize_array(images, size), np.ones(len(images), dtype=bool)
    if isinstance(images, (pa.Array, pa.ChunkedArray)):
        images = images.to_pylist()
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    ok = np.ones(len(images), dtype=bool)
    for i, data in enumerate(images):
        try:
            out[i] = decode_image(data, size)
        except BadImageError as error:
            if on_bad == "fail":
                name = keys[i] if keys is not None else f"row {i}"
                raise BadImageError(f"cannot decode image {name}: {error}") from error.__cause__
            ok[i] = False
    return (out if ok.all() else out[ok]), ok


def decode_image(data: bytes | None, size: int) -> np.ndarray:
    """One image's bytes as uint8 ``[size, size, 3]`` (see the module docstring for the rules)."""
    if not data:
        raise BadImageError("the file is empty")
    fast = _decode_with_opencv(data, size)
    if fast is not None:
        return fast
    try:
        with warnings.catch_warnings():  # Pillow warns about odd EXIF or ICC data it then ignores
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                img.draft("RGB", (size, size))  # cheap JPEG downscaling; never below size
                ImageOps.exif_transpose(img, in_place=True)  # not a copy of every upright image
                return _fit(np.asarray(_to_rgb(img)), size)
    except _DECODE_ERRORS as error:
        what = str(error) or type(error).__name__
        raise BadImageError("not an image" if isinstance(error, UnidentifiedImageError) else what) from error


# OpenCV reads a JPEG at 1/2, 1/4 or 1/8 of its size in the DCT domain (as Pillow's draft does)
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (DHT, JPG, DAC aren't)


def _decode_with_opencv(data: bytes, size: int) -> np.ndarray | None:
    """``data`` decoded and fitted by OpenCV, or None where Pillow must (or should) decode it: a file
    of another kind, a JPEG without its end marker (truncated: OpenCV 4 pads it with grey where
    Pillow fails), a PNG that is not 8-bit RGB or grey or carries EXIF or transparency."""
    shape = _jpeg_shape(data) if data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9" else None
    if shape is not None:
        # the largest reduction that keeps the shorter side at least size
        flag = next((f for k, f in _REDUCED if min(shape) >= k * size), cv2.IMREAD_COLOR)
    elif _plain_png(data):
        flag = cv2.IMREAD_COLOR
    else:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)  # applies the EXIF orientation
    if img is None:
        return None
    return cv2.cvtColor(_fit(img, size), cv2.COLOR_BGR2RGB)


def _jpeg_shape(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from a JPEG's start-of-frame header, or None if it has none."""
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _plain_png(data: bytes) -> bool:
    """An 8-bit RGB or grey PNG without transparency or EXIF (IHDR: depth at 24, colour type at 25)."""
    return (data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 26 and data[24] == 8 and data[25] in (0, 2)
            and b"tRNS" not in data and b"eXIf" not in data)


def encode_png(images: np.ndarray) -> list[bytes]:
    """Encode a uint8 array ``[n, H, W, 3]`` as a list of PNG bytes (lossless)."""
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
        encoded.append(buffer.getvalue())
    return encoded


def _check_size(size: object) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size={size!r} is invalid; expected an integer >= 1")


def _to_rgb(img: Image.Image) -> Image.Image:
    """An 8-bit RGB image of what ``img`` shows."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16/32-bit integer or float grey
        img = Image.fromarray(_to_8bit(np.asarray(img)), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _to_8bit(values: np.ndarray) -> np.ndarray:
    """Grey levels of a 16-bit, 32-bit or float image scaled to 0..255: integer images by their
    type's range (16 bits unless a value is beyond it), floats from [0, 1]."""
    if values.dtype.kind == "f":
        return np.clip(np.nan_to_num(values) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    values = values.astype(np.int64)
    top = 65535 if values.max(initial=0) <= 65535 else np.iinfo(np.int32).max
    return (np.clip(values, 0, top) * 255 // top).astype(np.uint8)


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    """The centre square of an ``[H, W, C]`` uint8 image, resized to ``size x size``: bilinear, or
    area averaging (no aliasing, 5x slower) when shrinking by 1.5x or more."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = img[top:top + side, left:left + side]
    if side == size:
        return square
    interpolation = cv2.INTER_AREA if 2 * side >= 3 * size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def _resize_array(images: np.ndarray, size: int) -> np.ndarray:
    """Fit an already decoded uint8 ``[n, H, W, 3]`` array to ``size x size`` (no copy if it fits)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images has dtype {images.dtype} and shape {images.shape}; "
            "expected encoded bytes or uint8 [n, H, W, 3]"
        )
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = _fit(image, size)
    return out
