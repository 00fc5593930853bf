"""The fused C kernel of the view pipelines (raycl.data.fused) against the torch ops it replaces:
same parameters from the same generator, so the same views (within one uint8 level, and equal
for nearly every pixel)."""

import numpy as np
import pytest
import torch

from raycl.checks import ConfigError
from raycl.data import augment as A
from raycl.data import fused
from raycl.data.synthetic import make_images

needs_kernel = pytest.mark.skipif(not fused.available(), reason="no C compiler for the fused kernel")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def both(ops, images, seed=0, chunk_size=None):
    """Views of ``images`` through ``ops`` by the torch ops and by the kernel, same generator seed."""
    ref = A.ViewPipeline(ops, chunk_size, backend="torch")(images, gen(seed))
    out = A.ViewPipeline(ops, chunk_size, backend="fused")(images, gen(seed))
    return ref, out


def assert_same_views(ref, out):
    assert out.dtype == torch.uint8 and out.shape == ref.shape
    diff = (ref.int() - out.int()).abs()
    assert diff.max().item() <= 1  # float32 sums in another order may round the other way
    assert (diff > 0).float().mean().item() < 1e-2  # ... and that is rare (< 0.3 % seen)


@pytest.fixture(scope="module")
def images32():
    return make_images(96, seed=3, image_size=32)[0]


@pytest.fixture(scope="module")
def images64():
    return make_images(48, seed=4, image_size=64)[0]


@needs_kernel
@pytest.mark.parametrize("recipe,kwargs", [
    ("simclr", dict(color_strength=0.5, blur=False)),
    ("simclr", dict(color_strength=1.0, blur=True)),
    ("moco_v1", {}),
    ("moco_v2", {}),
    ("byol", {}),
    ("swav", dict(small_crops=2, small_size=14)),
    ("byol", dict(remove=("jitter",))),  # BYOL Table 17's removals: colour coins at 0
    ("byol", dict(remove=("grayscale", "flip"))),
    ("simclr", dict(remove=("color",))),
])
def test_recipes_match_torch_ops(images32, recipe, kwargs):
    for view in A.make_views(recipe, size=32, **kwargs):
        assert_same_views(*both(view.ops, images32, seed=5))


@needs_kernel
def test_the_kernels_crop_taps_are_the_torch_ops_taps():
    # the kernel computes each sample's taps from its box: the same indices and weights as
    # resample_taps (flip reverses the outputs), for up- and downscaling, with and without antialias;
    # a weight is divided by a sum of up to T floats that torch adds in another order: a few ulps
    from raycl.data.augment.crop import resample_taps

    rng = np.random.default_rng(0)
    for _ in range(200):
        out = int(rng.choice([7, 24, 32, 96, 224]))
        length = float(rng.integers(1, 300))
        start = float(rng.integers(0, 50))
        antialias, flip = bool(rng.integers(2)), bool(rng.integers(2))
        idx, w = fused.crop_taps(start, length, out, antialias, flip)
        ref_idx, ref_w = (t[0] for t in resample_taps(torch.tensor([start]), torch.tensor([length]), out, antialias))
        if flip:
            ref_idx, ref_w = ref_idx.flip(0), ref_w.flip(0)
        for o in range(out):
            nz, ref_nz = w[o] != 0, ref_w[o] != 0
            assert torch.equal(idx[o][nz].long(), ref_idx[o][ref_nz]), (out, length, antialias, o)
            torch.testing.assert_close(w[o][nz], ref_w[o][ref_nz], rtol=5e-7, atol=0)


@needs_kernel
@pytest.mark.parametrize("size,antialias", [(32, True), (24, True), (24, False), (96, True)],
                         ids=["same-size", "downscale", "downscale-no-antialias", "upscale"])
def test_crop_resampling_matches_torch_ops(images64, size, antialias):
    # 64 px images cropped to 24/32 px: mostly downscaled (antialiased triangle filter), to 96: upscaled
    ops = [A.Crop(size, antialias=antialias)]
    assert_same_views(*both(ops, images64, seed=1))


