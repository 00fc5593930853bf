"""Batched image augmentations for contrastive learning.

Everything here works on whole batches: per-sample random parameters are drawn
in one call from a ``torch.Generator`` and applied with vectorised torch ops
(no Python loop over samples; at most a loop over a handful of groups, e.g. the
3 rotation angles or the 4x4 (step, op) groups of colour-jitter order).  The
code is pure torch and device-agnostic: parameters are drawn on the generator's
device and moved to the images' device.

Layout
------
* Deterministic functional ops on float32 ``[B, 3, H, W]`` tensors in ``[0, 1]``
  taking per-sample parameters: :func:`resized_crop`, :func:`hflip`,
  :func:`adjust_brightness`, :func:`adjust_contrast`,
  :func:`adjust_saturation`, :func:`adjust_hue`, :func:`color_jitter`,
  :func:`grayscale`, :func:`gaussian_blur`, :func:`solarize`, :func:`erase`,
  :func:`sobel`, :func:`rotate90`.  These match torchvision's per-image
  ``torchvision.transforms.v2.functional`` ops within 1/255 (see tests).
* One small class per op (``Crop``, ``Flip``, ``Color``, ``Grayscale``,
  ``Blur``, ``Solarize``, ``Cutout``, ``Sobel``, ``Noise``, ``Rotate``): each
  has ``sample(x, generator) -> params`` and ``apply(x, params) -> x`` and is
  callable as ``op(x, generator) -> x``.  :data:`OPS` maps the names users type
  in sweeps to these classes.
* :class:`ViewPipeline` (uint8 in, uint8 out) and :func:`make_views` building
  the per-view pipelines of the named recipes in :data:`RECIPES`.  On CPU a
  pipeline of a Crop then Color/Grayscale/Blur/Solarize/Flip (every named
  recipe) runs, by default, through the fused C kernel of
  :mod:`raycl.data.fused` with the parameters these ops sample: same views,
  3-5x faster (see :data:`BACKENDS`).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch

Tensor = torch.Tensor

__all__ = [
    "OPS",
    "RECIPES",
    "ViewPipeline",
    "BACKENDS",
    "make_views",
    "make_op",
    "default_crop_scale",
    "default_small_size",
    # classes
    "Crop",
    "Flip",
    "Color",
    "Grayscale",
    "Blur",
    "Solarize",
    "Cutout",
    "Sobel",
    "Noise",
    "Rotate",
    # functional
    "resized_crop",
    "sample_crop_boxes",
    "hflip",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "color_jitter",
    "rgb_to_grayscale",
    "grayscale",
    "blur_kernel_size",
    "gaussian_blur",
    "solarize",
    "erase",
    "sobel",
    "rotate90",
]

# ITU-R 601-2 luma, the weights torchvision uses.
_LUMA = (0.2989, 0.587, 0.114)


# --------------------------------------------------------------------------- #
# random helpers: draw on the generator's device, move to the data's device
# --------------------------------------------------------------------------- #
def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _rand(generator, *shape, device) -> Tensor:
    return torch.rand(*shape, generator=generator, device=_gen_device(generator)).to(device)


def _uniform(generator, shape, low: float, high: float, device) -> Tensor:
    return _rand(generator, *shape, device=device) * (high - low) + low


def _coin(generator, n: int, p: float, device) -> Tensor:
    """Per-sample Bernoulli(p) as a bool tensor [n]."""
    return _rand(generator, n, device=device) < p


def _where_samples(mask: Tensor | None, new: Tensor, old: Tensor) -> Tensor:
    """``new`` for the samples where ``mask`` is True, else ``old``.  (``lerp``
    with 0/1 weights is exact and much faster than ``where`` with bool masks on
    CPU.)"""
    if mask is None:
        return new
    w = mask.to(device=old.device, dtype=old.dtype).view(-1, 1, 1, 1)
    return torch.lerp(old, new, w)


def _check_prob(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


# --------------------------------------------------------------------------- #
# crop (+ flip)
# --------------------------------------------------------------------------- #
def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _resample_taps(
    start: Tensor, length: Tensor, out_size: int, antialias: bool
) -> tuple[Tensor, Tensor]:
    """Per-sample banded 1-D resampling: source indices and weights ``[B, out, T]``.

    Output pixel ``i`` of the span ``start .. start+length-1`` resized to
    ``out_size`` is ``sum_t w[b, i, t] * src[idx[b, i, t]]``.  This is the
    triangle (bilinear) filter of torch's ``interpolate(..., mode="bilinear",
    align_corners=False, antialias=antialias)``, which torchvision uses: with
    ``antialias`` and a downscale factor ``s > 1`` the triangle is widened to
    ``s`` pixels (PIL behaviour); otherwise it is plain bilinear, clamped at the
    span's edges.  ``T`` is the widest support in the batch (3 when not
    downscaling, one of them with weight 0).
    """
    device = start.device
    scale = length / out_size  # [B]
    support = scale.clamp(min=1.0) if antialias else torch.ones_like(scale)
    taps = int(math.ceil(2 * float(support.max()))) + 1
    centre = (torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * scale[:, None]  # [B, out]
    first = torch.floor(centre - support[:, None] + 0.5).clamp_(min=0.0)
    j = first[:, :, None] + torch.arange(taps, device=device, dtype=torch.float32)  # crop-relative [B, out, T]
    w = (1.0 - (j + 0.5 - centre[:, :, None]).abs() / support[:, None, None]).clamp_(min=0.0)
    w = w * (j < length[:, None, None])
    w = w / w.sum(-1, keepdim=True)
    idx = torch.minimum(j, (length - 1)[:, None, None]) + start[:, None, None]
    keep = w.abs().sum((0, 1)) > 0  # drop taps that are zero for every sample
    return idx[..., keep].long(), w[..., keep]


def _bilinear_grid_sample(x: Tensor, boxes: Tensor, out_h: int, out_w: int, flip: Tensor | None) -> Tensor:
    # Plain bilinear resize of every box with one grid_sample call.  Source
    # coordinates follow interpolate(align_corners=False), clamped to the box
    # (interpolate clamps at the crop's edge, not the image's).
    B, C, H, W = x.shape
    top, left, height, width = boxes.unbind(-1)

    def coords(start, length, out, size):
        c = (torch.arange(out, device=x.device, dtype=torch.float32) + 0.5) * (length[:, None] / out) - 0.5
        c = torch.minimum(c.clamp(min=0.0), length[:, None] - 1) + start[:, None]
        return (2 * c + 1) / size - 1  # normalised, align_corners=False

    gy = coords(top, height, out_h, H)
    gx = coords(left, width, out_w, W)
    if flip is not None:
        gx = torch.where(flip.view(-1, 1), gx.flip(1), gx)
    grid = torch.stack([gx[:, None, :].expand(B, out_h, out_w), gy[:, :, None].expand(B, out_h, out_w)], dim=-1)
    return torch.nn.functional.grid_sample(
        x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )


def _banded_resample(x: Tensor, boxes: Tensor, out_h: int, out_w: int, flip: Tensor | None, antialias: bool) -> Tensor:
    # Separable banded resampling (any scale, antialiased when downscaling).
    B, C, H, W = x.shape
    top, left, height, width = boxes.unbind(-1)
    iy, wy = _resample_taps(top, height, out_h, antialias)
    ix, wx = _resample_taps(left, width, out_w, antialias)
    if flip is not None:
        f = flip.view(-1, 1, 1)
        ix = torch.where(f, ix.flip(1), ix)
        wx = torch.where(f, wx.flip(1), wx)
    wy, wx = wy.to(x.dtype), wx.to(x.dtype)
    # vertical pass: rows of x viewed as [B*C*H, W]
    rows = x.reshape(B * C * H, W)
    base = (torch.arange(B * C, device=x.device) * H).view(B, C, 1)
    tmp = None
    for t in range(iy.shape[-1]):
        sel = rows.index_select(0, (base + iy[:, None, :, t]).reshape(-1)).view(B, C, out_h, W)
        term = sel.mul_(wy[:, None, :, t, None])
        tmp = term if tmp is None else tmp.add_(term)
    # horizontal pass: gather along the last axis
    out = None
    for t in range(ix.shape[-1]):
        idx = ix[:, None, None, :, t].expand(B, C, out_h, out_w)
        term = tmp.gather(3, idx).mul_(wx[:, None, None, :, t])
        out = term if out is None else out.add_(term)
    return out


def resized_crop(
    x: Tensor,
    boxes: Tensor,
    size: int | tuple[int, int],
    *,
    flip: Tensor | None = None,
    antialias: bool = True,
) -> Tensor:
    """Crop each image to its box and resize to ``size`` (bilinear), batched.

    ``boxes``: ``[B, 4]`` (top, left, height, width) in integer pixels, as
    returned by torchvision's ``RandomResizedCrop.get_params``.  ``flip``: an
    optional bool ``[B]``; flipped samples are mirrored horizontally for free
    (folded into the sampling coordinates).

    Matches ``torchvision.transforms.v2.functional.resized_crop(...,
    antialias=antialias)`` (bilinear) both when upsampling and when
    downsampling.  Samples not downscaled along either axis (always the case
    for crops of an image already at the output resolution, e.g. CIFAR / STL)
    are resampled with one ``grid_sample`` call: there the antialiasing
    filter is plain bilinear.  With ``antialias``, samples downscaled along
    some axis go through a separable banded resampling with the triangle
    filter widened by the downscale factor (as torch / PIL), see
    :func:`_resample_taps`.
    """
    B, C, H, W = x.shape
    out_h, out_w = _pair(size)
    boxes = boxes.to(device=x.device, dtype=torch.float32)
    if flip is not None:
        flip = flip.to(x.device)
    if not antialias:
        return _bilinear_grid_sample(x, boxes, out_h, out_w, flip)
    down = (boxes[:, 2] > out_h) | (boxes[:, 3] > out_w)
    n_down = int(down.sum())
    if n_down == 0:
        return _bilinear_grid_sample(x, boxes, out_h, out_w, flip)
    if n_down == B:
        return _banded_resample(x, boxes, out_h, out_w, flip, True)
    out = x.new_empty(B, C, out_h, out_w)
    for is_down in (True, False):
        idx = torch.nonzero(down if is_down else ~down).squeeze(1)
        f = None if flip is None else flip[idx]
        if is_down:
            out[idx] = _banded_resample(x[idx], boxes[idx], out_h, out_w, f, True)
        else:
            out[idx] = _bilinear_grid_sample(x[idx], boxes[idx], out_h, out_w, f)
    return out


def sample_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Sample ``[n, 4]`` (top, left, height, width) boxes like torchvision's
    ``RandomResizedCrop``: 10 tries of (area, log-aspect-ratio) per sample, first
    valid try wins, else a centre crop; all tries for all samples drawn at once."""
    tries = 10
    area = float(height * width)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    target = area * _uniform(generator, (n, tries), scale[0], scale[1], device)
    aspect = torch.exp(_uniform(generator, (n, tries), log_r[0], log_r[1], device))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)  # index of the first valid try
    found = ok.any(1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)

    # centre-crop fallback (identical for every sample: depends only on H, W)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))

    u = _rand(generator, n, 2, device=device)
    top = torch.floor(u[:, 0] * (height - h + 1))
    left = torch.floor(u[:, 1] * (width - w + 1))
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1).long()


