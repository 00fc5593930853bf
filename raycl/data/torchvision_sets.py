"""The torchvision datasets raycl reads (CIFAR-10, CIFAR-100, STL-10): listed from their files on
disk, downloaded only when asked to (with a bounded socket timeout), held in memory as PNG."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from raycl.data.decode import encode_png
from raycl.data.listing import Listing, check_labels, rows_table
from raycl.data.reading import TableReader
from raycl.runtime import cache_dir

SPLITS = ("train", "test")
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



class TorchvisionDataset(NamedTuple):
    class_name: str  # in torchvision.datasets
    display_name: str
    folder: str  # what torchvision extracts under its root
    classes: tuple[str, ...]
    splits: tuple[str, ...]


TORCHVISION = {
    "cifar10": TorchvisionDataset("CIFAR10", "CIFAR-10", "cifar-10-batches-py", CIFAR10_CLASSES, SPLITS),
    "cifar100": TorchvisionDataset("CIFAR100", "CIFAR-100", "cifar-100-python", CIFAR100_CLASSES, SPLITS),
    "stl10": TorchvisionDataset("STL10", "STL-10", "stl10_binary", STL10_CLASSES, SPLITS + ("unlabeled",)),
}

# Errors a failed or interrupted download can surface as.
_DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, http.client.HTTPException, tarfile.TarError)


class DataUnavailableError(RuntimeError):
    """A dataset is not on disk and could not (or was not allowed to) be downloaded."""


def list_torchvision(source: str, split: str, path: str | os.PathLike | None, download: bool) -> Listing:
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
    return Listing(rows, TableReader(table), TORCHVISION[source].classes)


def _open_torchvision(source: str, split: str, root: Path, download: bool):
    """Construct the torchvision dataset; DataUnavailableError if it is missing or cannot be fetched."""
    spec = TORCHVISION[source]
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
