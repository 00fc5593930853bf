"""Image sources, each loaded as a ``pyarrow.Table`` with columns ``image`` and ``label``.

``image`` holds encoded image bytes (binary): PNG for generated or in-memory
arrays, the file's own bytes for image folders and Parquet files.  ``label`` is
int64 (``-1`` for unlabelled images).  Sources:

- ``embedded``: the procedurally generated set of :mod:`raycl.data.synthetic`
  (no files, no network);
- ``parquet``: Parquet files with an ``image`` and a ``label`` column;
- ``folder``: an image folder laid out as ``<root>/[<split>/]<class_name>/<file>``;
- ``cifar10``, ``cifar100``, ``stl10``: torchvision datasets on disk, downloaded
  only when asked to.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import socket
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from raycl.data import synthetic
from raycl.data.synthetic import CLASS_NAMES, make_images
from raycl.runtime import cache_dir

__all__ = [
    "SOURCES",
    "SPLITS",
    "DataUnavailableError",
    "class_names",
    "decode_images",
    "encode_png",
    "load_table",
    "stratified_split",
]

SOURCES = ("embedded", "parquet", "folder", "cifar10", "cifar100", "stl10")
SPLITS = ("train", "test")

# Default sizes of the embedded splits, and the first index of its test split
# (far beyond any train split, so the two never share an image).
EMBEDDED_DEFAULT_SIZES = {"train": 5000, "test": 1000}
EMBEDDED_TEST_OFFSET = 1_000_000_000

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DOWNLOAD_TIMEOUT_S = 20.0

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
CIFAR100_CLASSES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
    camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
    dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
    leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
    otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road
    rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower
    sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale
    willow_tree wolf woman worm""".split()
)



class _TorchvisionDataset(NamedTuple):
    class_name: str  # in torchvision.datasets
    display_name: str
    folder: str  # what torchvision extracts under its root
    classes: tuple[str, ...]
    splits: tuple[str, ...]


_TORCHVISION = {
    "cifar10": _TorchvisionDataset("CIFAR10", "CIFAR-10", "cifar-10-batches-py", CIFAR10_CLASSES, SPLITS),
    "cifar100": _TorchvisionDataset("CIFAR100", "CIFAR-100", "cifar-100-python", CIFAR100_CLASSES, SPLITS),
    "stl10": _TorchvisionDataset("STL10", "STL-10", "stl10_binary", STL10_CLASSES, SPLITS + ("unlabeled",)),
}

# Errors a failed or interrupted download can surface as.
_DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, http.client.HTTPException, tarfile.TarError)


class DataUnavailableError(RuntimeError):
    """A dataset is not on disk and could not (or was not allowed to) be downloaded."""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_table(
    source: str,
    split: str,
    *,
    path: str | os.PathLike | None = None,
    image_size: int = 32,
    num_images: int | None = None,
    seed: int = 0,
    download: bool = False,
) -> pa.Table:
    """Load ``split`` of ``source`` as a table with columns ``image`` (binary) and ``label`` (int64).

    Args:
        source: one of :data:`SOURCES`.
        split: ``"train"`` or ``"test"`` (``stl10`` also accepts ``"unlabeled"``, labelled -1).
        path: ``parquet``: a ``.parquet`` file, a directory holding ``<split>.parquet``, or a
            path containing ``{split}``; ``folder``: the image folder's root; torchvision
            sources: the dataset root (default ``<raycl.runtime.cache_dir()>/<source>``).
            Unused by ``embedded``.
        image_size: side of the generated images (``embedded`` only).
        num_images: keep only the first ``num_images`` rows; ``embedded`` generates exactly
            that many (default 5000 for train, 1000 for test).
        seed: ``embedded``: the generation seed; ``folder``: seed of the row order.
        download: torchvision sources: download the data if missing (bounded socket timeout).

    Raises:
        ValueError: an argument is invalid (unknown source or split, missing path, a Parquet
            file without the needed columns, an empty image folder, ...).
        DataUnavailableError: a torchvision dataset is not on disk and could not be downloaded.
    """
    _check_choice("source", source, SOURCES)
    allowed_splits = _TORCHVISION[source].splits if source in _TORCHVISION else SPLITS
    _check_choice("split", split, allowed_splits)
    if num_images is not None:
        _check_positive_int("num_images", num_images)
    if source == "embedded":
        return _load_embedded(split, image_size, num_images, seed)
    if source == "parquet":
        table = _load_parquet(_parquet_file(_require_path(source, path), split))
    elif source == "folder":
        table = _load_folder(_require_path(source, path), split, seed)
    else:
        table = _load_torchvision(source, split, path, num_images, download)
    return table if num_images is None else table.slice(0, num_images)


