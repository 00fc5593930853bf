"""One class per augmentation op, and :data:`OPS`, the names users type in sweeps.

Each op has ``sample(x, generator) -> params`` (per-sample random parameters for the whole batch,
drawn in a fixed order) and ``apply(x, params) -> x`` (deterministic, so tests can compare with
torchvision), and is callable as ``op(x, generator) -> x``.  Ops work on float32
``[B, 3, H, W]`` batches in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any

import torch

from raycl.data.augment.crop import resized_crop, sample_crop_boxes
from raycl.data.augment.functional import (
    JITTER_NAMES,
    blur_kernel_size,
    color_jitter,
    erase,
    gaussian_blur,
    grayscale,
    hflip,
    rotate90,
    sobel,
    solarize,
    where_samples,
)
from raycl.data.augment.sampling import coin, generator_device, rand, uniform

Tensor = torch.Tensor

__all__ = [
    "Op", "Crop", "Flip", "Color", "Grayscale", "Blur", "Solarize", "Cutout", "Sobel", "Noise",
    "Rotate", "OPS", "make_op", "unknown_choice_error",
]


def _check_prob(name: str, p: float) -> float:
    """``p`` as a float, or ValueError naming ``name`` if it is not in [0, 1]."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


class Op:
    """An augmentation: ``sample`` draws per-sample parameters for a batch, ``apply`` uses them
    (deterministic, so tests can compare with torchvision), and calling the op does both."""

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def apply(self, x: Tensor, params) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.apply(x, self.sample(x, generator))


class CoinOp(Op):
    """An op applied to each sample with probability ``p``: its parameter is that coin's mask."""

    def __init__(self, p: float):
        self.p = _check_prob("p", p)

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        return {"mask": coin(generator, x.shape[0], self.p, x.device)}


