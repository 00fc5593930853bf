"""Tests for raycl.data.augment: per-op behaviour, agreement with torchvision's
per-image functional ops, determinism and the recipes."""

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from raycl import config
from raycl.data import augment as A

TOL = 1.0 / 255


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rand_images(b=8, h=24, w=24, seed=0):
    return torch.rand(b, 3, h, w, generator=gen(seed))


def per_image(fn, x, *params):
    """Apply torchvision's per-image op with per-sample scalar params."""
    return torch.stack([fn(x[i], *[p[i].item() for p in params]) for i in range(x.shape[0])])


def max_err(a, b):
    return (a - b).abs().max().item()


# --------------------------------------------------------------------------- #
# agreement with torchvision (deterministic given parameters)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "h,w,size",
    [(32, 32, 32), (32, 32, 96), (40, 48, 32), (100, 120, 32), (60, 60, 40)],
    ids=["same", "upsample", "mixed", "downsample", "down-mostly"],
)
@pytest.mark.parametrize("antialias", [True, False])
def test_resized_crop_matches_torchvision(h, w, size, antialias):
    g = gen(1)
    x = torch.rand(12, 3, h, w, generator=g)
    boxes = A.sample_crop_boxes(12, h, w, generator=g)
    ref = torch.stack(
        [TF.resized_crop(x[i], *boxes[i].tolist(), [size, size], antialias=antialias) for i in range(12)]
    )
    out = A.resized_crop(x, boxes, size, antialias=antialias)
    assert out.shape == (12, 3, size, size)
    assert max_err(out, ref) <= TOL


def test_resized_crop_flip_is_mirror_of_unflipped():
    x = rand_images(8, 32, 32)
    boxes = A.sample_crop_boxes(8, 32, 32, generator=gen(2))
    flip = torch.tensor([True, False] * 4)
    plain = A.resized_crop(x, boxes, 32)
    flipped = A.resized_crop(x, boxes, 32, flip=flip)
    assert torch.allclose(flipped[flip], plain[flip].flip(-1), atol=1e-6)
    assert torch.equal(flipped[~flip], plain[~flip])


def test_uint8_pipeline_crop_matches_torchvision_uint8():
    # full-image "crop" at scale (1, 1) without flip: just a resize of uint8 input
    imgs = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8, generator=gen(3))
    view = A.ViewPipeline([A.Crop(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0)])
    out = view(imgs, gen())
    ref = torch.stack([TF.resize(imgs[i], [32, 32], antialias=True) for i in range(4)])
    assert (out.int() - ref.int()).abs().max().item() <= 1


@pytest.mark.parametrize(
    "name,fn,lo,hi",
    [
        ("brightness", TF.adjust_brightness, 0.2, 1.8),
        ("contrast", TF.adjust_contrast, 0.2, 1.8),
        ("saturation", TF.adjust_saturation, 0.0, 2.0),
        ("hue", TF.adjust_hue, -0.5, 0.5),
    ],
)
def test_color_adjust_matches_torchvision(name, fn, lo, hi):
    x = rand_images(16, 20, 20)
    x[0] = x[0, :1]  # a gray image (hue undefined)
    x[1] = (x[1] * 4).round() / 4  # many ties between channels
    f = torch.rand(16, generator=gen(4)) * (hi - lo) + lo
    ours = {"brightness": A.adjust_brightness, "contrast": A.adjust_contrast,
            "saturation": A.adjust_saturation, "hue": A.adjust_hue}[name]
    assert max_err(ours(x, f), per_image(fn, x, f)) <= TOL


def test_color_jitter_random_order_matches_torchvision_sequence():
    x = rand_images(32, 16, 16)
    color = A.Color(1.0, p=0.8, gray_p=0.0)
    params = color.sample(x, gen(5))
    assert len({tuple(o) for o in params["order"].tolist()}) > 1  # orders do vary
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    ref = []
    for i in range(32):
        y = x[i]
        if params["jitter"][i]:
            for op in params["order"][i].tolist():
                y = fns[op](y, params["factors"][i, op].item())
        ref.append(y)
    assert max_err(color.apply(x, params), torch.stack(ref)) <= TOL


def test_color_factor_ranges_follow_simclr_definition():
    c = A.Color(0.5)
    assert (c.brightness, c.contrast, c.saturation, c.hue) == pytest.approx((0.4, 0.4, 0.4, 0.1))
    params = c.sample(rand_images(256, 2, 2), gen(6))
    f = params["factors"]
    assert f[:, :3].min() >= 0.6 - 1e-6 and f[:, :3].max() <= 1.4 + 1e-6
    assert f[:, 3].abs().max() <= 0.1 + 1e-6