def class_names(source: str, *, path: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Best-effort class names of ``source``, indexed by label.

    ``embedded``: :data:`raycl.data.synthetic.CLASS_NAMES`; torchvision sources: their
    published names; ``folder``: the class sub-directory names (sorted); ``parquet``: the
    ``label_name`` column of the train file if present, else ``("0", "1", ..., str(max label))``.
    """
    _check_choice("source", source, SOURCES)
    if source == "embedded":
        return CLASS_NAMES
    if source in _TORCHVISION:
        return _TORCHVISION[source].classes
    root = _require_path(source, path)
    if source == "folder":
        return tuple(cls.name for cls in _class_dirs(_folder_split_root(root, "train")))
    return _parquet_class_names(_parquet_file(root, "train"))


def decode_images(images, size: int) -> np.ndarray:
    """Decode images to a uint8 RGB array ``[n, size, size, 3]``.

    ``images`` is a sequence (list, numpy object array, pyarrow array, pandas Series) of
    encoded image bytes, or an already decoded uint8 array ``[n, H, W, 3]``.  An image that
    is not ``size x size`` has its shorter side resized to ``size`` (bilinear, antialiased)
    and is centre-cropped.  Correctly sized decoded arrays are returned without a copy.
    """
    _check_positive_int("size", size)
    if isinstance(images, np.ndarray) and images.dtype != object:
        return _resize_array(images, size)
    if isinstance(images, (pa.Array, pa.ChunkedArray)):
        images = images.to_pylist()
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, data in enumerate(images):
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (size, size))  # cheap JPEG downscaling; never below size
            out[i] = np.asarray(_fit(img.convert("RGB") if img.mode != "RGB" else img, size))
    return out


def encode_png(images: np.ndarray) -> list[bytes]:
    """Encode a uint8 array ``[n, H, W, 3]`` as a list of PNG bytes (lossless)."""
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
        encoded.append(buffer.getvalue())
    return encoded


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0 .. len(labels) - 1`` into sorted, disjoint ``(train_idx, val_idx)``.

    For each class with ``n_c`` examples, ``round(n_c * val_fraction)`` (rounded half up)
    randomly chosen ones go to val, at least one when ``val_fraction > 0`` and ``n_c >= 2``,
    and at most ``n_c - 1`` so that every class keeps a train example.  The choice depends
    only on ``labels``, ``val_fraction`` and ``seed``.

    Raises:
        ValueError: ``val_fraction`` is not in ``[0, 1)`` or ``labels`` is not one-dimensional.
    """
    if not isinstance(val_fraction, (int, float, np.floating)) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} is invalid; expected a number in [0, 1)")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels has shape {labels.shape}; expected a one-dimensional array")
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        is_val[rng.choice(members, _num_val(len(members), val_fraction), replace=False)] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is invalid; expected one of {', '.join(map(repr, allowed))}")


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= 1")


def _require_path(source: str, path: str | os.PathLike | None) -> Path:
    """The existing path that ``source`` needs, or ValueError."""
    if path is None:
        raise ValueError(f"path=None is invalid for source={source!r}; pass the location of the data")
    resolved = Path(path).expanduser()
    is_pattern = source == "parquet" and "{split}" in str(path)  # checked once the split is substituted
    if not is_pattern and not resolved.exists():
        raise ValueError(f"path={str(path)!r} is invalid for source={source!r}: it does not exist")
    return resolved


