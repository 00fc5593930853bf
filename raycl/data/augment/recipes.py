"""The named augmentation recipes: :func:`make_views` builds one :class:`ViewPipeline` per view.

Named recipes are :data:`RECIPES` (``raycl.config.RECIPES``, which the config validates against);
``"pair:a,b"`` with ``a, b`` in :data:`~raycl.data.augment.ops.OPS` composes two ops (SimCLR's
Fig. 5 study).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from raycl import plugins
from raycl.config import PAIR_OPS, RECIPES, REMOVABLE_OPS, pair_ops
from raycl.data.augment.ops import (OPS, Blur, Color, Crop, Flip, Grayscale, Solarize, make_op,
                                    unknown_choice_error)
from raycl.data.augment.views import ViewPipeline

__all__ = ["DEFAULT_CROP_SCALES", "RECIPES", "REMOVABLE_OPS", "default_crop_scale", "default_small_size",
           "make_views"]

_PAIR_PREFIX = "pair:"


def _recipe_choices() -> list[str]:
    """What error messages list: raycl's recipes, those plugins registered, and pair:a,b."""
    return [*plugins.recipe_names(RECIPES), "pair:a,b"]


DEFAULT_CROP_SCALES: dict[str, tuple[float, float]] = {
    "simclr": (0.08, 1.0),
    "moco_v1": (0.2, 1.0),
    "moco_v2": (0.2, 1.0),
    "byol": (0.08, 1.0),
    "swav": (0.14, 1.0),
    "pair": (0.08, 1.0),
}
"""Area range of each recipe's large random resized crops when no ``scale`` is given
(``"pair"``: every ``"pair:a,b"``)."""


def default_crop_scale(recipe: str) -> tuple[float, float]:
    """The area range of the large random resized crop of ``recipe`` when no ``scale`` is given."""
    key = "pair" if isinstance(recipe, str) and recipe.startswith(_PAIR_PREFIX) else recipe
    if key in plugins.RECIPES:
        return plugins.RECIPES[key].crop_scale
    if key not in DEFAULT_CROP_SCALES:
        raise unknown_choice_error("recipe", recipe, _recipe_choices())
    return DEFAULT_CROP_SCALES[key]


def _check_scale(name: str, scale) -> tuple[float, float]:
    """``scale`` as a float pair ``(low, high)`` with ``0 < low <= high <= 1``, else ValueError."""
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
    remove: tuple[str, ...] = (),
    backend: str = "auto",
    **kwargs,
) -> list[ViewPipeline]:
    """One :class:`ViewPipeline` per view for a named recipe.

    Recipes (two large views each; every view starts with a random resized crop
    over the recipe's area range in :data:`DEFAULT_CROP_SCALES`):

    * ``simclr``: crop + flip 0.5, colour distortion at strength
      ``color_strength`` (jitter 0.8s/0.8s/0.8s/0.2s, p=0.8; grayscale 0.2),
      blur p=0.5.  ``blur=None`` means blur only above CIFAR scale
      (``size > 32``): SimCLR's CIFAR recipe has no blur (and uses s=0.5).
    * ``moco_v1``: crop, grayscale 0.2, jitter 0.4 x 4 with p=1, flip.
    * ``moco_v2``: crop, jitter 0.4/0.4/0.4/0.1 p=0.8, grayscale 0.2,
      blur p=0.5 (``blur=False`` drops it), flip.
    * ``byol``: crop + flip, jitter 0.4/0.4/0.2/0.1 p=0.8, grayscale
      0.2, then asymmetric blur p 1.0 / 0.1 and solarize p 0 / 0.2 for views
      0 / 1 (``blur=False`` drops the blur).
    * ``swav`` (Caron et al. 2020): SimCLR's ImageNet ops -- crop + flip 0.5, colour distortion at ``color_strength`` (jitter
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

    ``remove`` takes ops out of every view (BYOL Table 17), from :data:`REMOVABLE_OPS`: ``flip``,
    ``jitter`` (colour jitter), ``grayscale``, ``color`` (both), ``blur``, ``solarize``. An op the
    recipe does not have is not an error (a grid removes the same ops from several recipes).

    ``backend``: how the pipelines run on CPU (:data:`BACKENDS`).
    """
    allowed_kwargs = {"scale", "ratio", "flip", "antialias"}
    bad = set(kwargs) - allowed_kwargs
    if bad:
        raise ValueError(f"unknown make_views option(s) {sorted(bad)}; allowed: {', '.join(sorted(allowed_kwargs))}")
    if not isinstance(recipe, str):
        raise unknown_choice_error("recipe", recipe, _recipe_choices())
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

    def crop(default_flip=0.5, out_size=size, crop_scale=None) -> Crop:
        return Crop(
            out_size,
            scale=crop_scale or scale or default_crop_scale(recipe),
            ratio=kwargs.get("ratio", (3 / 4, 4 / 3)),
            flip=kwargs.get("flip", default_flip),
            antialias=kwargs.get("antialias", True),
        )

    views = _without(_large_views(recipe, size, s, blur, crop), remove)
    if small_crops:
        base = views[0].ops
        crops = [op for op in base if isinstance(op, Crop)]
        flip = crops[0].flip if crops else 0.5
        small = crop(default_flip=flip, out_size=int(small_size), crop_scale=small_scale)
        ops = [small] + [_resized(op, int(small_size)) for op in base[1:]]
        views += [ViewPipeline(ops) for _ in range(int(small_crops))]
    return [ViewPipeline(view.ops, view.chunk_size, backend) for view in views]  # checks backend


