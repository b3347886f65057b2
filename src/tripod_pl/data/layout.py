"""The one HDF5 layout every dataset is trained from, and its validation (docs/data.md).

A dataset file holds:

- dataset ``images``: ``uint8``, ``N x H x W x 3``;
- dataset ``sources``: any integer dtype, ``N x K``, the index (``0 .. size-1``) of every source of every image;
- root attribute ``source_names``: ``K`` strings; root attribute ``source_sizes``: ``K`` positive integers.

``read_info`` checks all of that without reading an image and returns a ``DatasetInfo``; every problem is a
``DatasetError`` whose one-line message names the file and the problem::

    info = read_info("shapes3d.h5")
    info.num_images, info.image_shape, dict(zip(info.source_names, info.source_sizes))
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

IMAGES = "images"
SOURCES = "sources"
SOURCE_NAMES = "source_names"
SOURCE_SIZES = "source_sizes"

# Rows of ``sources`` checked per read when validating their range.
_CHECK_ROWS = 1 << 16


class DatasetError(Exception):
    """A dataset file or source folder is unusable; the message is one line naming the file and the problem."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str | None = None) -> None:
        if problem is None:  # DatasetError(message), as a DataLoader re-raises a worker's exception
            path, problem = None, str(path)
        problem = " ".join(str(problem).split())
        message = f"{os.fspath(path)}: {problem}" if path is not None else problem
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)
        self.problem = problem


@dataclass(frozen=True)
class DatasetInfo:
    """Summary of a dataset file in the layout above (what the rest of the code needs without images)."""

    path: str
    num_images: int
    image_shape: tuple[int, int, int]
    source_names: list[str] = field(default_factory=list)
    source_sizes: list[int] = field(default_factory=list)

    @property
    def num_sources(self) -> int:
        """K, the number of ground-truth sources (factors)."""
        return len(self.source_names)

    def describe(self) -> str:
        """A few human-readable lines (what ``tripod-data info`` prints)."""
        h, w, c = self.image_shape
        factors = " ".join(f"{n}={s}" for n, s in zip(self.source_names, self.source_sizes))
        grid = int(np.prod(self.source_sizes, dtype=np.int64)) if self.source_sizes else 0
        return "\n".join(
            [
                f"file:    {self.path}",
                f"images:  {self.num_images} x {h} x {w} x {c} uint8",
                f"sources: {self.num_sources} ({factors})",
                f"grid:    {grid} combinations of the sources",
            ]
        )


def open_hdf5(path: str | os.PathLike[str], **kwargs: object) -> h5py.File:
    """Opens ``path`` read-only, turning a missing, non-HDF5 or truncated file into a ``DatasetError``."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(p, "no such file")
    if p.is_dir():
        raise DatasetError(p, "is a directory, not an HDF5 file")
    try:
        # Readers never write: no HDF5 file locks (unsupported on some cluster file systems).
        return h5py.File(p, "r", locking=False, **kwargs)
    except OSError as e:
        detail = str(e).split("(", 1)[-1].rstrip(")") if "(" in str(e) else str(e)
        raise DatasetError(p, f"not a readable HDF5 file or truncated ({detail})") from None


def _decode_names(raw: object, path: Path) -> list[str]:
    values = np.atleast_1d(np.asarray(raw))
    if values.ndim != 1:
        raise DatasetError(path, f"attribute '{SOURCE_NAMES}' must be a list of strings")
    names = []
    for v in values:
        if isinstance(v, bytes | np.bytes_):
            v = v.decode("utf-8")
        if not isinstance(v, str | np.str_):
            raise DatasetError(path, f"attribute '{SOURCE_NAMES}' must be a list of strings, found {v!r}")
        names.append(str(v))
    if len(set(names)) != len(names):
        raise DatasetError(path, f"attribute '{SOURCE_NAMES}' has repeated names {names}")
    return names


def _decode_sizes(raw: object, path: Path) -> list[int]:
    values = np.atleast_1d(np.asarray(raw))
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise DatasetError(path, f"attribute '{SOURCE_SIZES}' must be a list of integers, found {raw!r}")
    sizes = [int(v) for v in values]
    if any(s < 1 for s in sizes):
        raise DatasetError(path, f"attribute '{SOURCE_SIZES}' must be positive, found {sizes}")
    return sizes


def _dataset(f: h5py.File, name: str, path: Path) -> h5py.Dataset:
    obj = f.get(name)
    if obj is None:
        raise DatasetError(path, f"missing dataset '{name}'")
    if not isinstance(obj, h5py.Dataset):
        raise DatasetError(path, f"'{name}' is not a dataset")
    return obj


def iter_row_blocks(num_rows: int, block_rows: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive row blocks covering ``0 .. num_rows``."""
    for start in range(0, num_rows, block_rows):
        yield start, min(start + block_rows, num_rows)


