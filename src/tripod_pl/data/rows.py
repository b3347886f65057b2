"""Where rows are read from: the HDF5 file (one lazily opened handle per process) or RAM.

Both give the same two operations, so the streams above them don't care which:

- ``read_window(runs)``: the rows of some runs of consecutive rows, as a ``Window`` whose ``take`` copies rows
  (by position in the window) into an output batch;
- ``read_rows(rows)``: sorted, possibly scattered rows, read block by block (never one by one).

``HDF5Rows`` holds a path, not a handle: the handle is opened on first use in each process (a DataLoader
worker, after the fork) and is never pickled. ``MemoryRows`` holds the whole file in shared-memory tensors,
so DataLoader workers read the parent's copy whatever the start method::

    rows = HDF5Rows("data.h5")
    window = rows.read_window(runs)
    window.take(positions, out_images, out_sources)
"""

from __future__ import annotations

import os
from typing import Protocol

import h5py
import numpy as np
import torch

from tripod_pl.data.layout import IMAGES, SOURCES, DatasetError, open_hdf5
from tripod_pl.data.plan import Runs, rows_to_runs


class Window:
    """Rows ready to be copied into batches: a buffer, or whole in-memory arrays plus the window's rows."""

    def __init__(self, images: np.ndarray, sources: np.ndarray, rows: np.ndarray | None = None) -> None:
        self.images = images
        self.sources = sources
        self.rows = rows

    def take(self, positions: np.ndarray, out_images: np.ndarray, out_sources: np.ndarray) -> None:
        """Copies the window's rows at ``positions`` into ``out_images`` / ``out_sources`` (same length)."""
        index = positions if self.rows is None else self.rows[positions]
        np.take(self.images, index, axis=0, out=out_images)
        out_sources[...] = self.sources[index]


class RowSource(Protocol):
    """What the streams read from."""

    def read_window(self, runs: Runs) -> Window: ...

    def read_rows(self, rows: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]: ...


def _gather_sorted(source: RowSource, rows: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``rows`` read one span per block that holds any of them."""
    runs = rows_to_runs(rows, block_rows)
    images: list[np.ndarray] = []
    sources: list[np.ndarray] = []
    block = runs.start // block_rows
    cuts = np.flatnonzero(np.diff(block)) + 1
    for group in np.split(np.arange(len(block)), cuts):
        if len(group) == 0:
            continue
        lo, hi = int(runs.start[group[0]]), int(runs.stop[group[-1]])
        window = source.read_window(Runs(np.array([lo]), np.array([hi])))
        wanted = Runs(runs.start[group], runs.stop[group]).rows() - lo
        img = np.empty((len(wanted), *window.images.shape[1:]), dtype=np.uint8)
        src = np.empty((len(wanted), window.sources.shape[1]), dtype=np.int64)
        window.take(wanted, img, src)
        images.append(img)
        sources.append(src)
    return np.concatenate(images), np.concatenate(sources)


class HDF5Rows:
    """Rows of a dataset file, through one handle per process, opened on first use.

    A window returned by ``read_window`` is valid until the next call (its buffer is reused).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._pid: int | None = None
        self._file: h5py.File | None = None
        self._datasets_: tuple[h5py.Dataset, h5py.Dataset] | None = None
        self._buffer: tuple[np.ndarray, np.ndarray] | None = None

    def _datasets(self) -> tuple[h5py.Dataset, h5py.Dataset]:
        if self._datasets_ is None or self._pid != os.getpid():
            # A handle inherited through fork is never used: each process opens its own.
            # No chunk cache: block reads go straight from the file to our buffer.
            self._file = open_hdf5(self.path, rdcc_nbytes=0)
            self._pid = os.getpid()
            self._datasets_ = (self._file[IMAGES], self._file[SOURCES])
        return self._datasets_

    def read_window(self, runs: Runs) -> Window:
        images, sources = self._datasets()
        n = runs.total
        if self._buffer is None or len(self._buffer[0]) < n:
            # Reused from window to window: fresh pages would cost as much as the read itself.
            self._buffer = (
                np.empty((n, *images.shape[1:]), dtype=np.uint8),
                np.empty((n, sources.shape[1]), dtype=sources.dtype),
            )
        img, src = self._buffer[0][:n], self._buffer[1][:n]
        pos = 0
        for a, b in zip(runs.start.tolist(), runs.stop.tolist()):
            try:
                images.read_direct(img, np.s_[a:b], np.s_[pos : pos + b - a])
                sources.read_direct(src, np.s_[a:b], np.s_[pos : pos + b - a])
            except (OSError, ValueError) as e:
                raise DatasetError(self.path, f"cannot read rows {a}..{b - 1} ({e})") from None
            pos += b - a
        return Window(img, src)

    def read_rows(self, rows: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
        return _gather_sorted(self, rows, block_rows)

    def close(self) -> None:
        """Closes this process's handle (if it opened one)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None
        self._datasets_ = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_pid": None, "_file": None, "_datasets_": None, "_buffer": None}


class MemoryRows:
    """The whole dataset in RAM, in shared-memory tensors (DataLoader workers share the parent's copy)."""

    def __init__(self, images: torch.Tensor, sources: torch.Tensor) -> None:
        self.images = images
        self.sources = sources

    @classmethod
    def load(cls, path: str | os.PathLike[str], block_rows: int = 4096) -> MemoryRows:
        """Reads the whole file, block by block, into shared memory."""
        with open_hdf5(path) as f:
            images, sources = f[IMAGES], f[SOURCES]
            img = torch.empty(images.shape, dtype=torch.uint8).share_memory_()
            src = torch.empty(sources.shape, dtype=torch.int64).share_memory_()
            img_np, src_np = img.numpy(), src.numpy()
            for a in range(0, images.shape[0], block_rows):
                b = min(a + block_rows, images.shape[0])
                try:
                    images.read_direct(img_np, np.s_[a:b], np.s_[a:b])
                    src_np[a:b] = sources[a:b]
                except (OSError, ValueError) as e:
                    raise DatasetError(path, f"cannot read rows {a}..{b - 1} ({e})") from None
        return cls(img, src)

    def read_window(self, runs: Runs) -> Window:
        return Window(self.images.numpy(), self.sources.numpy(), runs.rows())

    def read_rows(self, rows: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
        index = np.asarray(rows, dtype=np.int64)
        return self.images.numpy()[index], self.sources.numpy()[index]
