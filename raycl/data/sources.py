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
- ``cifar10``, ``cifar100``, ``stl10``: torchvision datasets on disk, downloaded only when asked to
  (:mod:`raycl.data.torchvision_sets`), held in memory as PNG.

Paths may be local or URIs that pyarrow's file systems read (``s3://``, ``gs://``, ``file://``).
Labels must be integers >= 0: a null or negative label is an error naming the file and the count.
Listed with ``labelled=False`` (``data.unlabelled``), a source's labels are not read at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from raycl.data import synthetic
from raycl.data.decode import encode_png
from raycl.data.listing import UNLABELLED, Listing, balanced_subset, check_labels, rows_table
from raycl.data.reading import FileReader, ParquetReader, TableReader
from raycl.data.synthetic import CLASS_NAMES, make_images
from raycl.data.torchvision_sets import SPLITS, TORCHVISION, DataUnavailableError, list_torchvision
from raycl.runtime import cache_dir

__all__ = ["SOURCES", "SPLITS", "DataUnavailableError", "class_names", "list_images", "load_table"]

log = logging.getLogger(__name__)

SOURCES = ("embedded", "parquet", "folder", "cifar10", "cifar100", "stl10")

# Default sizes of the embedded splits, and the first index of its test split
# (far beyond any train split, so the two never share an image).
EMBEDDED_DEFAULT_SIZES = {"train": 5000, "test": 1000}
EMBEDDED_TEST_OFFSET = 1_000_000_000

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
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
    labelled: bool = True,
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
        labelled: False lists the images without labels (all :data:`UNLABELLED`): a Parquet file
            then needs only its ``image`` column, and an image folder is every image under the
            split folder (or the root), at any depth, whatever the sub-folders are.

    Raises:
        ValueError: an argument is invalid (unknown source or split, missing path, a Parquet
            file without the needed columns, null or negative labels, an empty image folder, a
            test class the training split does not have, ...).
        DataUnavailableError: a torchvision dataset is not on disk and could not be downloaded.
    """
    _check_choice("source", source, SOURCES)
    allowed_splits = TORCHVISION[source].splits if source in TORCHVISION else SPLITS
    _check_choice("split", split, allowed_splits)
    if num_images is not None:
        _check_positive_int("num_images", num_images)
    if source == "embedded":
        listing = _list_embedded(split, image_size, num_images, seed)
        return listing if labelled else listing.unlabelled()
    if source == "parquet":
        listing = _list_parquet(_require_path(source, path), split, labelled)
    elif source == "folder":
        root = _require_path(source, path)
        listing = _list_folder(root, split) if labelled else _list_unlabelled_folder(root, split)
    else:
        listing = list_torchvision(source, split, path, download)
    if not labelled:
        listing = listing.unlabelled()
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
    if source in TORCHVISION:
        return TORCHVISION[source].classes
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


def _check_parquet_schema(file: str, schema: pa.Schema, labelled: bool = True) -> None:
    needed = ("image", "label") if labelled else ("image",)
    missing = [name for name in needed if name not in schema.names]
    if missing:
        hint = (" (data.unlabelled=true pre-trains on images without labels)"
                if missing == ["label"] else "")
        raise ValueError(
            f"path={file!r} is invalid: the Parquet file lacks column(s) {missing}; expected "
            f"{' and '.join(needed)}, found {schema.names}{hint}")
    image_type = schema.field("image").type
    if not (pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)):
        raise ValueError(f"path={file!r} is invalid: column 'image' has type {image_type}; expected binary")
    if not labelled:
        return
    label_type = schema.field("label").type
    if not pa.types.is_integer(label_type):
        raise ValueError(
            f"path={file!r} is invalid: column 'label' has type {label_type}; expected an integer")


def _list_parquet(path: str, split: str, labelled: bool = True) -> Listing:
    """One row per Parquet row: key ``<file name>#<row>``, chunk = row group; only the ``label``
    column is read (nothing but the metadata when not ``labelled``)."""
    files = _parquet_files(path, split)
    keys, labels, chunks, pos, file_of, groups = [], [], [], [], [], []
    for f, file in enumerate(files):
        parquet = _open_parquet(file)
        _check_parquet_schema(file, parquet.schema_arrow, labelled)
        name = file.rsplit("/", 1)[-1]
        if labelled:
            values = check_labels(parquet.read(columns=["label"]).column("label"), f"path={file!r}")
        else:
            values = np.full(parquet.metadata.num_rows, UNLABELLED, dtype=np.int64)
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
    return Listing(rows, reader, _parquet_class_names(files) if labelled else ())


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


def _list_unlabelled_folder(root: str, split: str) -> Listing:
    """Every image file under the split folder (or the root), at any depth, without labels."""
    split_root = _folder_split_root(root, split)
    fs, inner = _fs(split_root)
    base = inner.rstrip("/") + "/"
    keys = [info.path[len(base):] for info in _children(split_root, recursive=True)
            if info.type == pyarrow.fs.FileType.File and info.base_name.lower().endswith(IMAGE_EXTENSIONS)]
    if not keys:
        raise ValueError(f"path={split_root!r} is invalid: it holds no images with extension(s) "
                         f"{', '.join(IMAGE_EXTENSIONS)}")
    n = len(keys)
    return Listing(rows_table(keys, np.full(n, UNLABELLED), np.arange(n), np.zeros(n)),
                   FileReader(split_root), ())