class Crop(Op):
    """Random resized crop (torchvision sampling) to ``size`` + horizontal flip
    with probability ``flip``; crop, resize and flip are one batched op."""

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: float = 0.5,
        antialias: bool = True,
    ):
        if not (0 < scale[0] <= scale[1]):
            raise ValueError(f"crop scale must satisfy 0 < lo <= hi, got {scale!r}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"crop ratio must satisfy 0 < lo <= hi, got {ratio!r}")
        self.size = size
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip = _check_prob("flip", flip)
        self.antialias = antialias

    def sample(self, x: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        B, _, H, W = x.shape
        boxes = sample_crop_boxes(B, H, W, self.scale, self.ratio, generator, x.device)
        return {"boxes": boxes, "flip": coin(generator, B, self.flip, x.device)}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return resized_crop(x, params["boxes"], self.size, flip=params["flip"], antialias=self.antialias)

    def __repr__(self) -> str:
        return f"Crop(size={self.size}, scale={self.scale}, ratio={self.ratio}, flip={self.flip})"


class Flip(CoinOp):
    """Horizontal flip with probability ``p`` per sample."""

    def __init__(self, p: float = 0.5):
        super().__init__(p)

    def apply(self, x: Tensor, params) -> Tensor:
        return hflip(x, params["mask"])

    def __repr__(self) -> str:
        return f"Flip(p={self.p})"


class Color(Op):
    """SimCLR colour distortion: colour jitter with probability ``p`` then
    random grayscale with probability ``gray_p``.

    Jitter ranges default to the SimCLR definition at strength ``s``:
    brightness/contrast/saturation ``0.8 s`` and hue ``0.2 s``; each may be
    overridden (e.g. MoCo v2 / BYOL ``0.4, 0.4, 0.2-0.4, 0.1``).  Factors are drawn
    like torchvision: uniform in ``[max(0, 1 - v), 1 + v]`` (hue: ``[-v, v]``).
    The 4 sub-ops are applied in a random order per sample
    (``random_order=True``, like torchvision's ``ColorJitter``); pass
    ``random_order=False`` for the fixed order brightness, contrast, saturation,
    hue (slightly cheaper).
    """

    def __init__(
        self,
        strength: float = 1.0,
        p: float = 0.8,
        gray_p: float = 0.2,
        *,
        brightness: float | None = None,
        contrast: float | None = None,
        saturation: float | None = None,
        hue: float | None = None,
        random_order: bool = True,
    ):
        if strength < 0:
            raise ValueError(f"colour strength must be >= 0, got {strength!r}")
        s = float(strength)
        self.strength = s
        self.brightness = 0.8 * s if brightness is None else float(brightness)
        self.contrast = 0.8 * s if contrast is None else float(contrast)
        self.saturation = 0.8 * s if saturation is None else float(saturation)
        self.hue = 0.2 * s if hue is None else float(hue)
        for name in JITTER_NAMES:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} jitter must be >= 0, got {getattr(self, name)!r}")
        if self.hue > 0.5:
            raise ValueError(f"hue jitter must be <= 0.5, got {self.hue!r}")
        self.p = _check_prob("p", p)
        self.gray_p = _check_prob("gray_p", gray_p)
        self.random_order = random_order

    def _ranges(self) -> list[tuple[float, float]]:
        b, c, s, h = self.brightness, self.contrast, self.saturation, self.hue
        return [(max(0.0, 1 - b), 1 + b), (max(0.0, 1 - c), 1 + c), (max(0.0, 1 - s), 1 + s), (-h, h)]

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        B, device = x.shape[0], x.device
        lo, hi = (torch.tensor(v, device=device) for v in zip(*self._ranges()))
        factors = lo + (hi - lo) * rand(generator, B, 4, device=device)
        if self.random_order:
            order = torch.argsort(rand(generator, B, 4, device=device), dim=1)
        else:
            order = torch.arange(4, device=device).expand(B, 4)
        return {
            "factors": factors,
            "order": order,
            "jitter": coin(generator, B, self.p, device),
            "gray": coin(generator, B, self.gray_p, device),
        }

    def apply(self, x: Tensor, params) -> Tensor:
        enabled = [v > 0 for v in (self.brightness, self.contrast, self.saturation, self.hue)]
        if any(enabled) and self.p > 0:
            x = color_jitter(x, params["factors"], params["order"], params["jitter"], enabled)
        if self.gray_p > 0:
            x = grayscale(x, params["gray"])
        return x

    def __repr__(self) -> str:
        return (
            f"Color(brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}, "
            f"hue={self.hue}, p={self.p}, gray_p={self.gray_p}, random_order={self.random_order})"
        )


class Grayscale(CoinOp):
    """Random grayscale (ITU-R 601-2 luma, 3 channels) with probability ``p``."""

    def __init__(self, p: float = 0.2):
        super().__init__(p)

    def apply(self, x: Tensor, params) -> Tensor:
        return grayscale(x, params["mask"])

    def __repr__(self) -> str:
        return f"Grayscale(p={self.p})"


class Blur(Op):
    """Gaussian blur with probability ``p``; ``sigma`` uniform in ``sigma``
    range per sample; kernel size ``kernel_size`` or, if None, 10% of the image
    side (odd) as in SimCLR.  Only the selected samples are computed."""

    def __init__(self, p: float = 0.5, sigma: tuple[float, float] = (0.1, 2.0), kernel_size: int | None = None):
        if not (0 < sigma[0] <= sigma[1]):
            raise ValueError(f"blur sigma range must satisfy 0 < lo <= hi, got {sigma!r}")
        if kernel_size is not None and (kernel_size % 2 == 0 or kernel_size < 1):
            raise ValueError(f"blur kernel_size must be odd and positive, got {kernel_size!r}")
        self.p = _check_prob("p", p)
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.kernel_size = kernel_size

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        B = x.shape[0]
        return {
            "mask": coin(generator, B, self.p, x.device),
            "sigma": uniform(generator, (B,), self.sigma[0], self.sigma[1], x.device),
        }

    def apply(self, x: Tensor, params) -> Tensor:
        k = self.kernel_size or blur_kernel_size(min(x.shape[-2:]))
        idx = torch.nonzero(params["mask"].to(x.device)).squeeze(1)
        if idx.numel() == 0:
            return x
        if idx.numel() == x.shape[0]:
            return gaussian_blur(x, params["sigma"], k)
        out = x.clone()
        out[idx] = gaussian_blur(x[idx], params["sigma"].to(x.device)[idx], k)
        return out

    def __repr__(self) -> str:
        return f"Blur(p={self.p}, sigma={self.sigma}, kernel_size={self.kernel_size})"


class Solarize(CoinOp):
    """Solarize (threshold 0.5) with probability ``p`` (BYOL: 0 / 0.2)."""

    def __init__(self, p: float = 0.2, threshold: float = 0.5):
        super().__init__(p)
        self.threshold = float(threshold)

    def apply(self, x: Tensor, params) -> Tensor:
        return solarize(x, params["mask"], self.threshold)

    def __repr__(self) -> str:
        return f"Solarize(p={self.p}, threshold={self.threshold})"


class Cutout(Op):
    """Cutout (DeVries & Taylor 2017): one square of side ``size`` (pixels if
    int, fraction of the shorter image side if float) centred uniformly in the
    image, clipped at the border, filled with ``value``; probability ``p``."""

    def __init__(self, size: int | float = 0.5, p: float = 1.0, value: float = 0.0):
        if size <= 0:
            raise ValueError(f"cutout size must be > 0, got {size!r}")
        self.size = size
        self.p = _check_prob("p", p)
        self.value = float(value)

    def _side(self, H: int, W: int) -> int:
        return int(self.size) if isinstance(self.size, int) else max(1, int(round(self.size * min(H, W))))

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        B, _, H, W = x.shape
        side = self._side(H, W)
        u = rand(generator, B, 2, device=x.device)
        cy = torch.floor(u[:, 0] * H).long()
        cx = torch.floor(u[:, 1] * W).long()
        top, left = cy - side // 2, cx - side // 2
        size = torch.full_like(top, side)
        mask = coin(generator, B, self.p, x.device)
        size = torch.where(mask, size, torch.zeros_like(size))
        return {"boxes": torch.stack([top, left, size, size], 1)}

    def apply(self, x: Tensor, params) -> Tensor:
        return erase(x, params["boxes"], self.value)

    def __repr__(self) -> str:
        return f"Cutout(size={self.size}, p={self.p})"


class Sobel(Op):
    """Sobel edge magnitude (see :func:`sobel`) with probability ``p``."""

    def __init__(self, p: float = 1.0):
        self.p = _check_prob("p", p)

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        return {"mask": coin(generator, x.shape[0], self.p, x.device)}

    def apply(self, x: Tensor, params) -> Tensor:
        return where_samples(params["mask"].to(x.device), sobel(x), x)

    def __repr__(self) -> str:
        return f"Sobel(p={self.p})"


class Noise(Op):
    """Additive Gaussian noise of standard deviation ``std`` (on the [0, 1]
    scale), clamped to [0, 1], with probability ``p``."""

    def __init__(self, std: float = 0.1, p: float = 1.0):
        if std < 0:
            raise ValueError(f"noise std must be >= 0, got {std!r}")
        self.std = float(std)
        self.p = _check_prob("p", p)

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        eps = torch.randn(x.shape, generator=generator, device=generator_device(generator)).to(x.device)
        return {"noise": eps * self.std, "mask": coin(generator, x.shape[0], self.p, x.device)}

    def apply(self, x: Tensor, params) -> Tensor:
        return where_samples(params["mask"].to(x.device), (x + params["noise"].to(x)).clamp_(0.0, 1.0), x)

    def __repr__(self) -> str:
        return f"Noise(std={self.std}, p={self.p})"


class Rotate(Op):
    """Rotation by 90, 180 or 270 degrees (uniform per sample) with probability
    ``p``; exact (``torch.rot90`` on the 3 groups); needs square images."""

    def __init__(self, p: float = 1.0):
        self.p = _check_prob("p", p)

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        B = x.shape[0]
        k = torch.randint(1, 4, (B,), generator=generator, device=generator_device(generator)).to(x.device)
        mask = coin(generator, B, self.p, x.device)
        return {"k": torch.where(mask, k, torch.zeros_like(k))}

    def apply(self, x: Tensor, params) -> Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"rotate needs square images, got {tuple(x.shape[-2:])}")
        return rotate90(x, params["k"])

    def __repr__(self) -> str:
        return f"Rotate(p={self.p})"


