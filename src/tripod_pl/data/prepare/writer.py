"""Atomic, streaming writing of dataset files in the layout of ``tripod_pl.data.layout``.

Rows are written in any number of consecutive batches into a hidden temporary file next to the target;
only a complete file is renamed into place (``tripod_pl.io``), so an interrupted run never leaves a file that
looks valid. Images are chunked in runs of ``chunk_rows`` whole images, which is what the streaming reader
reads (docs/data.md: contiguous blocks, never one-image chunks)::

    with DatasetWriter("out.h5", 1000, (64, 64, 3), ["shape", "scale"], [4, 250]) as w:
        for images, sources in batches:
            w.write(images, sources)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from tripod_pl.data.layout import (
    IMAGES,
    SOURCE_NAMES,
    SOURCE_SIZES,
    SOURCES,
    DatasetError,
    DatasetInfo,
    check_source_range,
)
from tripod_pl.io import publish, temporary_path

DEFAULT_CHUNK_ROWS = 64


def sources_dtype(sizes: list[int]) -> np.dtype:
    """The smallest unsigned dtype holding every index ``0 .. max(sizes)-1``."""
    top = max(sizes, default=1)
    for dt in (np.uint8, np.uint16, np.uint32):
        if top - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


class DatasetWriter:
    """Writes ``num_images`` rows in order, then atomically publishes the file on a clean ``close``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        num_images: int,
        image_shape: tuple[int, int, int],
        source_names: list[str],
        source_sizes: list[int],
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        self.path = Path(path)
        if len(source_names) != len(source_sizes):
            raise ValueError(f"{len(source_names)} source names but {len(source_sizes)} sizes")
        if len(set(source_names)) != len(source_names):
            raise ValueError(f"repeated source names {source_names}")
        if any(int(s) < 1 for s in source_sizes):
            raise ValueError(f"source sizes must be positive, got {source_sizes}")
        if num_images < 1:
            raise ValueError("a dataset needs at least one image")
        self.num_images = int(num_images)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.source_names = [str(n) for n in source_names]
        self.source_sizes = [int(s) for s in source_sizes]
        self.rows_written = 0
        if not self.path.parent.is_dir():
            raise DatasetError(self.path, "output directory does not exist")
        self._tmp = temporary_path(self.path)
        self._file: h5py.File | None = h5py.File(self._tmp, "w")
        chunk = max(1, min(int(chunk_rows), self.num_images))
        self._images = self._file.create_dataset(
            IMAGES, shape=(self.num_images, *self.image_shape), dtype=np.uint8, chunks=(chunk, *self.image_shape)
        )
        k = len(self.source_names)
        self._sources = self._file.create_dataset(
            SOURCES,
            shape=(self.num_images, k),
            dtype=sources_dtype(self.source_sizes),
            chunks=(max(1, min(self.num_images, 64 * chunk)), max(k, 1)),
        )
        self._file.attrs[SOURCE_NAMES] = np.array(self.source_names, dtype=h5py.string_dtype("utf-8"))
        self._file.attrs[SOURCE_SIZES] = np.array(self.source_sizes, dtype=np.int64)

    def write(self, images: np.ndarray, sources: np.ndarray) -> None:
        """Appends a batch of rows: ``images`` uint8 ``B x H x W x C``, ``sources`` integer ``B x K``."""
        if self._file is None:
            raise RuntimeError("writer is closed")
        images = np.asarray(images)
        sources = np.asarray(sources)
        b = images.shape[0]
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(f"images must be uint8 B x {self.image_shape}, got {images.dtype} {images.shape}")
        if sources.shape != (b, len(self.source_names)):
            raise ValueError(f"sources must be {b} x {len(self.source_names)}, got {sources.shape}")
        if self.rows_written + b > self.num_images:
            raise ValueError(f"more than the {self.num_images} rows announced")
        check_source_range(sources, self.source_sizes, self.source_names, self.path, row0=self.rows_written)
        stop = self.rows_written + b
        self._images[self.rows_written : stop] = images
        self._sources[self.rows_written : stop] = sources
        self.rows_written = stop

    def close(self) -> DatasetInfo:
        """Checks every row was written, then renames the temporary file onto ``path``."""
        if self._file is None:
            raise RuntimeError("writer is closed")
        if self.rows_written != self.num_images:
            self.abort()
            raise ValueError(f"{self.rows_written} rows written, {self.num_images} announced")
        self._file.close()
        self._file = None
        publish(self._tmp, self.path)
        h, w, c = self.image_shape
        return DatasetInfo(str(self.path), self.num_images, (h, w, c), self.source_names, self.source_sizes)

    def abort(self) -> None:
        """Closes and deletes the temporary file; ``path`` is left untouched."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_batches(
    path: str | os.PathLike[str],
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    num_images: int,
    image_shape: tuple[int, int, int],
    source_names: list[str],
    source_sizes: list[int],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> DatasetInfo:
    """Writes a dataset from ``(images, sources)`` batches that add up to ``num_images`` rows, atomically."""
    with DatasetWriter(path, num_images, image_shape, source_names, source_sizes, chunk_rows) as w:
        for images, sources in batches:
            w.write(images, sources)
    h, w_, c = image_shape
    return DatasetInfo(str(path), int(num_images), (h, w_, c), list(source_names), list(source_sizes))


def write_dataset(
    path: str | os.PathLike[str],
    images: np.ndarray,
    sources: np.ndarray,
    source_names: list[str],
    source_sizes: list[int],
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> DatasetInfo:
    """Writes whole arrays (``images`` uint8 ``N x H x W x 3``, ``sources`` ``N x K``) atomically."""
    images = np.asarray(images)
    h, w, c = images.shape[1:]
    return write_batches(
        path, [(images, np.asarray(sources))], images.shape[0], (h, w, c), source_names, source_sizes, chunk_rows
    )