def check_source_range(
    sources: np.ndarray, sizes: list[int], names: list[str], path: str | os.PathLike[str], row0: int = 0
) -> None:
    """Raises a ``DatasetError`` naming the first source index outside ``0 .. size-1``."""
    bad = (sources < 0) | (sources >= np.asarray(sizes))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        value = int(sources[row, col])
        raise DatasetError(
            path,
            f"source '{names[col]}' has index {value} at row {row0 + row}, "
            f"outside its size {sizes[col]} (0..{sizes[col] - 1})",
        )


def read_info(path: str | os.PathLike[str], check_sources: bool = True) -> DatasetInfo:
    """Validates the layout of ``path`` and summarises it; never reads an image.

    Checks the datasets, shapes, dtypes and attributes; with ``check_sources`` also streams ``sources`` to
    check every index is in range of its size (cheap: a few bytes per image).
    """
    p = Path(path)
    with open_hdf5(p) as f:
        images = _dataset(f, IMAGES, p)
        sources = _dataset(f, SOURCES, p)
        for attr in (SOURCE_NAMES, SOURCE_SIZES):
            if attr not in f.attrs:
                raise DatasetError(p, f"missing root attribute '{attr}'")
        names = _decode_names(f.attrs[SOURCE_NAMES], p)
        sizes = _decode_sizes(f.attrs[SOURCE_SIZES], p)

        if images.ndim != 4 or images.shape[-1] != 3:
            raise DatasetError(p, f"dataset '{IMAGES}' must be N x H x W x 3, found shape {images.shape}")
        if images.dtype != np.uint8:
            raise DatasetError(p, f"dataset '{IMAGES}' must be uint8, found {images.dtype}")
        if sources.ndim != 2:
            raise DatasetError(p, f"dataset '{SOURCES}' must be N x K, found shape {sources.shape}")
        if not np.issubdtype(sources.dtype, np.integer):
            raise DatasetError(p, f"dataset '{SOURCES}' must be integer, found {sources.dtype}")
        n = images.shape[0]
        if sources.shape[0] != n:
            raise DatasetError(p, f"'{IMAGES}' has {n} rows but '{SOURCES}' has {sources.shape[0]}")
        if len(names) != len(sizes):
            raise DatasetError(p, f"{len(names)} source names but {len(sizes)} source sizes")
        if sources.shape[1] != len(names):
            raise DatasetError(p, f"dataset '{SOURCES}' has {sources.shape[1]} columns but {len(names)} source names")
        if n == 0:
            raise DatasetError(p, "holds no images")
        if check_sources:
            try:
                for start, stop in iter_row_blocks(n, _CHECK_ROWS):
                    check_source_range(sources[start:stop], sizes, names, p, row0=start)
            except OSError as e:
                raise DatasetError(p, f"cannot read '{SOURCES}' ({e})") from None
        h, w, c = (int(s) for s in images.shape[1:])
        return DatasetInfo(str(p), int(n), (h, w, c), names, sizes)


def image_chunk_rows(path: str | os.PathLike[str]) -> int | None:
    """Images per HDF5 chunk of ``images`` (``None`` for a contiguous dataset)."""
    with open_hdf5(path) as f:
        chunks = _dataset(f, IMAGES, Path(path)).chunks
    return None if chunks is None else int(chunks[0])