def test_grayscale_matches_torchvision_and_channels_equal():
    x = rand_images()
    out = A.grayscale(x)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert max_err(out, torch.stack([TF.rgb_to_grayscale(x[i], 3) for i in range(8)])) <= TOL
    op = A.Grayscale(p=0.5)
    params = op.sample(x, gen(7))
    y = op.apply(x, params)
    m = params["mask"]
    assert m.any() and (~m).any()
    assert torch.equal(y[~m], x[~m])
    assert torch.equal(y[m][:, 0], y[m][:, 2])


@pytest.mark.parametrize("kernel_size", [3, 9])
def test_blur_matches_torchvision(kernel_size):
    x = rand_images(8, 24, 24)
    sigma = torch.rand(8, generator=gen(8)) * 1.9 + 0.1
    ref = torch.stack([TF.gaussian_blur(x[i], [kernel_size] * 2, [sigma[i].item()] * 2) for i in range(8)])
    assert max_err(A.gaussian_blur(x, sigma, kernel_size), ref) <= TOL


def test_blur_kernel_size_is_ten_percent_odd():
    assert [A.blur_kernel_size(s) for s in (32, 96, 224)] == [3, 9, 23]


def test_blur_only_touches_selected_samples():
    x = rand_images(16)
    op = A.Blur(p=0.5)
    params = op.sample(x, gen(9))
    y = op.apply(x, params)
    m = params["mask"]
    assert m.any() and (~m).any()
    assert torch.equal(y[~m], x[~m])
    assert (y[m] - x[m]).abs().amax(dim=(1, 2, 3)).min() > 0


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_solarize_matches_torchvision_and_inverts_only_above_threshold(threshold):
    x = rand_images()
    out = A.solarize(x, threshold=threshold)
    assert max_err(out, torch.stack([TF.solarize(x[i], threshold) for i in range(8)])) == 0
    hi = x >= threshold
    assert torch.equal(out[~hi], x[~hi])
    assert torch.allclose(out[hi], 1 - x[hi])


def test_rotate_is_exact_multiple_of_90_and_matches_torchvision():
    x = rand_images(8, 16, 16)
    op = A.Rotate()
    params = op.sample(x, gen(10))
    k = params["k"]
    assert set(k.tolist()) <= {1, 2, 3} and len(set(k.tolist())) > 1
    y = op.apply(x, params)
    for i in range(8):
        assert torch.equal(y[i], torch.rot90(x[i], int(k[i]), dims=(-2, -1)))
        assert torch.equal(y[i], TF.rotate(x[i], 90.0 * int(k[i])))
    with pytest.raises(ValueError):
        op(rand_images(2, 16, 20), gen())


def test_flip_is_exact_mirror():
    x = rand_images(16)
    op = A.Flip(0.5)
    params = op.sample(x, gen(11))
    y = op.apply(x, params)
    m = params["mask"]
    assert m.any() and (~m).any()
    assert torch.equal(y[m], x[m].flip(-1))
    assert torch.equal(y[~m], x[~m])
    assert torch.equal(y[m], torch.stack([TF.horizontal_flip(x[i]) for i in torch.nonzero(m).flatten()]))


# --------------------------------------------------------------------------- #
# per-op behaviour
# --------------------------------------------------------------------------- #
def test_crop_output_size_and_boxes_valid():
    x = rand_images(64, 40, 30)
    op = A.Crop(17, scale=(0.08, 1.0))
    params = op.sample(x, gen(12))
    top, left, h, w = params["boxes"].unbind(-1)
    assert (h > 0).all() and (w > 0).all()
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 40).all() and (left + w <= 30).all()
    area = (h * w).float() / (40 * 30)
    assert area.min() >= 0.06 and area.max() <= 1.0  # scale range, up to rounding
    assert op.apply(x, params).shape == (64, 3, 17, 17)