def _num_val(count: int, val_fraction: float) -> int:
    """How many of a class's ``count`` examples go to the validation split."""
    if count < 2 or val_fraction == 0:
        return 0
    return min(max(int(np.floor(count * val_fraction + 0.5)), 1), count - 1)


# --------------------------------------------------------------------------------------------
# Embedded
# --------------------------------------------------------------------------------------------


def _load_embedded(split: str, image_size: int, num_images: int | None, seed: int) -> pa.Table:
    """The embedded split, from the disk cache when an identical one was made before: generating
    and encoding 4 000 images costs 1.5 s of CPU, which every trial of a sweep would pay again."""
    n = EMBEDDED_DEFAULT_SIZES[split] if num_images is None else num_images
    file = _embedded_cache_file(split, image_size, n, seed)
    with contextlib.suppress(OSError, pa.ArrowException):
        return pq.read_table(file)
    start = EMBEDDED_TEST_OFFSET if split == "test" else 0
    images, labels = make_images(n, seed=seed, image_size=image_size, start=start)
    table = _table(encode_png(images), labels)
    with contextlib.suppress(OSError):  # a read-only home only loses the cache
        file.parent.mkdir(parents=True, exist_ok=True)
        part = file.with_name(f"{file.name}.{os.getpid()}.part")
        pq.write_table(table, part)
        os.replace(part, file)  # atomic: a reader never sees half a file
    return table


def _embedded_cache_file(split: str, image_size: int, n: int, seed: int) -> Path:
    """The cache file of one embedded split, named by its parameters and by the generator's source,
    so that a changed generator never reads images made by an older one."""
    code = hashlib.sha256(Path(synthetic.__file__).read_bytes() + b"png, compress_level=1")
    return (cache_dir() / "embedded" /
            f"{split}-{image_size}px-{n}-seed{seed}-{code.hexdigest()[:12]}.parquet")


def _table(images: list[bytes], labels: Sequence[int] | np.ndarray) -> pa.Table:
    return pa.table({"image": pa.array(images, type=pa.binary()), "label": pa.array(labels, type=pa.int64())})


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


def _parquet_file(path: Path, split: str) -> Path:
    """Resolve a Parquet ``path`` (file, directory or ``{split}`` pattern) for ``split``."""
    if "{split}" in str(path):
        file = Path(str(path).replace("{split}", split))
    elif path.is_dir():
        file = path / f"{split}.parquet"
    else:
        file = path
    if not file.is_file():
        raise ValueError(f"path={str(path)!r} is invalid for split={split!r}: {str(file)!r} is not a file")
    return file


def _load_parquet(file: Path) -> pa.Table:
    """Read the ``image`` and ``label`` columns of ``file``, checking their types."""
    schema = pq.read_schema(file)
    missing = [name for name in ("image", "label") if name not in schema.names]
    if missing:
        raise ValueError(
            f"path={str(file)!r} is invalid: the Parquet file lacks column(s) {missing}; "
            f"expected 'image' (binary) and 'label' (integer), found {schema.names}"
        )
    image_type, label_type = schema.field("image").type, schema.field("label").type
    if not (pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)):
        raise ValueError(
            f"path={str(file)!r} is invalid: column 'image' has type {image_type}; expected binary"
        )
    if not pa.types.is_integer(label_type):
        raise ValueError(
            f"path={str(file)!r} is invalid: column 'label' has type {label_type}; expected an integer"
        )
    table = pq.read_table(file, columns=["image", "label"])
    return table.cast(pa.schema([("image", pa.binary()), ("label", pa.int64())]))


def _parquet_class_names(file: Path) -> tuple[str, ...]:
    names = pq.read_schema(file).names
    if "label" not in names:
        raise ValueError(f"path={str(file)!r} is invalid: the Parquet file has no 'label' column")
    columns = ["label", "label_name"] if "label_name" in names else ["label"]
    table = pq.read_table(file, columns=columns).group_by(columns).aggregate([])
    labels = table.column("label").to_numpy()
    if len(labels) == 0:
        return ()
    result = [str(i) for i in range(int(labels.max()) + 1)]
    if "label_name" in columns:
        for label, name in zip(labels, table.column("label_name").to_pylist()):
            if label >= 0 and name is not None:
                result[label] = name
    return tuple(result)


