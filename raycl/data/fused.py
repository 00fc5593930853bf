"""The fused CPU kernel of the view pipelines (``_views.c``): build, load, run.

A :class:`~raycl.data.augment.views.ViewPipeline` whose ops are a
:class:`~raycl.data.augment.ops.Crop` followed by any of ``Color``, ``Grayscale``, ``Blur``,
``Solarize``, ``Flip`` (every named recipe: simclr, moco_v1, moco_v2, byol, swav and its small
crops) can run on uint8 CPU images through one C function that processes each image whole, in
cache, instead of one batch-wide torch pass per elementwise step.  The random parameters are still
drawn by the ops' own ``sample`` methods, in the same order and from the same generator as the
torch path (the kernel derives the crop's resampling taps from the sampled boxes itself, as
:func:`~raycl.data.augment.crop.resample_taps` does), so both paths give the same views (to the
last bit almost everywhere, within 1/255 always: tests/test_fused.py).

The C file is compiled on first use with the system C compiler (``$CC`` or ``cc``) into
``$RAYCL_CACHE_DIR`` (default ``~/.cache/raycl``), keyed by the source, the flags and the CPU,
and loaded with ctypes: ``-march=native`` code belongs to the CPU it was built on, and
``ray job submit --working-dir`` ships sources, not a built library, so each node builds its own.
A run's driver builds it before the run (:func:`prebuild`, one console line); a node's workers
build it at their first batch. Without a compiler the pipelines use the torch ops; they say so once
in the log.  Measured (bench/data_throughput.py): see the README's Benchmarks.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import math
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from raycl.checks import ConfigError
from raycl.data.augment.crop import size_pair
from raycl.data.augment.functional import blur_kernel_size
from raycl.data.augment.ops import Blur, Color, Crop, Flip, Grayscale, Solarize
from raycl.runtime import cache_dir

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_views.c")
# -ffp-contract=off: no fused multiply-adds, so the float32 arithmetic is the torch ops' own
# -fno-math-errno: lets floorf/rintf/fminf compile to single instructions
# -ffinite-math-only -fno-signed-zeros: no NaN, infinity or signed zero arises here (bytes / 255,
# finite weights and factors); they let a clamp compile to min/max instructions, not compare-and-blend
# -mprefer-vector-width=512: gcc and clang default to 256-bit vectors even where AVX-512 exists
# (a no-op on x86 CPUs without it; other architectures do not know the flag)
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-ffinite-math-only",
         "-fno-signed-zeros", "-std=gnu99", "-fPIC",
         "-shared", *(["-mprefer-vector-width=512"] if platform.machine() in ("x86_64", "AMD64") else [])]

_COLOR, _GRAY, _BLUR, _SOLARIZE, _FLIP = 1, 2, 3, 4, 5
_SUPPORTED_AFTER_CROP = (Color, Grayscale, Blur, Solarize, Flip)


class FusedUnavailable(RuntimeError):
    """The kernel could not be built or loaded here (no C compiler, unwritable cache...)."""


def _cpu_key() -> str:
    # -march=native code must not be reused on another CPU sharing the cache (NFS home)
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "model name", "Features", "CPU part")):
                flags += line
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        pass
    return platform.machine() + platform.system() + flags


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or shutil.which("gcc") or shutil.which("clang")


def build(directory: Path | None = None) -> Path:
    """Compile ``_views.c`` (once per source, flags and CPU) and return the shared library's path.

    The library is used only from a directory owned by this user and writable by no one else, and only
    while its SHA-256 matches the one recorded beside it when it was built here: a ``.so`` dropped into
    a shared ``$RAYCL_CACHE_DIR`` is never executed (it is rebuilt over, or refused)."""
    cc = _compiler()
    if cc is None:
        raise FusedUnavailable("no C compiler found (set $CC, or install gcc or clang)")
    directory = directory or cache_dir()
    target = _target(directory)
    record = target.with_suffix(".sha256")
    if target.exists() and _trusted(directory, target, record):
        return target
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private(directory)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
        os.close(fd)
    except OSError as exc:
        raise FusedUnavailable(f"cannot write the kernel cache {directory}: {exc} "
                               "(set $RAYCL_CACHE_DIR to a writable folder)") from exc
    try:
        done = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", tmp, "-lm"], capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0:
            raise FusedUnavailable(f"{cc} failed on {SOURCE.name}: {done.stderr.strip()[-2000:]}")
        os.chmod(tmp, 0o700)  # whatever the umask: no one else may write what we will execute
        digest = _sha256(Path(tmp))
        fd, tmp_record = tempfile.mkstemp(suffix=".sha256", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.write(digest)
        os.replace(tmp, target)  # atomic: concurrent builders (Ray actors) each write their own tmp
        os.replace(tmp_record, record)  # the digest of this build (another's is of identical bytes)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not _trusted(directory, target, record):
        raise FusedUnavailable(f"{target} changed while it was being built; not loading it")
    return target


def _target(directory: Path) -> Path:
    """Where the library for this source, these flags and this CPU lives in ``directory``."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu_key().encode()).hexdigest()
    return directory / f"raycl_views_{key[:16]}.so"