def test_crop_sampler_falls_back_to_centre_crop():
    # aspect ratios that can never fit a 100x10 image -> centre crop with ratio 3/4 bound
    boxes = A.sample_crop_boxes(4, 100, 10, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3), generator=gen())
    expected_h = int(round(10 / (3 / 4)))
    assert boxes.tolist() == [[(100 - expected_h) // 2, 0, expected_h, 10]] * 4


def test_color_at_strength_zero_is_identity():
    x = rand_images()
    assert torch.equal(A.Color(0.0, p=1.0, gray_p=0.0)(x, gen()), x)
    imgs = (rand_images() * 255).to(torch.uint8)
    view = A.ViewPipeline([A.Color(0.0, p=1.0, gray_p=0.0)])
    assert torch.equal(view(imgs, gen()), imgs)


def test_sobel_of_constant_is_zero_and_in_unit_range():
    x = torch.full((2, 3, 16, 16), 0.7)
    assert torch.equal(A.sobel(x), torch.zeros_like(x))
    y = A.sobel(rand_images())
    assert y.min() >= 0 and y.max() == pytest.approx(1.0)
    assert torch.equal(y[:, 0], y[:, 2])
    # a vertical step edge only responds at the step
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0
    e = A.sobel(step)[0, 0]
    assert (e[:, [3, 4]] > 0).all() and (e[:, :3] == 0).all() and (e[:, 5:] == 0).all()


def test_cutout_erases_one_square_only():
    x = rand_images(16, 32, 32) * 0.5 + 0.25  # no zeros in the input
    op = A.Cutout(size=8)
    y = op(x, gen(13))
    zeros = y == 0
    assert torch.equal(y[~zeros], x[~zeros])
    per_img = zeros[:, 0].sum(dim=(1, 2))
    assert (per_img > 0).all() and (per_img <= 64).all()
    assert (per_img == 64).any()  # some squares are fully inside


def test_noise_changes_values_and_stays_in_range():
    x = rand_images()
    y = A.Noise(std=0.1)(x, gen(14))
    assert y.min() >= 0 and y.max() <= 1
    d = (y - x)[(x > 0.3) & (x < 0.7)]
    assert 0.08 < d.std().item() < 0.12
    assert torch.equal(A.Noise(std=0.1, p=0.0)(x, gen()), x)


# --------------------------------------------------------------------------- #
# pipelines / recipes
# --------------------------------------------------------------------------- #
def uint8_batch(b=16, h=32, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(b, h, w, 3), dtype=np.uint8)


def test_view_pipeline_accepts_hwc_numpy_and_chw_torch():
    imgs = uint8_batch()
    view = A.make_views("simclr", size=24)[0]
    a = view(imgs, gen(1))
    b = view(torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), gen(1))
    assert a.dtype == torch.uint8 and a.shape == (16, 3, 24, 24)
    assert torch.equal(a, b)
    ro = imgs.copy()
    ro.setflags(write=False)  # Ray Data hands out read-only arrays
    assert torch.equal(view(ro, gen(1)), a)


@pytest.mark.parametrize("recipe", ["simclr", "moco_v1", "moco_v2", "byol", "pair:crop,color", "pair:blur,rotate"])
def test_same_seed_same_views_different_seed_different_views(recipe):
    imgs = uint8_batch()
    views = A.make_views(recipe, size=32)
    assert len(views) == 2

    def run(seed):
        g = gen(seed)
        return [v(imgs, g) for v in views]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == a[1].shape == (16, 3, 32, 32)
    assert not torch.equal(a[0], a[1])  # two views of the same images differ


@pytest.mark.parametrize("pair", ["pair:crop,color", "pair:color,blur", "pair:sobel,sobel", "pair:noise,cutout"])
def test_pair_leaves_view1_cropped_only(pair):
    imgs = uint8_batch(8, 40, 40)
    v0, v1 = A.make_views(pair, size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0)
    resized = A.ViewPipeline([A.Crop(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0)])(imgs, gen())
    g = gen(3)
    out0, out1 = v0(imgs, g), v1(imgs, g)
    assert torch.equal(out1, resized)
    assert not torch.equal(out0, resized)


def test_pair_applies_a_then_b_and_diagonal_once():
    v0, _ = A.make_views("pair:color,blur", size=32)
    assert [type(op) for op in v0.ops] == [A.Crop, A.Color, A.Blur]
    v0, _ = A.make_views("pair:rotate,rotate", size=32)
    assert [type(op) for op in v0.ops] == [A.Crop, A.Rotate]


def test_byol_views_have_asymmetric_blur_and_solarize():
    v0, v1 = A.make_views("byol", size=32)
    x = rand_images(4000, 4, 4)
    stats = []
    for v in (v0, v1):
        blur = next(op for op in v.ops if isinstance(op, A.Blur))
        sol = next(op for op in v.ops if isinstance(op, A.Solarize))
        g = gen(15)
        stats.append((blur.sample(x, g)["mask"].float().mean().item(), sol.sample(x, g)["mask"].float().mean().item()))
    (b0, s0), (b1, s1) = stats
    assert b0 == 1.0 and s0 == 0.0
    assert abs(b1 - 0.1) < 0.02 and abs(s1 - 0.2) < 0.02
    # solarize with p=0 never changes view 0: dropping it gives identical output
    imgs = uint8_batch(64)
    no_sol = A.ViewPipeline([op for op in v0.ops if not isinstance(op, A.Solarize)])
    assert torch.equal(v0(imgs, gen(16)), no_sol(imgs, gen(16)))


def _active(view, kind: str) -> bool:
    """Whether ``view`` still applies ``kind`` (an op of that kind with a non-zero probability)."""
    for op in view.ops:
        if kind == "flip" and (isinstance(op, A.Flip) or getattr(op, "flip", 0) > 0):
            return True
        if kind == "jitter" and isinstance(op, A.Color) and op.p > 0:
            return True
        if kind == "grayscale" and (isinstance(op, A.Grayscale) or getattr(op, "gray_p", 0) > 0):
            return True
        if kind in ("blur", "solarize") and type(op).__name__.lower() == kind and op.p > 0:
            return True
    return False


@pytest.mark.parametrize("recipe", ["byol", "simclr", "moco_v1", "moco_v2"])
@pytest.mark.parametrize("remove", [("flip",), ("jitter",), ("grayscale",), ("color",), ("blur",),
                                    ("solarize",), ("flip", "color", "blur", "solarize")])
def test_remove_takes_exactly_those_ops_out(recipe, remove):
    kinds = ("flip", "jitter", "grayscale", "blur", "solarize")
    gone = set(remove) | ({"jitter", "grayscale"} if "color" in remove else set())
    full = A.make_views(recipe, size=32, blur=True)
    for before, after in zip(full, A.make_views(recipe, size=32, blur=True, remove=remove)):
        for kind in kinds:
            assert _active(after, kind) == (_active(before, kind) and kind not in gone), kind


def test_removing_everything_but_the_crop_leaves_the_crop():
    # a full-image crop at the image's own size is the identity: nothing else may touch the pixels
    imgs = uint8_batch(32)
    for view in A.make_views("byol", size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0),
                             remove=("flip", "color", "blur", "solarize")):
        assert torch.equal(view(imgs, gen(3)), torch.from_numpy(imgs).permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="remove must be"):
        A.make_views("byol", size=32, remove=("colour",))
    with pytest.raises(ValueError, match="remove must be"):
        A.make_views("byol", size=32, remove="flip")