# --------------------------------------------------------------------------------------------
# Image folder
# --------------------------------------------------------------------------------------------


def _folder_split_root(root: Path, split: str) -> Path:
    """``root/split`` if it exists, else ``root`` itself (which must then not be split)."""
    if (root / split).is_dir():
        return root / split
    present = [s for s in SPLITS if (root / s).is_dir()]
    if present:
        raise ValueError(
            f"split={split!r} is invalid for path={str(root)!r}: it has only split folder(s) {present}"
        )
    return root


def _class_dirs(root: Path) -> list[Path]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"path={str(root)!r} is invalid: expected one sub-directory per class, found none")
    return classes


def _image_files(class_dir: Path) -> Iterator[Path]:
    return (p for p in sorted(class_dir.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _load_folder(root: Path, split: str, seed: int) -> pa.Table:
    """Read ``root/[split/]<class>/<image>``; rows in a seeded random order (class-balanced prefixes)."""
    split_root = _folder_split_root(root, split)
    files = [(file, label) for label, cls in enumerate(_class_dirs(split_root)) for file in _image_files(cls)]
    if not files:
        raise ValueError(
            f"path={str(split_root)!r} is invalid: its class folders hold no images with extension(s) "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    order = np.random.default_rng(seed).permutation(len(files))
    return _table([files[i][0].read_bytes() for i in order], [files[i][1] for i in order])


# --------------------------------------------------------------------------------------------
# torchvision datasets
# --------------------------------------------------------------------------------------------


def _load_torchvision(
    source: str, split: str, path: str | os.PathLike | None, num_images: int | None, download: bool
) -> pa.Table:
    root = Path(path).expanduser() if path is not None else cache_dir() / source
    dataset = _open_torchvision(source, split, root, download)
    if source == "stl10":
        images, labels = dataset.data.transpose(0, 2, 3, 1), np.asarray(dataset.labels)
    else:
        images, labels = dataset.data, np.asarray(dataset.targets)
    images, labels = images[:num_images], labels[:num_images]
    return _table(encode_png(images), labels)


def _open_torchvision(source: str, split: str, root: Path, download: bool):
    """Construct the torchvision dataset; DataUnavailableError if it is missing or cannot be fetched."""
    spec = _TORCHVISION[source]
    missing = DataUnavailableError(
        f"{spec.display_name} (split {split!r}) was not found under {str(root)!r} "
        f"(looked for the torchvision folder {spec.folder!r}). Pass download=True to fetch it "
        f"with torchvision (needs network access), point path= at a directory containing "
        f"{spec.folder!r}, or use source='parquet' or 'embedded' instead."
    )
    if not download and not (root / spec.folder).is_dir():
        raise missing  # fail before the slow torchvision import
    import torchvision.datasets  # deferred: slow to import and only needed here

    dataset_cls = getattr(torchvision.datasets, spec.class_name)
    kwargs = {"split": split} if source == "stl10" else {"train": split == "train"}
    try:
        return dataset_cls(str(root), download=False, **kwargs)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        if not download:
            raise missing from error
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return dataset_cls(str(root), download=True, **kwargs)
    except _DOWNLOAD_ERRORS as error:
        raise DataUnavailableError(
            f"{spec.display_name} (split {split!r}) is not under {str(root)!r} and downloading it failed: "
            f"{type(error).__name__}: {error}. Download it on a machine with network access into "
            f"{str(root)!r} (folder {spec.folder!r}), or use source='parquet' or 'embedded' instead."
        ) from error


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Temporarily set the default socket timeout, so that a stalled download fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


# --------------------------------------------------------------------------------------------
# Decoding helpers
# --------------------------------------------------------------------------------------------


def _fit(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side of ``img`` to ``size`` and centre-crop it to ``size x size``."""
    width, height = img.size
    if width == height == size:
        return img
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


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
        out[i] = np.asarray(_fit(Image.fromarray(image), size))
    return out
