"""Random resized crop, batched: torchvision's box sampling and bilinear / antialiased resampling."""

from __future__ import annotations

import math

import torch

from raycl.data.augment.sampling import rand, uniform

Tensor = torch.Tensor

__all__ = ["size_pair", "resample_taps", "resized_crop", "sample_crop_boxes"]


def size_pair(size) -> tuple[int, int]:
    """An output size, ``int`` or ``(h, w)``, as ``(h, w)`` ints."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resample_taps(
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
    iy, wy = resample_taps(top, height, out_h, antialias)
    ix, wx = resample_taps(left, width, out_w, antialias)
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
    :func:`resample_taps`.
    """
    B, C, H, W = x.shape
    out_h, out_w = size_pair(size)
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
    target = area * uniform(generator, (n, tries), scale[0], scale[1], device)
    aspect = torch.exp(uniform(generator, (n, tries), log_r[0], log_r[1], device))
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

    u = rand(generator, n, 2, device=device)
    top = torch.floor(u[:, 0] * (height - h + 1))
    left = torch.floor(u[:, 1] * (width - w + 1))
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1).long()
