"""Where runs and sweeps are stored: a local folder or an object-store URI (``s3://``, ``gs://``)."""

from __future__ import annotations

import os

import pyarrow.fs as pafs


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path within it)`` of a local path or a URI (``s3://...``, ``gs://...``)."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)
