"""Deterministic augmentation ops on float32 ``[B, 3, H, W]`` batches in ``[0, 1]``.

Each op takes per-sample parameters (masks, factors, boxes...) already drawn, applies them with
vectorised torch ops (no Python loop over samples) and matches torchvision's per-image
``transforms.v2.functional`` op within 1/255 (tests/test_augment.py).  The resized crop lives in
:mod:`raycl.data.augment.crop`.
"""

from __future__ import annotations

from typing import Sequence

import torch

Tensor = torch.Tensor

__all__ = [
    "JITTER_NAMES", "where_samples", "hflip", "rgb_to_grayscale", "grayscale", "adjust_brightness",
    "adjust_contrast", "adjust_saturation", "adjust_hue", "color_jitter", "blur_kernel_size",
    "gaussian_blur", "solarize", "erase", "sobel", "rotate90",
]

# ITU-R 601-2 luma, the weights torchvision uses.
_LUMA = (0.2989, 0.587, 0.114)


def where_samples(mask: Tensor | None, new: Tensor, old: Tensor) -> Tensor:
    """``new`` for the samples where ``mask`` is True (all if None), else ``old``.  (``lerp``
    with 0/1 weights: exact, and no bool mask, which is slow in CPU elementwise ops.)"""
    if mask is None:
        return new
    w = mask.to(device=old.device, dtype=old.dtype).view(-1, 1, 1, 1)
    return torch.lerp(old, new, w)


def hflip(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mirror horizontally the samples where ``mask`` is True (all if None)."""
    return where_samples(mask, x.flip(-1), x)


# --------------------------------------------------------------------------- #
# colour
# --------------------------------------------------------------------------- #
def rgb_to_grayscale(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma ``[B, 1, H, W]`` (torchvision's weights)."""
    r, g, b = x.unbind(1)
    return (r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2]).unsqueeze(1)


def grayscale(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Replace the samples where ``mask`` is True by their 3-channel luma."""
    return where_samples(mask, rgb_to_grayscale(x).expand_as(x), x)


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


# The 4 colour-jitter sub-ops, in the order of :func:`color_jitter`'s ``factors`` columns.
JITTER_NAMES = ("brightness", "contrast", "saturation", "hue")


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
    sum of ``kernel_size`` shifted, per-sample-weighted copies per axis: cheaper on
    CPU than a grouped conv with B*C groups, and device-agnostic."""
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


# --------------------------------------------------------------------------- #
# solarize, erase, sobel, rotate
# --------------------------------------------------------------------------- #
def solarize(x: Tensor, mask: Tensor | None = None, threshold: float = 0.5) -> Tensor:
    """Invert pixels ``>= threshold`` in the samples where ``mask`` is True."""
    if threshold == 0.5:
        inv = torch.minimum(x, 1.0 - x)  # same thing, exact, no bool mask
    else:
        inv = torch.where(x >= threshold, 1.0 - x, x)
    return where_samples(mask, inv, x)


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