OPS: dict[str, type] = {
    "crop": Crop,
    "flip": Flip,
    "color": Color,
    "grayscale": Grayscale,
    "blur": Blur,
    "solarize": Solarize,
    "cutout": Cutout,
    "sobel": Sobel,
    "noise": Noise,
    "rotate": Rotate,
}


def unknown_choice_error(kind: str, value: Any, allowed) -> ValueError:
    """The error for a name (op, recipe, backend...) that is not one of ``allowed``."""
    return ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")


def make_op(name: str, *, size: int | None = None, color_strength: float = 1.0, **kwargs):
    """Build op ``name`` (a key of :data:`OPS`) as used in the ``pair:a,b``
    study: every op is applied with probability 1, except ``flip`` (0.5) and
    ``color`` (SimCLR colour distortion at ``color_strength``: jitter p=0.8,
    grayscale p=0.2); ``crop`` is a crop-only random resized crop to ``size``.
    ``kwargs`` override the constructor arguments."""
    if name not in OPS:
        raise unknown_choice_error("op", name, OPS)
    defaults: dict[str, dict[str, Any]] = {
        "crop": {"size": size, "flip": 0.0},
        "flip": {"p": 0.5},
        "color": {"strength": color_strength},
        "grayscale": {"p": 1.0},
        "blur": {"p": 1.0},
        "solarize": {"p": 1.0},
        "cutout": {},
        "sobel": {},
        "noise": {},
        "rotate": {},
    }
    if name == "crop" and size is None and "size" not in kwargs:
        raise ValueError("op 'crop' needs a size")
    return OPS[name](**{**defaults[name], **kwargs})
