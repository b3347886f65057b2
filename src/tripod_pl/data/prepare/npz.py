"""Streaming rows of one array stored in an ``.npz`` archive, without loading the array.

``np.load`` cannot memory-map an ``.npz`` member and would read MPI3D's 5.7 GB of images at once. An ``.npz``
is a zip of ``.npy`` files: we open the member as a stream (stored or deflated alike), parse the ``.npy``
header, and read it a block of rows at a time::

    with NpzRows("real3d_complicated_shapes_ordered.npz", "images") as arr:
        for start, block in arr.blocks(1024):
            ...
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from tripod_pl.data.layout import DatasetError


class NpzRows:
    """One array of an ``.npz`` file, read front to back in blocks of rows."""

    def __init__(self, path: str | os.PathLike[str], key: str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(self.path, "no such file")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DatasetError(self.path, f"not an .npz archive ({e})") from None
        names = [n.removesuffix(".npy") for n in self._zip.namelist()]
        if key not in names:
            self._zip.close()
            raise DatasetError(self.path, f"has no array '{key}' (arrays: {', '.join(names) or 'none'})")
        self.key = key
        self._stream: IO[bytes] = self._zip.open(f"{key}.npy")
        try:
            version = np.lib.format.read_magic(self._stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(self._stream)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(self._stream)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            self.close()
            raise DatasetError(self.path, f"array '{key}' is not a valid .npy member ({e})") from None
        if fortran and len(shape) > 1:
            self.close()
            raise DatasetError(self.path, f"array '{key}' is stored in Fortran order; only C order streams")
        if dtype.hasobject:
            self.close()
            raise DatasetError(self.path, f"array '{key}' holds Python objects")
        self.shape: tuple[int, ...] = tuple(int(s) for s in shape)
        self.dtype: np.dtype = dtype

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, block)`` for consecutive blocks of at most ``rows`` rows, front to back, read once."""
        row_shape = self.shape[1:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
        for start in range(0, self.shape[0], rows):
            n = min(rows, self.shape[0] - start)
            try:
                data = self._stream.read(n * row_bytes)
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise DatasetError(self.path, f"array '{self.key}' is truncated or corrupt ({e})") from None
            if len(data) != n * row_bytes:
                raise DatasetError(self.path, f"array '{self.key}' is truncated at row {start}")
            yield start, np.frombuffer(data, dtype=self.dtype).reshape(n, *row_shape)

    def close(self) -> None:
        """Closes the member stream and the archive."""
        if getattr(self, "_stream", None) is not None:
            self._stream.close()
        self._zip.close()

    def __enter__(self) -> NpzRows:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