def test_remove_is_a_config_field_the_cli_can_set():
    cfg = config.from_overrides({"augment.remove": "flip, blur"})
    assert cfg.augment.remove == ("flip", "blur")
    assert config.REMOVABLE_OPS == A.REMOVABLE_OPS
    with pytest.raises(config.ConfigError, match="augment.remove") as info:
        config.from_overrides({"augment.remove": ["flip", "rotate"]})
    assert "solarize" in str(info.value)


def test_recipe_options():
    blur_ops = lambda v: [op for op in v.ops if isinstance(op, A.Blur)]  # noqa: E731
    assert not blur_ops(A.make_views("simclr", size=32)[0])  # CIFAR: no blur
    assert blur_ops(A.make_views("simclr", size=96)[0])
    assert blur_ops(A.make_views("simclr", size=32, blur=True)[0])
    assert not blur_ops(A.make_views("moco_v2", size=224, blur=False)[0])
    col = next(op for op in A.make_views("simclr", size=32, color_strength=0.5)[0].ops if isinstance(op, A.Color))
    assert col.brightness == pytest.approx(0.4) and col.hue == pytest.approx(0.1)
    m1 = A.make_views("moco_v1", size=32)[0].ops
    assert m1[0].scale == (0.2, 1.0) and m1[2].p == 1.0 and m1[2].hue == pytest.approx(0.4)
    assert set(A.OPS) == {"crop", "flip", "color", "grayscale", "blur", "solarize", "cutout", "sobel", "noise", "rotate"}
    assert "simclr" in A.RECIPES and "byol" in A.RECIPES


