"""Image sources, each listed as a :class:`~raycl.data.listing.Listing`: which images a split holds,
their labels and where to read them, without reading them.

- ``embedded``: the procedurally generated set of :mod:`raycl.data.synthetic` (no files, no network),
  held in memory;
- ``parquet``: Parquet files with an ``image`` (encoded bytes) and a ``label`` column: a file, a
  directory holding ``<split>.parquet`` or a ``<split>/`` directory of files, or a path containing
  ``{split}``; only the labels are read to list them, the images are read by row group later;
- ``folder``: an image folder laid out as ``<root>/[<split>/]<class_name>/<file>``; classes are
  numbered once, from the training split's class folders that hold images, and every split's
  folders are mapped by name;
- ``cifar10``, ``cifar100``, ``stl10``: torchvision datasets on disk (downloaded only when asked
  to), held in memory as PNG.

Paths may be local or URIs that pyarrow's file systems read (``s3://``, ``gs://``, ``file://``).
Labels must be integers >= 0: a null or negative label is an error naming the file and the count.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import socket
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from raycl.data import synthetic
from raycl.data.decode import encode_png
from raycl.data.listing import Listing, balanced_subset, check_labels, rows_table
from raycl.data.reading import FileReader, ParquetReader, TableReader
from raycl.data.synthetic import CLASS_NAMES, make_images
from raycl.runtime import cache_dir

__all__ = ["SOURCES", "SPLITS", "DataUnavailableError", "class_names", "list_images", "load_table"]

log = logging.getLogger(__name__)

SOURCES = ("embedded", "parquet", "folder", "cifar10", "cifar100", "stl10")
SPLITS = ("train", "test")

# Default sizes of the embedded splits, and the first index of its test split
# (far beyond any train split, so the two never share an image).
EMBEDDED_DEFAULT_SIZES = {"train": 5000, "test": 1000}
EMBEDDED_TEST_OFFSET = 1_000_000_000

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
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


def list_images(
    source: str,
    split: str,
    *,
    path: str | os.PathLike | None = None,
    image_size: int = 32,
    num_images: int | None = None,
    seed: int = 0,
    download: bool = False,
) -> Listing:
    """The :class:`~raycl.data.listing.Listing` of ``split`` of ``source``.

    Args:
        source: one of :data:`SOURCES`.
        split: ``"train"`` or ``"test"`` (``stl10`` also accepts ``"unlabeled"``, labelled -1).
        path: ``parquet``: a file, a directory holding ``<split>.parquet`` or ``<split>/*.parquet``,
            or a path containing ``{split}``; ``folder``: the image folder's root; torchvision
            sources: the dataset root (default ``<raycl.runtime.cache_dir()>/<source>``).
            Unused by ``embedded``.
        image_size: side of the generated images (``embedded`` only).
        num_images: ``embedded`` generates exactly that many (default 5000 for train, 1000 for
            test); other sources keep a class-balanced subset of that many, chosen by a seeded
            hash of each image's key.
        seed: ``embedded``: the generation seed; others: the seed of the subset.
        download: torchvision sources: download the data if missing (bounded socket timeout).

    Raises:
        ValueError: an argument is invalid (unknown source or split, missing path, a Parquet
            file without the needed columns, null or negative labels, an empty image folder, a
            test class the training split does not have, ...).
        DataUnavailableError: a torchvision dataset is not on disk and could not be downloaded.
    """
    _check_choice("source", source, SOURCES)
    allowed_splits = _TORCHVISION[source].splits if source in _TORCHVISION else SPLITS
    _check_choice("split", split, allowed_splits)
    if num_images is not None:
        _check_positive_int("num_images", num_images)
    if source == "embedded":
        return _list_embedded(split, image_size, num_images, seed)
    if source == "parquet":
        listing = _list_parquet(_require_path(source, path), split)
    elif source == "folder":
        listing = _list_folder(_require_path(source, path), split)
    else:
        listing = _list_torchvision(source, split, path, download)
    if num_images is None or num_images >= listing.num_rows:
        return listing
    return listing.take(balanced_subset(listing.rows.column("key"), listing.labels, num_images, seed))


def load_table(source: str, split: str, **kwargs) -> pa.Table:
    """The images of :func:`list_images` read into memory: ``image`` (encoded bytes) and ``label``
    (int64), in listing order. For small sets (previews, tests); runs stream them instead."""
    return list_images(source, split, **kwargs).read().select(["image", "label"])


def class_names(source: str, *, path: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Class names of ``source``, indexed by label.

    ``embedded``: :data:`raycl.data.synthetic.CLASS_NAMES`; torchvision sources: their published
    names; ``folder``: the training split's class folders that hold images (sorted); ``parquet``:
    the ``label_name`` column of the train files if present, else ``("0", "1", ..., str(max label))``.
    """
    _check_choice("source", source, SOURCES)
    if source == "embedded":
        return CLASS_NAMES
    if source in _TORCHVISION:
        return _TORCHVISION[source].classes
    root = _require_path(source, path)
    if source == "folder":
        return _folder_classes(root)
    return _parquet_class_names(_parquet_files(root, "train"))


# --------------------------------------------------------------------------------------------
# Argument checks and file systems
# --------------------------------------------------------------------------------------------


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is invalid; expected one of {', '.join(map(repr, allowed))}")


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= 1")


def _require_path(source: str, path: str | os.PathLike | None) -> str:
    """``path`` as a string (local paths made absolute), checked to exist unless it is a URI or a
    ``{split}`` pattern (checked once the split is substituted)."""
    if path is None:
        raise ValueError(f"path=None is invalid for source={source!r}; pass the location of the data")
    text = str(path)
    if "://" in text:
        return text.rstrip("/")
    resolved = str(Path(text).expanduser().resolve())
    if "{split}" not in text and not os.path.exists(resolved):
        raise ValueError(f"path={text!r} is invalid for source={source!r}: it does not exist")
    return resolved


def _fs(path: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The file system of ``path`` and the path within it."""
    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


def _kind(path: str) -> pyarrow.fs.FileType:
    fs, inner = _fs(path)
    return fs.get_file_info(inner).type


def _children(path: str, recursive: bool = False) -> list[pyarrow.fs.FileInfo]:
    """Entries under directory ``path`` (none of them hidden: no component starts with a dot)."""
    fs, inner = _fs(path)
    infos = fs.get_file_info(pyarrow.fs.FileSelector(inner, recursive=recursive))
    base = inner.rstrip("/") + "/"
    return sorted((i for i in infos
                   if not any(part.startswith(".") for part in i.path[len(base):].split("/"))),
                  key=lambda i: i.path)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


# --------------------------------------------------------------------------------------------
# Embedded
# --------------------------------------------------------------------------------------------


def _list_embedded(split: str, image_size: int, num_images: int | None, seed: int) -> Listing:
    """The embedded split, generated (or read from the disk cache) into memory."""
    table = _embedded_table(split, image_size, num_images, seed)
    n = table.num_rows
    rows = rows_table([str(i) for i in range(n)], table.column("label"), np.arange(n), np.arange(n))
    return Listing(rows, TableReader(table.select(["image"])), CLASS_NAMES)


def _embedded_table(split: str, image_size: int, num_images: int | None, seed: int) -> pa.Table:
    """The embedded split, from the disk cache when an identical one was made before: generating
    and encoding 4 000 images costs 1.5 s of CPU, which every trial of a sweep would pay again."""
    n = EMBEDDED_DEFAULT_SIZES[split] if num_images is None else num_images
    file = _embedded_cache_file(split, image_size, n, seed)
    with contextlib.suppress(OSError, pa.ArrowException):
        return pq.read_table(file)
    start = EMBEDDED_TEST_OFFSET if split == "test" else 0
    images, labels = make_images(n, seed=seed, image_size=image_size, start=start)
    table = pa.table({"image": pa.array(encode_png(images), type=pa.binary()),
                      "label": pa.array(labels, type=pa.int64())})
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


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


def _parquet_files(path: str, split: str) -> list[str]:
    """The Parquet files of ``split``: ``path`` itself (with ``{split}`` substituted) if it is a
    file, else ``<path>/<split>.parquet``, else the files of ``<path>/<split>/`` or of ``path``."""
    where = path.replace("{split}", split)
    kind = _kind(where)
    if kind == pyarrow.fs.FileType.File:
        return [where]
    candidates = [_join(where, f"{split}.parquet"), _join(where, split), where]
    for candidate in candidates if "{split}" not in path else [where]:
        kind = _kind(candidate)
        if kind == pyarrow.fs.FileType.File:
            return [candidate]
        if kind == pyarrow.fs.FileType.Directory:
            files = [_join(candidate, i.base_name) for i in _children(candidate)
                     if i.type == pyarrow.fs.FileType.File and i.base_name.endswith(".parquet")]
            if files:
                return files
    raise ValueError(f"path={path!r} is invalid for split={split!r}: found neither a Parquet file nor "
                     f"a directory of them at {', '.join(map(repr, candidates))}")


def _open_parquet(file: str) -> pq.ParquetFile:
    fs, inner = _fs(file)
    return pq.ParquetFile(inner, filesystem=fs)


def _check_parquet_schema(file: str, schema: pa.Schema) -> None:
    missing = [name for name in ("image", "label") if name not in schema.names]
    if missing:
        raise ValueError(
            f"path={file!r} is invalid: the Parquet file lacks column(s) {missing}; "
            f"expected 'image' (binary) and 'label' (integer), found {schema.names}")
    image_type, label_type = schema.field("image").type, schema.field("label").type
    if not (pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)):
        raise ValueError(f"path={file!r} is invalid: column 'image' has type {image_type}; expected binary")
    if not pa.types.is_integer(label_type):
        raise ValueError(
            f"path={file!r} is invalid: column 'label' has type {label_type}; expected an integer")


def _list_parquet(path: str, split: str) -> Listing:
    """One row per Parquet row: key ``<file name>#<row>``, chunk = row group; only the ``label``
    column is read."""
    files = _parquet_files(path, split)
    keys, labels, chunks, pos, file_of, groups = [], [], [], [], [], []
    for f, file in enumerate(files):
        parquet = _open_parquet(file)
        _check_parquet_schema(file, parquet.schema_arrow)
        name = file.rsplit("/", 1)[-1]
        column = parquet.read(columns=["label"]).column("label")
        values = check_labels(column, f"path={file!r}")
        offset = 0
        for g in range(parquet.metadata.num_row_groups):
            n = parquet.metadata.row_group(g).num_rows
            chunks.append(np.full(n, len(groups)))
            pos.append(np.arange(n))
            file_of.append(f)
            groups.append(g)
            offset += n
        keys.extend(f"{name}#{i}" for i in range(offset))
        labels.append(values)
    rows = rows_table(keys, np.concatenate(labels), np.concatenate(chunks), np.concatenate(pos))
    reader = ParquetReader(tuple(files), tuple(file_of), tuple(groups))
    return Listing(rows, reader, _parquet_class_names(files))


def _parquet_class_names(files: list[str]) -> tuple[str, ...]:
    labels, names = [], []
    for file in files:
        schema = _open_parquet(file).schema_arrow
        if "label" not in schema.names:
            raise ValueError(f"path={file!r} is invalid: the Parquet file has no 'label' column")
        columns = ["label", "label_name"] if "label_name" in schema.names else ["label"]
        fs, inner = _fs(file)
        table = pq.read_table(inner, columns=columns, filesystem=fs).group_by(columns).aggregate([])
        labels.append(table.column("label").to_numpy(zero_copy_only=False))
        if "label_name" in columns:
            names.extend(zip(labels[-1], table.column("label_name").to_pylist()))
    found = np.concatenate(labels) if labels else np.zeros(0)
    found = found[~np.isnan(found)] if found.dtype.kind == "f" else found
    if len(found) == 0:
        return ()
    result = [str(i) for i in range(int(found.max()) + 1)]
    for label, name in names:
        if label is not None and label == label and label >= 0 and name is not None:
            result[int(label)] = name
    return tuple(result)


# --------------------------------------------------------------------------------------------
# Image folder
# --------------------------------------------------------------------------------------------


def _folder_split_root(root: str, split: str) -> str:
    """``root/split`` if it exists, else ``root`` itself (which must then not be split)."""
    if _kind(_join(root, split)) == pyarrow.fs.FileType.Directory:
        return _join(root, split)
    present = [s for s in SPLITS if _kind(_join(root, s)) == pyarrow.fs.FileType.Directory]
    if present:
        raise ValueError(
            f"split={split!r} is invalid for path={root!r}: it has only split folder(s) {present}")
    return root


def _folder_images(split_root: str) -> dict[str, list[str]]:
    """``{class folder: [image paths relative to split_root]}``, for every class folder (empty ones
    included); hidden files and folders and non-image files are left out."""
    fs, inner = _fs(split_root)
    base = inner.rstrip("/") + "/"
    classes: dict[str, list[str]] = {}
    for info in _children(split_root, recursive=True):
        relative = info.path[len(base):]
        if "/" not in relative:
            if info.type == pyarrow.fs.FileType.Directory:
                classes.setdefault(relative, [])
            continue  # files beside the class folders belong to no class
        if info.type == pyarrow.fs.FileType.File and info.base_name.lower().endswith(IMAGE_EXTENSIONS):
            classes.setdefault(relative.split("/", 1)[0], []).append(relative)
    return classes


def _folder_classes(root: str) -> tuple[str, ...]:
    """The class names: the training split's class folders that hold at least one image."""
    split_root = _folder_split_root(root, "train")
    found = _folder_images(split_root)
    if not found:
        raise ValueError(f"path={split_root!r} is invalid: expected one sub-directory per class, found none")
    empty = sorted(c for c, files in found.items() if not files)
    if empty:
        log.warning("class folder(s) %s of %s hold no images and are not classes", empty, split_root)
    classes = tuple(sorted(c for c, files in found.items() if files))
    if not classes:
        raise ValueError(f"path={split_root!r} is invalid: its class folders hold no images with "
                         f"extension(s) {', '.join(IMAGE_EXTENSIONS)}")
    return classes


def _list_folder(root: str, split: str) -> Listing:
    """One row per image file (key: its path under the split folder), labelled by its class folder's
    name through the training split's class map."""
    classes = _folder_classes(root)
    split_root = _folder_split_root(root, split)
    found = _folder_images(split_root)
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(c for c, files in found.items() if files and c not in index)
    if unknown:
        raise ValueError(f"path={split_root!r} is invalid: class folder(s) {unknown} of split {split!r} "
                         f"are not classes of the training split ({', '.join(classes)})")
    keys = [file for name in sorted(found) if name in index for file in found[name]]
    if not keys:
        raise ValueError(f"path={split_root!r} is invalid: its class folders hold no images")
    labels = [index[key.split("/", 1)[0]] for key in keys]
    n = len(keys)
    return Listing(rows_table(keys, labels, np.arange(n), np.zeros(n)), FileReader(split_root), classes)


# --------------------------------------------------------------------------------------------
# torchvision datasets
# --------------------------------------------------------------------------------------------


def _list_torchvision(source: str, split: str, path: str | os.PathLike | None, download: bool) -> Listing:
    """The torchvision set's split, held in memory as PNG (its files are pickled arrays, not images)."""
    root = Path(path).expanduser() if path is not None else cache_dir() / source
    dataset = _open_torchvision(source, split, root, download)
    if source == "stl10":
        images, labels = dataset.data.transpose(0, 2, 3, 1), np.asarray(dataset.labels)
    else:
        images, labels = dataset.data, np.asarray(dataset.targets)
    n = len(labels)
    labels = labels.astype(np.int64) if split == "unlabeled" else check_labels(pa.array(labels), source)
    table = pa.table({"image": pa.array(encode_png(images), type=pa.binary())})
    rows = rows_table([str(i) for i in range(n)], labels, np.arange(n), np.arange(n))
    return Listing(rows, TableReader(table), _TORCHVISION[source].classes)


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
