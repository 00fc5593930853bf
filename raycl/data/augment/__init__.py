"""Batched image augmentations for contrastive learning.

Everything works on whole batches: per-sample random parameters are drawn in one call from a
``torch.Generator`` and applied with vectorised torch ops (no Python loop over samples; at most a
loop over a handful of groups, e.g. the 3 rotation angles or the 4x4 (step, op) groups of
colour-jitter order).  The code is pure torch and device-agnostic: parameters are drawn on the
generator's device and moved to the images' device.

Modules (this package re-exports their public names):

* :mod:`~raycl.data.augment.functional` and :mod:`~raycl.data.augment.crop`: deterministic ops on
  float32 ``[B, 3, H, W]`` tensors in ``[0, 1]`` taking per-sample parameters
  (:func:`resized_crop`, :func:`hflip`, :func:`color_jitter`, :func:`gaussian_blur`, ...), within
  1/255 of torchvision's per-image ``transforms.v2.functional`` ops (see tests);
  :mod:`~raycl.data.augment.sampling`: the random draws they and the ops use.
* :mod:`~raycl.data.augment.ops`: one class per op (``Crop``, ``Flip``, ``Color``, ``Grayscale``,
  ``Blur``, ``Solarize``, ``Cutout``, ``Sobel``, ``Noise``, ``Rotate``) with
  ``sample(x, generator) -> params`` and ``apply(x, params) -> x``; :data:`OPS` maps the names
  users type in sweeps to these classes.
* :mod:`~raycl.data.augment.views`: :class:`ViewPipeline` (uint8 in, uint8 out), run by torch ops
  or, on CPU, by the fused C kernel of :mod:`raycl.data.fused` with the parameters the ops sample
  (same views; see :data:`BACKENDS`).
* :mod:`~raycl.data.augment.recipes`: :func:`make_views`, the per-view pipelines of the named
  recipes in :data:`RECIPES`.
"""

from __future__ import annotations

from raycl.data.augment.crop import resized_crop, sample_crop_boxes
from raycl.data.augment.functional import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    blur_kernel_size,
    color_jitter,
    erase,
    gaussian_blur,
    grayscale,
    hflip,
    rgb_to_grayscale,
    rotate90,
    sobel,
    solarize,
)
from raycl.data.augment.ops import (
    OPS,
    Blur,
    Color,
    Crop,
    Cutout,
    Flip,
    Grayscale,
    Noise,
    Op,
    Rotate,
    Sobel,
    Solarize,
    make_op,
)
from raycl.data.augment.recipes import (
    DEFAULT_CROP_SCALES,
    RECIPES,
    REMOVABLE_OPS,
    default_crop_scale,
    default_small_size,
    make_views,
)
from raycl.data.augment.views import BACKENDS, ViewPipeline

__all__ = [
    "OPS",
    "RECIPES",
    "REMOVABLE_OPS",
    "ViewPipeline",
    "BACKENDS",
    "make_views",
    "make_op",
    "default_crop_scale",
    "default_small_size",
    "DEFAULT_CROP_SCALES",
    # classes
    "Op",
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