@needs_kernel
def test_every_fused_op_matches_torch_ops(images32):
    ops = [A.Crop(32, scale=(0.3, 1.0), flip=0.5), A.Flip(0.5), A.Grayscale(0.3),
           A.Color(0.8, p=1.0, gray_p=0.3, random_order=False), A.Blur(1.0, kernel_size=5),
           A.Solarize(0.5, threshold=0.3), A.Color(brightness=0.0, contrast=0.5, saturation=0.0, hue=0.3)]
    assert_same_views(*both(ops, images32, seed=2))


@needs_kernel
@pytest.mark.parametrize("sigma", [(0.1, 0.5), (0.5, 2.0), (2.0, 2.0)], ids=["small", "simclr", "widest"])
def test_wide_blur_kernels_match_torch_ops(images64, sigma):
    # SimCLR's 224 px kernel (23 taps) at every sigma: the kernel skips the taps that round to nothing
    ops = [A.Crop(64, scale=(0.5, 1.0)), A.Blur(1.0, sigma=sigma, kernel_size=23)]
    assert_same_views(*both(ops, images64, seed=3))


@needs_kernel
def test_input_layouts_and_chunks_give_the_same_views(images32):
    ops = A.make_views("simclr", size=32)[0].ops
    hwc = A.ViewPipeline(ops, chunk_size=20, backend="fused")(images32, gen(7))
    chw = torch.from_numpy(np.ascontiguousarray(images32.transpose(0, 3, 1, 2)))
    assert torch.equal(hwc, A.ViewPipeline(ops, chunk_size=20, backend="fused")(chw, gen(7)))
    ref = A.ViewPipeline(ops, chunk_size=20, backend="torch")(images32, gen(7))
    assert_same_views(ref, hwc)


@needs_kernel
def test_threads_do_not_change_the_views(images32):
    ops = A.make_views("byol", size=32)[1].ops
    one = A.ViewPipeline(ops, chunk_size=10, backend="fused")(images32, gen(3))
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        three = A.ViewPipeline(ops, chunk_size=10, backend="fused")(images32, gen(3))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


@needs_kernel
def test_auto_uses_the_kernel_where_it_applies(images32, monkeypatch):
    calls = []
    real = fused.run
    monkeypatch.setattr(fused, "run", lambda *a, **k: calls.append(1) or real(*a, **k))
    A.make_views("simclr", size=32)[0](images32, gen())
    assert calls == [1]
    # float input, and an op the kernel does not have (rotate): the torch ops, no error
    A.make_views("simclr", size=32)[0](torch.rand(4, 3, 32, 32), gen())
    A.make_views("pair:crop,rotate", size=32)[0](images32, gen())
    assert calls == [1]


def test_fused_backend_refuses_what_it_cannot_do(images32):
    with pytest.raises(ValueError, match="backend='fused' needs uint8 CPU images"):
        A.ViewPipeline([A.Crop(32), A.Rotate()], backend="fused")(images32, gen())
    with pytest.raises(ValueError, match="backend='fused' needs uint8 CPU images"):
        A.ViewPipeline([A.Crop(32)], backend="fused")(torch.rand(2, 3, 32, 32), gen())
    with pytest.raises(ValueError, match="unknown backend 'numba'; allowed: auto, fused, torch"):
        A.ViewPipeline([A.Crop(32)], backend="numba")
    with pytest.raises(ValueError, match="unknown backend"):
        A.make_views("simclr", size=32, backend="gpu")