def hflip(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mirror horizontally the samples where ``mask`` is True (all if None)."""
    return _where_samples(mask, x.flip(-1), x)


class Op:
    """An augmentation: ``sample`` draws per-sample parameters for a batch, ``apply`` uses them
    (deterministic, so tests can compare with torchvision), and calling the op does both."""

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def apply(self, x: Tensor, params) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.apply(x, self.sample(x, generator))


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
        return {"boxes": boxes, "flip": _coin(generator, B, self.flip, x.device)}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return resized_crop(x, params["boxes"], self.size, flip=params["flip"], antialias=self.antialias)

    def __repr__(self) -> str:
        return f"Crop(size={self.size}, scale={self.scale}, ratio={self.ratio}, flip={self.flip})"


class Flip(Op):
    """Horizontal flip with probability ``p`` per sample."""

    def __init__(self, p: float = 0.5):
        self.p = _check_prob("p", p)

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        return {"mask": _coin(generator, x.shape[0], self.p, x.device)}

    def apply(self, x: Tensor, params) -> Tensor:
        return hflip(x, params["mask"])

    def __repr__(self) -> str:
        return f"Flip(p={self.p})"


# --------------------------------------------------------------------------- #
# colour
# --------------------------------------------------------------------------- #
def rgb_to_grayscale(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma ``[B, 1, H, W]`` (torchvision's weights)."""
    r, g, b = x.unbind(1)
    return (r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]).unsqueeze(1)