def prebuild(backend: str = "auto", only_here: bool = True) -> str | None:
    """Build the kernel in this process unless it is built for this CPU already: the line a run's
    driver prints about it (built, or why this machine's augmentation runs on torch ops), or None
    when there was nothing to do (or ``backend`` is ``"torch"``: ``augment.backend``). This machine's
    augmentation workers then load it; other nodes build their own at first use. ``"fused"`` without
    a kernel is a :class:`~raycl.checks.ConfigError` here, before any worker starts, when the run
    augments ``only_here`` (a one-node cluster: this one)."""
    if backend == "torch":
        return None
    directory, start = cache_dir(), time.perf_counter()
    target = _target(directory)
    try:
        was_built = target.exists() and _trusted(directory, target, target.with_suffix(".sha256"))
        path = build(directory)
    except FusedUnavailable as exc:
        if backend == "fused" and only_here:
            raise ConfigError("augment.backend", backend, f"'auto' or 'torch' on this machine: {exc}") from None
        return f"augmentation on this machine runs on torch ops, not the fused kernel (same views, slower): {exc}"
    if was_built:
        return None
    return (f"compiled the fused augmentation kernel in {time.perf_counter() - start:.1f} s "
            f"(once per CPU type): {path}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_private(path: Path) -> None:
    """Raise :class:`FusedUnavailable` unless ``path`` is owned by this user and not writable by others."""
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise FusedUnavailable(f"{path} belongs to another user (uid {st.st_uid}); raycl loads its compiled "
                               "kernel only from a folder of your own: set $RAYCL_CACHE_DIR")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise FusedUnavailable(f"{path} is writable by other users; raycl loads its compiled kernel only "
                               f"from a private folder: chmod go-w {path}, or set $RAYCL_CACHE_DIR")


def _trusted(directory: Path, target: Path, record: Path) -> bool:
    """Whether ``target`` may be loaded: a private folder and file, and the digest recorded at build
    time matches. An untrusted folder raises (rebuilding there would not help)."""
    _check_private(directory)
    try:
        _check_private(target)
        return record.is_file() and record.read_text().strip() == _sha256(target)
    except (FusedUnavailable, OSError):
        return False  # a file not ours, or no digest recorded: build it again over it


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The loaded kernel (built if needed); raises :class:`FusedUnavailable`."""
    path = build()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise FusedUnavailable(f"cannot load {path}: {exc}") from exc
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.raycl_views.argtypes = [p, i64, i64, i64, i64, i32, i32, i32, p, p, i32, i32, i32, i32,
                                p, p, p, p, p]
    lib.raycl_views.restype = i32
    f32 = ctypes.c_float
    lib.raycl_crop_taps.argtypes = [f32, f32, i32, i32, i32, p, p]
    lib.raycl_crop_taps.restype = i32
    lib.raycl_max_taps.argtypes, lib.raycl_max_taps.restype = [i32, i32], i32
    return lib


def crop_taps(start: float, length: float, out: int, antialias: bool, flip: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's resampling taps for one crop axis: int32 source indices and float32 weights
    ``[out, T]``, which it computes itself from the box (what
    :func:`~raycl.data.augment.crop.resample_taps` gives the torch ops)."""
    lib = library()
    size = out * lib.raycl_max_taps(math.ceil(length), out)
    idx, w = torch.zeros(size, dtype=torch.int32), torch.zeros(size, dtype=torch.float32)
    T = lib.raycl_crop_taps(start, length, out, int(antialias), int(flip), idx.data_ptr(), w.data_ptr())
    return idx[:out * T].view(out, T), w[:out * T].view(out, T)


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether the kernel builds and loads here (logs why not, once per process)."""
    try:
        library()
        return True
    except FusedUnavailable as exc:
        log.warning("raycl: the fused augmentation kernel is unavailable, using torch ops "
                    "(same views, slower): %s", exc)
        return False


def supports(ops) -> bool:
    """Whether a pipeline's ops can run fused: a Crop, then only fused ops."""
    return (len(ops) >= 1 and type(ops[0]) is Crop
            and all(type(op) in _SUPPORTED_AFTER_CROP for op in ops[1:]))


def _shape_only(n: int, h: int, w: int) -> torch.Tensor:
    # what op.sample reads of its input: the batch shape and device (no memory behind it)
    return torch.zeros(()).expand(n, 3, h, w)


def _program(ops, params: list[dict], n: int, oh: int, ow: int):
    """Op codes, int and float arguments and per-sample float32 parameter arrays for the C side."""
    codes, iargs, fargs, arrays = [], [], [], []
    for op, prm in zip(ops, params):
        if isinstance(op, Color):
            enabled = [v > 0 for v in (op.brightness, op.contrast, op.saturation, op.hue)]
            jitter = prm["jitter"] if (any(enabled) and op.p > 0) else torch.zeros(n, dtype=torch.bool)
            gray = prm["gray"] if op.gray_p > 0 else torch.zeros(n, dtype=torch.bool)
            arr = torch.cat([prm["factors"].float(), prm["order"].float(), jitter.float()[:, None],
                             gray.float()[:, None]], 1)
            code, iarg, farg = _COLOR, sum(1 << k for k, on in enumerate(enabled) if on), 0.0
        elif isinstance(op, Grayscale):
            arr, code, iarg, farg = prm["mask"].float()[:, None], _GRAY, 0, 0.0
        elif isinstance(op, Blur):
            k = op.kernel_size or blur_kernel_size(min(oh, ow))
            if k // 2 >= min(oh, ow):
                raise ValueError(f"blur kernel {k} is too large for {oh}x{ow} views (reflect padding)")
            arr = torch.stack([prm["mask"].float(), prm["sigma"].float()], 1)
            code, iarg, farg = _BLUR, k, 0.0
        elif isinstance(op, Solarize):
            arr, code, iarg, farg = prm["mask"].float()[:, None], _SOLARIZE, 0, op.threshold
        else:  # Flip
            arr, code, iarg, farg = prm["mask"].float()[:, None], _FLIP, 0, 0.0
        codes.append(code)
        iargs.append(iarg)
        fargs.append(farg)
        arrays.append(arr.contiguous())
    return codes, iargs, fargs, arrays


def _cat(samples: list[dict]) -> dict:
    """The per-chunk parameter dicts of one op as one dict over the whole batch."""
    return {k: torch.cat([d[k] for d in samples]) for k in samples[0]}


class _Job:
    """A batch's sampled parameters, ready for C calls on any slice of its images."""

    def __init__(self, images: torch.Tensor, ops, generator, chunk: int):
        B, _, H, W = images.shape
        crop = ops[0]
        oh, ow = size_pair(crop.size)
        crops, params = [], []
        for start in range(0, B, chunk):  # drawn chunk by chunk, in the torch path's order
            n = min(chunk, B - start)
            crops.append(crop.sample(_shape_only(n, H, W), generator))
            params.append([op.sample(_shape_only(n, oh, ow), generator) for op in ops[1:]])
        cp = _cat(crops)
        params = [_cat([p[k] for p in params]) for k in range(len(ops) - 1)]
        # the kernel computes each sample's resampling taps from its box (resample_taps in C)
        self.boxes = cp["boxes"].float().contiguous()
        self.flips = cp["flip"].float().contiguous()
        self.antialias = int(crop.antialias)
        self.images, self.H, self.W, self.oh, self.ow = images, H, W, oh, ow
        self.program = _program(ops[1:], params, B, oh, ow)
        self.out = torch.empty(B, 3, oh, ow, dtype=torch.uint8)

    def run(self, part: slice) -> None:
        """Views of images ``part`` into ``self.out[part]``."""
        codes, iargs, fargs, arrays = self.program
        n = len(codes)
        x = self.images[part]
        sB, _, sH, sW = x.stride()
        sC = x.stride(1)
        rc = library().raycl_views(
            x.data_ptr(), sB, sH, sW, sC, x.shape[0], self.H, self.W,
            self.boxes[part].data_ptr(), self.flips[part].data_ptr(), self.antialias, self.oh, self.ow, n,
            (ctypes.c_int32 * max(n, 1))(*codes), (ctypes.c_int32 * max(n, 1))(*iargs),
            (ctypes.c_float * max(n, 1))(*fargs),
            (ctypes.c_void_p * max(n, 1))(*[a[part].data_ptr() for a in arrays]),
            self.out[part].data_ptr())
        if rc != 0:
            raise MemoryError("raycl_views: out of memory") if rc == -1 else RuntimeError(
                f"raycl_views failed with code {rc}")


def run(ops, images: torch.Tensor, generator, chunk: int) -> torch.Tensor:
    """The views of uint8 NCHW CPU ``images`` (any strides) through ``ops``.

    Parameters are sampled chunk by chunk in order (as the torch path does, so both give the same
    views); the C calls then run on ``torch.get_num_threads()`` threads (ctypes releases the GIL),
    each on a share of the batch, straight into one output tensor."""
    job = _Job(images, ops, generator, chunk)
    B = images.shape[0]
    threads = min(torch.get_num_threads(), B)
    if threads > 1:
        step = -(-B // threads)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(job.run, [slice(i, i + step) for i in range(0, B, step)]))
    else:
        job.run(slice(0, B))
    return job.out