def test_without_a_compiler_auto_falls_back_to_torch_ops(images32, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(fused, "_compiler", lambda: None)
    monkeypatch.setenv("RAYCL_CACHE_DIR", str(tmp_path))
    fused.library.cache_clear()
    fused.available.cache_clear()
    try:
        with pytest.raises(fused.FusedUnavailable, match="no C compiler"):
            fused.build(tmp_path)
        view = A.make_views("simclr", size=32)[0]
        out = view(images32, gen(1))
        assert "fused augmentation kernel is unavailable" in caplog.text
        assert torch.equal(out, A.ViewPipeline(view.ops, backend="torch")(images32, gen(1)))
        with pytest.raises(fused.FusedUnavailable):
            A.ViewPipeline(view.ops, backend="fused")(images32, gen(1))
    finally:
        fused.library.cache_clear()
        fused.available.cache_clear()


@needs_kernel
def test_build_caches_by_source_and_reports_compiler_errors(tmp_path, monkeypatch):
    first = fused.build(tmp_path)
    assert first.exists() and fused.build(tmp_path) == first  # cached, not rebuilt
    assert first.stat().st_mtime == fused.build(tmp_path).stat().st_mtime
    bad = tmp_path / "bad.c"
    bad.write_text("int f( {")
    monkeypatch.setattr(fused, "SOURCE", bad)
    with pytest.raises(fused.FusedUnavailable, match="failed on bad.c"):
        fused.build(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".so"] == [first.name]  # no debris


@needs_kernel
def test_a_run_builds_the_kernel_first_and_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYCL_CACHE_DIR", str(tmp_path))
    said = fused.prebuild("auto")
    assert said.startswith("compiled the fused augmentation kernel in ") and str(tmp_path) in said
    assert fused.prebuild("auto") is None and fused.prebuild("torch") is None  # built: nothing to say
    monkeypatch.setattr(fused, "_compiler", lambda: None)
    monkeypatch.setenv("RAYCL_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert fused.prebuild("auto").startswith("augmentation on this machine runs on torch ops, not the fused "
                                             "kernel (same views, slower): no C compiler found")
    assert "runs on torch ops" in fused.prebuild("fused", only_here=False)  # other nodes may have one
    with pytest.raises(ConfigError, match="augment.backend = 'fused' is not allowed: 'auto' or 'torch' on "
                                          "this machine: no C compiler found"):
        fused.prebuild("fused")


@needs_kernel
def test_blur_kernel_larger_than_the_view_is_refused(images32):
    with pytest.raises(ValueError, match="blur kernel 33 is too large for 16x16 views"):
        A.ViewPipeline([A.Crop(16), A.Blur(1.0, kernel_size=33)], backend="fused")(images32, gen())


def test_the_kernel_is_loaded_only_from_a_private_folder_with_its_recorded_digest(tmp_path, monkeypatch):
    import os
    import subprocess

    if fused._compiler() is None:
        pytest.skip("no C compiler")
    cache = tmp_path / "cache"
    path = fused.build(cache)
    record = path.with_suffix(".sha256")
    assert record.read_text() == fused._sha256(path)
    assert oct(cache.stat().st_mode & 0o777) == "0o700" and not path.stat().st_mode & 0o022

    compiled = []
    real_run = subprocess.run
    monkeypatch.setattr(fused.subprocess, "run", lambda *a, **k: compiled.append(a) or real_run(*a, **k))
    assert fused.build(cache) == path and not compiled  # trusted: reused as it is

    path.write_bytes(path.read_bytes() + b"\0")  # tampered with (or dropped there by someone else)
    assert fused.build(cache) == path and len(compiled) == 1  # rebuilt over, not loaded
    assert record.read_text() == fused._sha256(path)
    record.unlink()  # no digest recorded: not trusted either
    assert fused.build(cache) == path and len(compiled) == 2

    os.chmod(cache, 0o777)  # a shared, world-writable cache: refused, whatever it holds
    with pytest.raises(fused.FusedUnavailable, match="writable by other users.*RAYCL_CACHE_DIR"):
        fused.build(cache)
    os.chmod(cache, 0o700)
    if os.getuid() == 0:  # root can hand the folder to another user
        os.chown(cache, 65534, -1)
        with pytest.raises(fused.FusedUnavailable, match="belongs to another user"):
            fused.build(cache)