def test_recipes_and_backends_are_the_configs():
    # the config validates names against raycl.config; augment must build exactly those
    assert A.RECIPES == config.RECIPES and A.BACKENDS == config.AUGMENT_BACKENDS
    assert set(A.DEFAULT_CROP_SCALES) == {*config.RECIPES, "pair"}
    for recipe in config.RECIPES:
        views = A.make_views(recipe, size=32)
        assert len(views) == 2 and views[0].ops[0].scale == A.default_crop_scale(recipe)
    for backend in config.AUGMENT_BACKENDS:
        assert A.make_views("simclr", size=32, backend=backend)[0].backend == backend


@pytest.mark.parametrize(
    "recipe,bad",
    [("simclr_v9", "simclr_v9"), ("pair:crop,colour", "colour"), ("pair:warp,crop", "warp"), ("pair:crop", "pair:crop")],
)
def test_bad_names_raise_value_error(recipe, bad):
    with pytest.raises(ValueError, match=bad) as info:
        A.make_views(recipe, size=32)
    assert "allowed" in str(info.value) or "expected" in str(info.value)


def test_bad_op_name_and_option_raise():
    with pytest.raises(ValueError, match="nope"):
        A.make_op("nope", size=32)
    with pytest.raises(ValueError, match="colour_strength"):
        A.make_views("simclr", size=32, colour_strength=0.5)


# --------------------------------------------------------------------------- #
# swav and multi-crop
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("recipe", ["swav", "simclr", "byol", "pair:crop,color"])
def test_multi_crop_gives_two_large_then_small_views(recipe):
    imgs = uint8_batch(8, 32, 32)
    views = A.make_views(recipe, size=32, small_crops=3, small_size=12)
    assert len(views) == 5
    g = gen(4)
    outs = [v(imgs, g) for v in views]
    assert [tuple(o.shape) for o in outs] == [(8, 3, 32, 32)] * 2 + [(8, 3, 12, 12)] * 3
    assert all(o.dtype == torch.uint8 for o in outs)
    # small views: view 0's ops with only the (first) crop replaced
    small, large = views[2].ops, views[0].ops
    assert isinstance(small[0], A.Crop) and small[0].scale == (0.05, 0.14) and small[0].size == 12
    assert [type(op) for op in small] == [type(op) for op in large]
    assert all(s is op for s, op in zip(small[1:], large[1:]) if not isinstance(op, A.Crop))
    assert not torch.equal(outs[2], outs[3])  # each small view draws its own parameters


def test_swav_recipe_ops_and_scales():
    v0, _ = A.make_views("swav", size=96)
    crop, color, blur = v0.ops
    assert isinstance(crop, A.Crop) and crop.scale == (0.14, 1.0) and crop.flip == 0.5
    assert isinstance(color, A.Color) and color.p == 0.8 and color.gray_p == 0.2
    assert color.brightness == pytest.approx(0.8) and color.hue == pytest.approx(0.2)
    assert isinstance(blur, A.Blur) and blur.p == 0.5
    assert [type(op) for op in A.make_views("swav", size=96, blur=False)[0].ops] == [A.Crop, A.Color]
    assert A.make_views("swav", size=32, scale=(0.3, 0.9))[1].ops[0].scale == (0.3, 0.9)
    views = A.make_views("swav", size=32, color_strength=0.5, small_crops=2, small_size=16)
    assert [v.ops[0].scale for v in views] == [(0.14, 1.0)] * 2 + [(0.05, 0.14)] * 2
    assert A.default_crop_scale("swav") == (0.14, 1.0) and A.default_crop_scale("pair:crop,blur") == (0.08, 1.0)
    assert len(A.make_views("simclr", size=224, small_crops=1)) == 3
    assert A.make_views("simclr", size=224, small_crops=1)[2].ops[0].size == 96  # SwAV's 96 / 224


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"small_crops": 2, "small_size": 32}, "small_size"),
        ({"small_crops": 2, "small_size": 40}, "small_size"),
        ({"small_crops": -1}, "small_crops"),
        ({"small_crops": 2, "small_size": 16, "small_scale": (0.2, 0.1)}, "small_scale"),
        ({"small_crops": 2, "small_size": 16, "small_scale": (0.0, 0.1)}, "small_scale"),
        ({"scale": (0.5, 1.5)}, "scale"),
    ],
)
def test_multi_crop_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        A.make_views("swav", size=32, **kwargs)