def grayscale(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Replace the samples where ``mask`` is True by their 3-channel luma."""
    return _where_samples(mask, rgb_to_grayscale(x).expand_as(x), x)


def _factor(f: Tensor) -> Tensor:
    return f.to(torch.float32).view(-1, 1, 1, 1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``x * factor`` clamped; ``factor`` per sample ``[B]``."""
    return (x * _factor(factor).to(x.device)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the mean luma of each image (torchvision ``adjust_contrast``)."""
    f = _factor(factor).to(x.device)
    mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return (x * f + mean * (1.0 - f)).clamp_(0.0, 1.0)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the per-pixel luma (torchvision ``adjust_saturation``)."""
    f = _factor(factor).to(x.device)
    return (x * f + rgb_to_grayscale(x) * (1.0 - f)).clamp_(0.0, 1.0)


def _feq(a: Tensor, b: Tensor | float) -> Tensor:
    # float 0/1 mask of a == b (bool tensors are slow in CPU elementwise ops)
    return torch.eq(a, b, out=torch.empty_like(a))


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """Rotate hue by ``factor`` (fraction of a turn, in [-0.5, 0.5]) per sample.

    Same HSV model as torchvision's ``adjust_hue`` (after Pillow), written
    without materialising HSV: saturation and value are unchanged by a hue
    shift and ``v * s = max - min``, so with ``h6`` the shifted hue in [0, 6)
    sextants each output channel is
    ``max - (max - min) * clamp(min(k, 4 - k), 0, 1)``, ``k = (n + h6) mod 6``
    with ``n = 5, 3, 1`` for R, G, B.
    """
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    crange = maxc - minc
    is_r = _feq(maxc, r)
    is_g = _feq(maxc, g).mul_(1.0 - is_r)
    is_b = 1.0 - is_r - is_g
    # hue in sextants, before the shift: in [-1, 5)
    h6 = (g - b).mul_(is_r)
    h6.add_((b - r).add_(crange, alpha=2.0).mul_(is_g)).add_((r - g).add_(crange, alpha=4.0).mul_(is_b))
    h6.div_(crange + _feq(crange, 0.0))
    h6.add_(factor.to(device=x.device, dtype=x.dtype).view(-1, 1, 1), alpha=6.0)
    h6.sub_(torch.floor(h6 * (1.0 / 6.0)).mul_(6.0))  # mod 6 -> [0, 6)
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = h6.unsqueeze(1) + n  # in [1, 11)
    k.sub_(torch.ge(k, 6.0, out=torch.empty_like(k)).mul_(6.0))  # mod 6
    a = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(1) - a.mul_(crange.unsqueeze(1))


_JITTER_FNS: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_hue,
)
_JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")


def color_jitter(
    x: Tensor,
    factors: Tensor,
    order: Tensor | None = None,
    mask: Tensor | None = None,
    enabled: Sequence[bool] = (True, True, True, True),
) -> Tensor:
    """Apply brightness, contrast, saturation and hue adjustments per sample.

    ``factors``: ``[B, 4]`` (brightness, contrast, saturation, hue factor).
    ``order``: ``[B, 4]`` permutation of ``0..3`` per sample (``order[b, k]`` is
    the op applied at step ``k``, as torchvision's ``ColorJitter`` with
    ``torch.randperm(4)``); None means the fixed order b, c, s, h.  ``mask``:
    bool ``[B]``, samples to jitter (others untouched).  ``enabled``: which of
    the 4 ops exist at all (torchvision skips ops whose range is 0).

    Random order is vectorised step by step: brightness, contrast and
    saturation are all ``clamp(f * x + (1 - f) * ref)`` with ``ref`` = 0, the
    mean luma or the per-pixel luma, so at each of the 4 steps one blend
    serves every sample whose op at that step is one of them (``f = 1``, an
    exact no-op, for the others), and hue is applied to the subset whose op
    at that step is hue.
    """
    B = x.shape[0]
    device = x.device
    factors = factors.to(device=device, dtype=torch.float32)
    if order is None:
        order = torch.arange(4, device=device).expand(B, 4)
    order = order.to(device)
    active = torch.ones(B, dtype=torch.bool, device=device) if mask is None else mask.to(device)
    on = torch.tensor(list(enabled), device=device)
    out = x
    for step in range(4):
        op = order[:, step]
        sel = active & on[op]
        f = factors.gather(1, op[:, None]).squeeze(1)
        blend = sel & (op != 3)
        hue = sel & (op == 3)
        if bool(blend.any()):
            fb = torch.where(blend, f, torch.ones_like(f)).view(-1, 1, 1, 1)
            use_c = (blend & (op == 1)).to(out.dtype).view(-1, 1, 1, 1)
            use_s = (blend & (op == 2)).to(out.dtype).view(-1, 1, 1, 1)
            if bool((use_c + use_s).any()):
                gray = rgb_to_grayscale(out)
                ref = gray * use_s + gray.mean(dim=(1, 2, 3), keepdim=True) * use_c
                out = (out * fb).add_(ref * (1.0 - fb)).clamp_(0.0, 1.0)
            else:
                out = (out * fb).clamp_(0.0, 1.0)
        if bool(hue.any()):
            idx = torch.nonzero(hue).squeeze(1)
            out = out.clone() if out is x else out
            out[idx] = adjust_hue(out[idx], f[idx])
    return out


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
        for name in _JITTER_NAMES:
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
        factors = lo + (hi - lo) * _rand(generator, B, 4, device=device)
        if self.random_order:
            order = torch.argsort(_rand(generator, B, 4, device=device), dim=1)
        else:
            order = torch.arange(4, device=device).expand(B, 4)
        return {
            "factors": factors,
            "order": order,
            "jitter": _coin(generator, B, self.p, device),
            "gray": _coin(generator, B, self.gray_p, device),
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


class Grayscale(Op):
    """Random grayscale (ITU-R 601-2 luma, 3 channels) with probability ``p``."""

    def __init__(self, p: float = 0.2):
        self.p = _check_prob("p", p)

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        return {"mask": _coin(generator, x.shape[0], self.p, x.device)}

    def apply(self, x: Tensor, params) -> Tensor:
        return grayscale(x, params["mask"])

    def __repr__(self) -> str:
        return f"Grayscale(p={self.p})"


# --------------------------------------------------------------------------- #
# blur
# --------------------------------------------------------------------------- #
def blur_kernel_size(side: int) -> int:
    """SimCLR's kernel size: 10% of the image side, made odd (>= 3): 32 -> 3, 96 -> 9, 224 -> 23."""
    k = int(0.1 * side)
    if k % 2 == 0:
        k += 1
    return max(k, 3)


def _gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    # Same as torchvision's _get_gaussian_kernel1d, one row per sample: [B, k].
    half = (kernel_size - 1) / 2
    t = torch.linspace(-half, half, kernel_size, device=sigma.device, dtype=torch.float32)
    return torch.softmax(-0.5 * (t[None, :] / sigma[:, None].float()) ** 2, dim=1)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Gaussian blur with a per-sample ``sigma [B]``, separable, reflect padding
    (as torchvision's ``gaussian_blur``).  The separable filter is computed as a
    sum of ``kernel_size`` shifted, per-sample-weighted copies per axis, which on
    CPU beats a grouped conv with B*C groups and is device-agnostic."""
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    B, C, H, W = x.shape
    pad = kernel_size // 2
    if pad == 0:
        return x
    k = _gaussian_kernels(sigma.to(x.device), kernel_size).to(x.dtype).view(B, 1, kernel_size, 1, 1)
    # vertical pass
    xp = torch.nn.functional.pad(x, (0, 0, pad, pad), mode="reflect")
    out = xp[:, :, 0:H] * k[:, :, 0]
    for i in range(1, kernel_size):
        out.addcmul_(xp[:, :, i : i + H], k[:, :, i])
    # horizontal pass
    xp = torch.nn.functional.pad(out, (pad, pad, 0, 0), mode="reflect")
    out = xp[..., 0:W] * k[:, :, 0]
    for i in range(1, kernel_size):
        out.addcmul_(xp[..., i : i + W], k[:, :, i])
    return out


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
            "mask": _coin(generator, B, self.p, x.device),
            "sigma": _uniform(generator, (B,), self.sigma[0], self.sigma[1], x.device),
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


# --------------------------------------------------------------------------- #
# solarize, cutout, sobel, noise, rotate
# --------------------------------------------------------------------------- #
def solarize(x: Tensor, mask: Tensor | None = None, threshold: float = 0.5) -> Tensor:
    """Invert pixels ``>= threshold`` in the samples where ``mask`` is True."""
    if threshold == 0.5:
        inv = torch.minimum(x, 1.0 - x)  # same thing, exact, no bool mask
    else:
        inv = torch.where(x >= threshold, 1.0 - x, x)
    return _where_samples(mask, inv, x)


class Solarize(Op):
    """Solarize (threshold 0.5) with probability ``p`` (BYOL: 0 / 0.2)."""

    def __init__(self, p: float = 0.2, threshold: float = 0.5):
        self.p = _check_prob("p", p)
        self.threshold = float(threshold)

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        return {"mask": _coin(generator, x.shape[0], self.p, x.device)}

    def apply(self, x: Tensor, params) -> Tensor:
        return solarize(x, params["mask"], self.threshold)

    def __repr__(self) -> str:
        return f"Solarize(p={self.p}, threshold={self.threshold})"


def erase(x: Tensor, boxes: Tensor, value: float = 0.0) -> Tensor:
    """Set the per-sample rectangle (top, left, height, width) to ``value``;
    boxes may extend past the border (they are clipped)."""
    B, C, H, W = x.shape
    boxes = boxes.to(x.device)
    top, left, h, w = (b.view(B, 1) for b in boxes.unbind(-1))
    rows = torch.arange(H, device=x.device).view(1, H)
    cols = torch.arange(W, device=x.device).view(1, W)
    in_r = (rows >= top) & (rows < top + h)  # [B, H]
    in_c = (cols >= left) & (cols < left + w)  # [B, W]
    hole = (in_r[:, :, None] & in_c[:, None, :]).unsqueeze(1)  # [B, 1, H, W]
    return x.masked_fill(hole, value)


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
        u = _rand(generator, B, 2, device=x.device)
        cy = torch.floor(u[:, 0] * H).long()
        cx = torch.floor(u[:, 1] * W).long()
        top, left = cy - side // 2, cx - side // 2
        size = torch.full_like(top, side)
        mask = _coin(generator, B, self.p, x.device)
        size = torch.where(mask, size, torch.zeros_like(size))
        return {"boxes": torch.stack([top, left, size, size], 1)}

    def apply(self, x: Tensor, params) -> Tensor:
        return erase(x, params["boxes"], self.value)

    def __repr__(self) -> str:
        return f"Cutout(size={self.size}, p={self.p})"


def sobel(x: Tensor) -> Tensor:
    """Sobel gradient magnitude of the luma (replicate padding), divided by its
    per-image maximum so it spans [0, 1] (an all-zero map stays zero), as 3
    identical channels."""
    g = torch.nn.functional.pad(rgb_to_grayscale(x), (1, 1, 1, 1), mode="replicate")
    H, W = x.shape[-2:]
    # separable Sobel: gx = [1,2,1]^T (x) [-1,0,1], gy = [-1,0,1]^T (x) [1,2,1]
    sm_v = g[:, :, 0:H] + 2 * g[:, :, 1 : H + 1] + g[:, :, 2 : H + 2]  # smooth vertically  [B,1,H,W+2]
    df_v = g[:, :, 2 : H + 2] - g[:, :, 0:H]  # diff vertically
    gx = sm_v[..., 2 : W + 2] - sm_v[..., 0:W]
    gy = df_v[..., 0:W] + 2 * df_v[..., 1 : W + 1] + df_v[..., 2 : W + 2]
    mag = torch.sqrt(gx * gx + gy * gy)
    peak = mag.amax(dim=(1, 2, 3), keepdim=True)
    mag = mag / peak.clamp(min=1e-12)
    return mag.expand(-1, 3, -1, -1).contiguous()


class Sobel(Op):
    """Sobel edge magnitude (see :func:`sobel`) with probability ``p``."""

    def __init__(self, p: float = 1.0):
        self.p = _check_prob("p", p)

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        return {"mask": _coin(generator, x.shape[0], self.p, x.device)}

    def apply(self, x: Tensor, params) -> Tensor:
        return _where_samples(params["mask"].to(x.device), sobel(x), x)

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
        eps = torch.randn(x.shape, generator=generator, device=_gen_device(generator)).to(x.device)
        return {"noise": eps * self.std, "mask": _coin(generator, x.shape[0], self.p, x.device)}

    def apply(self, x: Tensor, params) -> Tensor:
        return _where_samples(params["mask"].to(x.device), (x + params["noise"].to(x)).clamp_(0.0, 1.0), x)

    def __repr__(self) -> str:
        return f"Noise(std={self.std}, p={self.p})"


def rotate90(x: Tensor, k: Tensor) -> Tensor:
    """Rotate sample ``b`` by ``k[b] * 90`` degrees counter-clockwise (exact;
    same direction as torchvision's ``rotate``); square images for k odd."""
    k = k.to(x.device).remainder(4)
    out = x.clone()
    for turns in (1, 2, 3):
        idx = torch.nonzero(k == turns).squeeze(1)
        if idx.numel():
            if turns % 2 and x.shape[-1] != x.shape[-2]:
                raise ValueError(f"rotate by 90/270 degrees needs square images, got {tuple(x.shape[-2:])}")
            out[idx] = torch.rot90(x[idx], turns, dims=(-2, -1))
    return out


class Rotate(Op):
    """Rotation by 90, 180 or 270 degrees (uniform per sample) with probability
    ``p``; exact (``torch.rot90`` on the 3 groups); needs square images."""

    def __init__(self, p: float = 1.0):
        self.p = _check_prob("p", p)

    def sample(self, x: Tensor, generator) -> dict[str, Tensor]:
        B = x.shape[0]
        k = torch.randint(1, 4, (B,), generator=generator, device=_gen_device(generator)).to(x.device)
        mask = _coin(generator, B, self.p, x.device)
        return {"k": torch.where(mask, k, torch.zeros_like(k))}

    def apply(self, x: Tensor, params) -> Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"rotate needs square images, got {tuple(x.shape[-2:])}")
        return rotate90(x, params["k"])

    def __repr__(self) -> str:
        return f"Rotate(p={self.p})"


# --------------------------------------------------------------------------- #
# registry, pipelines, recipes
# --------------------------------------------------------------------------- #
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

RECIPES: tuple[str, ...] = ("simclr", "moco_v1", "moco_v2", "byol", "swav", "pair")
"""Recipe names; ``"pair"`` is used as ``"pair:a,b"`` with ``a, b`` in :data:`OPS`."""


def _unknown(kind: str, value: Any, allowed) -> ValueError:
    return ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")


def make_op(name: str, *, size: int | None = None, color_strength: float = 1.0, **kwargs):
    """Build op ``name`` (a key of :data:`OPS`) as used in the ``pair:a,b``
    study: every op is applied with probability 1, except ``flip`` (0.5) and
    ``color`` (SimCLR colour distortion at ``color_strength``: jitter p=0.8,
    grayscale p=0.2); ``crop`` is a crop-only random resized crop to ``size``.
    ``kwargs`` override the constructor arguments."""
    if name not in OPS:
        raise _unknown("op", name, OPS)
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


def _as_nchw(images) -> Tensor:
    """uint8/float batch, numpy or torch, HWC or CHW -> torch [B, 3, H, W] (a view when possible)."""
    if isinstance(images, np.ndarray):
        with warnings.catch_warnings():  # read-only arrays (Ray Data); we never write into them
            warnings.simplefilter("ignore", UserWarning)
            images = torch.from_numpy(images)
    elif not isinstance(images, Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.ndim != 4:
        raise ValueError(f"expected a batch [B, H, W, 3] or [B, 3, H, W], got shape {tuple(images.shape)}")
    if images.shape[1] != 3 and images.shape[-1] == 3:
        images = images.permute(0, 3, 1, 2)
    elif images.shape[1] != 3:
        raise ValueError(f"expected 3 channels (HWC or CHW), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"expected uint8 (or float in [0, 1]) images, got {images.dtype}")
    return images


def _to_float(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        return images.contiguous().float().div_(255.0)
    return images.float().contiguous()


BACKENDS = ("auto", "fused", "torch")
"""How a :class:`ViewPipeline` runs on CPU: ``"fused"`` the compiled kernel of
:mod:`raycl.data.fused`, ``"torch"`` the torch ops of this module, ``"auto"`` the kernel where it
applies (uint8 CPU images; a Crop then Color/Grayscale/Blur/Solarize/Flip; a C compiler) and torch
ops otherwise.  Both give the same views for the same generator state."""


class ViewPipeline:
    """A sequence of ops producing ONE view of a batch.

    ``images``: uint8 ``[B, H, W, 3]`` (numpy or torch, as decoded) or
    ``[B, 3, H, W]`` (float in [0, 1] also accepted); returns uint8
    ``[B, 3, h, w]`` (``size x size`` for pipelines from :func:`make_views`) on
    the images' device.  Normalisation is left to the trainer.

    The batch is processed in chunks of ``chunk_size`` images (default: about
    ``2**20`` float values per chunk, e.g. 341 images at 32 px, 37 at 96 px):
    on CPU, tensors that fit in cache and stay below malloc's mmap threshold
    are several times faster per element than one huge batch.  Random
    parameters are drawn per chunk from the same generator, so the output is a
    deterministic function of (images, generator state, chunk_size), whichever
    ``backend`` (see :data:`BACKENDS`) computes it.
    """

    def __init__(self, ops: Sequence[Callable[[Tensor, torch.Generator | None], Tensor]],
                 chunk_size: int | None = None, backend: str = "auto"):
        self.ops = list(ops)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        if backend not in BACKENDS:
            raise _unknown("backend", backend, BACKENDS)
        self.chunk_size = chunk_size
        self.backend = backend

    def forward_float(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Apply the ops to float ``[B, 3, H, W]`` in [0, 1]; returns float."""
        for op in self.ops:
            x = op(x, generator)
        return x

    def _use_fused(self, images: Tensor) -> bool:
        if self.backend == "torch":
            return False
        from raycl.data import fused

        fits = images.dtype == torch.uint8 and images.device.type == "cpu" and fused.supports(self.ops)
        if self.backend == "fused":
            if not fits:
                raise ValueError(
                    "backend='fused' needs uint8 CPU images and a Crop followed only by "
                    f"Color/Grayscale/Blur/Solarize/Flip; got {images.dtype} on {images.device} for {self!r}")
            fused.library()  # raises FusedUnavailable with the reason
            return True
        return fits and fused.available()

    def __call__(self, images, generator: torch.Generator | None = None) -> Tensor:
        images = _as_nchw(images)
        B, C, H, W = images.shape
        chunk = self.chunk_size or max(1, (1 << 20) // (C * H * W))
        if self._use_fused(images):
            from raycl.data.fused import run

            return run(self.ops, images, generator, chunk)
        outs = []
        for part in images.split(chunk):
            x = self.forward_float(_to_float(part), generator)
            outs.append(x.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def __repr__(self) -> str:
        return "ViewPipeline([" + ", ".join(map(repr, self.ops)) + "])"


_DEFAULT_SCALES: dict[str, tuple[float, float]] = {
    "simclr": (0.08, 1.0),
    "moco_v1": (0.2, 1.0),
    "moco_v2": (0.2, 1.0),
    "byol": (0.08, 1.0),
    "swav": (0.14, 1.0),
    "pair": (0.08, 1.0),
}


def default_crop_scale(recipe: str) -> tuple[float, float]:
    """The area range of the large random resized crop of ``recipe`` when no ``scale`` is given."""
    key = "pair" if isinstance(recipe, str) and recipe.startswith("pair:") else recipe
    if key not in _DEFAULT_SCALES:
        raise _unknown("recipe", recipe, [r for r in RECIPES if r != "pair"] + ["pair:a,b"])
    return _DEFAULT_SCALES[key]


def _check_scale(name: str, scale) -> tuple[float, float]:
    ok = (
        isinstance(scale, (tuple, list))
        and len(scale) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scale)
        and 0.0 < scale[0] <= scale[1] <= 1.0
    )
    if not ok:
        raise ValueError(f"{name} must be a pair (low, high) with 0 < low <= high <= 1, got {scale!r}")
    return float(scale[0]), float(scale[1])


def default_small_size(size: int) -> int:
    """SwAV's small-crop side relative to the large one (96 / 224), rounded: 32 -> 14, 224 -> 96."""
    return max(1, round(size * 96 / 224))


def make_views(
    recipe: str,
    *,
    size: int,
    color_strength: float = 1.0,
    blur: bool | None = None,
    small_crops: int = 0,
    small_size: int | None = None,
    small_scale: tuple[float, float] = (0.05, 0.14),
    backend: str = "auto",
    **kwargs,
) -> list[ViewPipeline]:
    """One :class:`ViewPipeline` per view for a named recipe.

    Recipes (two large views each):

    * ``simclr``: crop (0.08, 1) + flip 0.5, colour distortion at strength
      ``color_strength`` (jitter 0.8s/0.8s/0.8s/0.2s, p=0.8; grayscale 0.2),
      blur p=0.5.  ``blur=None`` means blur only above CIFAR scale
      (``size > 32``): SimCLR's CIFAR recipe has no blur (and uses s=0.5).
    * ``moco_v1``: crop (0.2, 1), grayscale 0.2, jitter 0.4 x 4 with p=1, flip.
    * ``moco_v2``: crop (0.2, 1), jitter 0.4/0.4/0.4/0.1 p=0.8, grayscale 0.2,
      blur p=0.5 (``blur=False`` drops it), flip.
    * ``byol``: crop (0.08, 1) + flip, jitter 0.4/0.4/0.2/0.1 p=0.8, grayscale
      0.2, then asymmetric blur p 1.0 / 0.1 and solarize p 0 / 0.2 for views
      0 / 1 (``blur=False`` drops the blur).
    * ``swav`` (Caron et al. 2020): SimCLR's ImageNet ops -- crop (0.14, 1) +
      flip 0.5, colour distortion at ``color_strength`` (jitter
      0.8s/0.8s/0.8s/0.2s p=0.8, grayscale 0.2), blur p=0.5 (``blur=False``
      drops it) -- usually with multi-crop (``small_crops``, below).
    * ``pair:a,b`` (SimCLR Fig. 5): both views get a crop (resized to ``size``,
      no flip) only; view 0 then gets op ``a`` then op ``b`` (see
      :func:`make_op`); ``pair:a,a`` applies ``a`` once.

    For ``moco_*`` and ``byol`` the jitter ranges are multiplied by
    ``color_strength`` (1.0 = the papers' values).  Extra ``kwargs``: ``scale``
    (None: the recipe's default, :func:`default_crop_scale`), ``ratio``,
    ``flip`` (probability) and ``antialias`` of the crop(s) every view starts
    with.

    Multi-crop (SwAV; any recipe): ``small_crops = V`` appends V small views
    after the 2 large ones, ``[large0, large1, small0, ..., small{V-1}]``.
    A small view is view 0's pipeline with its crop replaced by a random
    resized crop to ``small_size`` (None: :func:`default_small_size`, SwAV's
    96/224 ratio) over the area range ``small_scale`` (same ratio, flip and
    antialias as the large crop); every other op (colour, blur, ...) is
    view 0's, so e.g. its blur kernel follows the small side.

    ``backend``: how the pipelines run on CPU (:data:`BACKENDS`).
    """
    allowed_kwargs = {"scale", "ratio", "flip", "antialias"}
    bad = set(kwargs) - allowed_kwargs
    if bad:
        raise ValueError(f"unknown make_views option(s) {sorted(bad)}; allowed: {', '.join(sorted(allowed_kwargs))}")
    if not isinstance(recipe, str):
        raise _unknown("recipe", recipe, RECIPES)
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not isinstance(small_crops, (int, np.integer)) or isinstance(small_crops, bool) or small_crops < 0:
        raise ValueError(f"small_crops must be an integer >= 0, got {small_crops!r}")
    if small_crops:
        if small_size is None:
            small_size = default_small_size(size)
        if not isinstance(small_size, (int, np.integer)) or isinstance(small_size, bool) or small_size < 1:
            raise ValueError(f"small_size must be a positive integer, got {small_size!r}")
        if small_size >= size:
            raise ValueError(f"small_size must be smaller than the large crop size {size}, got {small_size!r}")
        small_scale = _check_scale("small_scale", small_scale)
    s = float(color_strength)
    scale = kwargs.get("scale")
    if scale is not None:
        scale = _check_scale("scale", scale)

    def crop(default_scale=(0.08, 1.0), default_flip=0.5, out_size=size, crop_scale=None) -> Crop:
        return Crop(
            out_size,
            scale=crop_scale or scale or default_scale,
            ratio=kwargs.get("ratio", (3 / 4, 4 / 3)),
            flip=kwargs.get("flip", default_flip),
            antialias=kwargs.get("antialias", True),
        )

    views = _large_views(recipe, size, s, blur, crop)
    if small_crops:
        base = views[0].ops
        crops = [op for op in base if isinstance(op, Crop)]
        flip = crops[0].flip if crops else 0.5
        small = crop(default_flip=flip, out_size=int(small_size), crop_scale=small_scale)
        ops = [small] + [_resized(op, int(small_size)) for op in base[1:]]
        views += [ViewPipeline(ops) for _ in range(int(small_crops))]
    return [ViewPipeline(view.ops, view.chunk_size, backend) for view in views]  # checks backend


def _resized(op, size: int):
    """``op`` itself, or for a later :class:`Crop` (``pair:crop,...``) a copy that outputs ``size``."""
    if not isinstance(op, Crop):
        return op
    op = copy.copy(op)
    op.size = size
    return op


def _large_views(recipe: str, size: int, s: float, blur: bool | None, crop) -> list[ViewPipeline]:
    if recipe == "simclr":
        use_blur = size > 32 if blur is None else blur
        ops = [crop(), Color(s, p=0.8, gray_p=0.2)] + ([Blur(p=0.5)] if use_blur else [])
        return [ViewPipeline(ops), ViewPipeline(ops)]
    if recipe == "swav":
        use_blur = True if blur is None else blur
        ops = [crop(_DEFAULT_SCALES["swav"]), Color(s, p=0.8, gray_p=0.2)] + ([Blur(p=0.5)] if use_blur else [])
        return [ViewPipeline(ops), ViewPipeline(ops)]
    if recipe == "moco_v1":
        ops = [
            crop(_DEFAULT_SCALES["moco_v1"]),
            Grayscale(0.2),
            Color(p=1.0, gray_p=0.0, brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s, hue=0.4 * s),
        ]
        return [ViewPipeline(ops), ViewPipeline(ops)]
    if recipe == "moco_v2":
        ops = [
            crop(_DEFAULT_SCALES["moco_v2"]),
            Color(p=0.8, gray_p=0.2, brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s, hue=0.1 * s),
        ] + ([Blur(p=0.5)] if blur is None or blur else [])
        return [ViewPipeline(ops), ViewPipeline(ops)]
    if recipe == "byol":
        use_blur = True if blur is None else blur
        views = []
        for blur_p, sol_p in ((1.0, 0.0), (0.1, 0.2)):
            ops = [
                crop(),
                Color(p=0.8, gray_p=0.2, brightness=0.4 * s, contrast=0.4 * s, saturation=0.2 * s, hue=0.1 * s),
            ]
            if use_blur:
                ops.append(Blur(p=blur_p))
            ops.append(Solarize(p=sol_p))
            views.append(ViewPipeline(ops))
        return views
    if recipe.startswith("pair:"):
        names = [n.strip() for n in recipe[len("pair:") :].split(",")]
        if len(names) != 2:
            raise ValueError(f"recipe {recipe!r}: expected 'pair:a,b' with a, b in: {', '.join(OPS)}")
        for n in names:
            if n not in OPS:
                raise ValueError(f"recipe {recipe!r}: unknown op {n!r}; allowed: {', '.join(OPS)}")
        if names[0] == names[1]:
            names = names[:1]
        base = crop(default_flip=0.0)
        extra = [make_op(n, size=size, color_strength=s) for n in names]
        return [ViewPipeline([base] + extra), ViewPipeline([base])]
    raise _unknown("recipe", recipe, [r for r in RECIPES if r != "pair"] + ["pair:a,b"])