def _without(views: list[ViewPipeline], remove) -> list[ViewPipeline]:
    """``views`` with the ops named in ``remove`` taken out (a flip or a colour coin set to 0)."""
    unknown = [name for name in remove if name not in REMOVABLE_OPS]
    if isinstance(remove, str) or unknown:
        raise ValueError(f"remove must be a tuple of ops from {', '.join(REMOVABLE_OPS)}, got {remove!r}")
    drop = set(remove) | ({"jitter", "grayscale"} if "color" in remove else set())
    dropped = tuple(cls for cls, name in ((Flip, "flip"), (Grayscale, "grayscale"), (Blur, "blur"),
                                          (Solarize, "solarize")) if name in drop)
    out = []
    for view in views:
        ops = []
        for op in view.ops:
            if isinstance(op, dropped):
                continue
            if isinstance(op, Crop) and "flip" in drop:
                op = copy.copy(op)
                op.flip = 0.0
            if isinstance(op, Color) and drop & {"jitter", "grayscale"}:
                op = copy.copy(op)
                op.p = 0.0 if "jitter" in drop else op.p
                op.gray_p = 0.0 if "grayscale" in drop else op.gray_p
                if op.p == 0 and op.gray_p == 0:
                    continue
            ops.append(op)
        out.append(ViewPipeline(ops, view.chunk_size))
    return out


def _resized(op, size: int):
    """``op`` itself, or for a later :class:`Crop` (``pair:crop,...``) a copy that outputs ``size``."""
    if not isinstance(op, Crop):
        return op
    op = copy.copy(op)
    op.size = size
    return op


# The builders get the view side, the colour strength, the ``blur`` option and ``crop()``, which
# makes the recipe's large crop (its scale, ratio and flip as resolved by make_views).
def _simclr(size: int, s: float, blur: bool | None, crop) -> list[ViewPipeline]:
    use_blur = size > 32 if blur is None else blur
    ops = [crop(), Color(s, p=0.8, gray_p=0.2)] + ([Blur(p=0.5)] if use_blur else [])
    return [ViewPipeline(ops), ViewPipeline(ops)]


def _swav(size: int, s: float, blur: bool | None, crop) -> list[ViewPipeline]:
    use_blur = True if blur is None else blur
    ops = [crop(), Color(s, p=0.8, gray_p=0.2)] + ([Blur(p=0.5)] if use_blur else [])
    return [ViewPipeline(ops), ViewPipeline(ops)]


def _moco_v1(size: int, s: float, blur: bool | None, crop) -> list[ViewPipeline]:
    ops = [
        crop(),
        Grayscale(0.2),
        Color(p=1.0, gray_p=0.0, brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s, hue=0.4 * s),
    ]
    return [ViewPipeline(ops), ViewPipeline(ops)]


def _moco_v2(size: int, s: float, blur: bool | None, crop) -> list[ViewPipeline]:
    ops = [
        crop(),
        Color(p=0.8, gray_p=0.2, brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s, hue=0.1 * s),
    ] + ([Blur(p=0.5)] if blur is None or blur else [])
    return [ViewPipeline(ops), ViewPipeline(ops)]


def _byol(size: int, s: float, blur: bool | None, crop) -> list[ViewPipeline]:
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


def _pair_views(recipe: str, size: int, s: float, crop) -> list[ViewPipeline]:
    names = pair_ops(recipe, "recipe")
    if names[0] == names[1]:
        names = names[:1]
    base = crop(default_flip=0.0)
    extra = [make_op(n, size=size, color_strength=s) if n in OPS else plugins.OPS[n](size, s) for n in names]
    return [ViewPipeline([base] + extra), ViewPipeline([base])]


_BUILDERS = {"simclr": _simclr, "moco_v1": _moco_v1, "moco_v2": _moco_v2, "byol": _byol, "swav": _swav}
assert set(_BUILDERS) == set(RECIPES) and set(DEFAULT_CROP_SCALES) == {*RECIPES, "pair"}, (
    "the recipe builders and default crop scales must cover raycl.config.RECIPES exactly")
assert tuple(OPS) == PAIR_OPS, "raycl.config.PAIR_OPS must name the ops of raycl.data.augment.OPS, in order"


def _large_views(recipe: str, size: int, s: float, blur: bool | None, crop) -> list[ViewPipeline]:
    if recipe in _BUILDERS:
        return _BUILDERS[recipe](size, s, blur, crop)
    if recipe in plugins.RECIPES:  # registered by a plugin (raycl.register_recipe)
        build = plugins.RECIPES[recipe].build
        views = build(size, s, blur, crop)
        if not (isinstance(views, list) and len(views) >= 2
                and all(isinstance(v, ViewPipeline) for v in views)):
            raise TypeError(f"recipe {recipe!r} ({build.__module__}) must return a list of at least 2 "
                            f"ViewPipeline, got {views!r}")
        return views
    if recipe.startswith(_PAIR_PREFIX):
        return _pair_views(recipe, size, s, crop)
    raise unknown_choice_error("recipe", recipe, _recipe_choices())
