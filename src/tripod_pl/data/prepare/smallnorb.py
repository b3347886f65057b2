"""SmallNORB (LeCun, Huang & Bottou, 2004) from its published binary matrices, training and testing merged.

Each split is three files in the NORB "binary matrix" format: a little-endian header ``int32 magic``,
``int32 ndim``, ``int32 dim[max(3, ndim)]`` (unused trailing dims are 1), then the C-order data.

- ``...-dat.mat``: byte matrix (magic ``0x1E3D4C55``), ``N x 2 x 96 x 96``, a stereo pair per row;
- ``...-cat.mat``: int32 matrix (magic ``0x1E3D4C54``), ``N``, the category 0..4;
- ``...-info.mat``: int32 matrix, ``N x 4``: instance, elevation 0..8, azimuth 0, 2, .., 34, lighting 0..5.

The training split holds instances 4, 6, 7, 8, 9 of every category and the testing split 0, 1, 2, 3, 5; merged
(as disentanglement_lib does) they are the full grid category 5 x instance 10 x elevation 9 x azimuth 18 x
lighting 6 = 48,600 images. Values become indices by rank (azimuth 2k -> k). The published rows are not in
grid order: they are sorted into it, and a combination occurring twice is an error. The first image of each
pair (camera 0, the left one, as disentanglement_lib) is kept and resized from 96 to 64 pixels by exact area
averaging (each output pixel is the mean of the 1.5 x 1.5 input pixels it covers, weights 2/3 and 1/3 at its
edges, rounded half up; PIL's box filter would average 2 pixels, then take 1, unevenly). The files are read
as published, gzipped (``.mat.gz``), or decompressed (``.mat``), front to back once; the resized left images
(200 MB) are held in memory to be written in grid order. The single channel is replicated to RGB by the
converter::

    n, batches = open_smallnorb(Path("smallnorb"), list(NAMES), list(SIZES), 1)
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import IO

import numpy as np

from tripod_pl.data.layout import DatasetError
from tripod_pl.data.prepare.factors import check_row_count, factorial_indices, values_to_indices
from tripod_pl.data.prepare.resize import TARGET_SIZE

NAMES = ("category", "instance", "elevation", "azimuth", "lighting")
SIZES = (5, 10, 9, 18, 6)
SPLITS = ("smallnorb-5x46789x9x18x6x2x96x96-training", "smallnorb-5x01235x9x18x6x2x96x96-testing")
BYTE_MAGIC = 0x1E3D4C55
INT_MAGIC = 0x1E3D4C54
_DTYPES = {BYTE_MAGIC: np.dtype(np.uint8), INT_MAGIC: np.dtype("<i4")}
_KINDS = {BYTE_MAGIC: "byte", INT_MAGIC: "int32"}
READ_ROWS = 1024

Batches = Generator[tuple[np.ndarray, np.ndarray], None, None]


def split_files(src: Path, split: str) -> tuple[Path, Path, Path]:
    """The ``-dat``, ``-cat`` and ``-info`` files of one split in folder ``src``."""
    return tuple(src / f"{split}-{kind}.mat" for kind in ("dat", "cat", "info"))  # type: ignore[return-value]


@dataclass(frozen=True)
class BinaryMatrix:
    """A NORB binary matrix file (``.mat``, or ``.mat.gz`` as downloaded): its element type, shape, data offset."""

    path: Path
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int

    def _open(self) -> IO[bytes]:
        return gzip.open(self.path, "rb") if self.path.suffix == ".gz" else open(self.path, "rb")

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, block)`` for consecutive blocks of at most ``rows`` rows, read front to back once."""
        row_shape = self.shape[1:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
        try:
            with self._open() as f:
                f.read(self.offset)
                for start in range(0, self.shape[0], rows):
                    n = min(rows, self.shape[0] - start)
                    data = f.read(n * row_bytes)
                    if len(data) != n * row_bytes:
                        raise DatasetError(self.path, f"truncated at row {start + len(data) // row_bytes}")
                    yield start, np.frombuffer(data, dtype=self.dtype).reshape(n, *row_shape)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(self.path, f"truncated or corrupt ({e})") from None

    def read(self) -> np.ndarray:
        """The whole matrix."""
        return np.concatenate([block for _, block in self.blocks(1 << 16)])


def _locate(path: Path) -> Path:
    """``path`` if it is a file, else its gzipped form ``path.gz`` as the publisher serves it."""
    if path.is_file():
        return path
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        return gz
    raise DatasetError(path, f"no such file (nor {gz.name})")


def read_header(path: Path, magic: int) -> BinaryMatrix:
    """Parses the header of ``path`` (or ``path.gz``), a matrix of type ``magic`` whose data must fill the file."""
    path = _locate(path)
    compressed = path.suffix == ".gz"
    try:
        with gzip.open(path, "rb") if compressed else open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise DatasetError(path, f"truncated: {len(head)} bytes, shorter than a binary matrix header")
            found, ndim = struct.unpack("<ii", head)
            if found != magic:
                raise DatasetError(
                    path,
                    f"not a NORB {_KINDS[magic]} matrix: magic number 0x{found & 0xFFFFFFFF:08X}, "
                    f"expected 0x{magic:08X}",
                )
            if not 1 <= ndim <= 16:
                raise DatasetError(path, f"header announces {ndim} dimensions")
            stored = max(3, ndim)
            raw = f.read(4 * stored)
            if len(raw) < 4 * stored:
                raise DatasetError(path, "truncated: shorter than its header")
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(path, f"not a readable {'gzip ' if compressed else ''}file ({e})") from None
    dims = struct.unpack(f"<{stored}i", raw)
    shape = tuple(int(d) for d in dims[:ndim])
    if any(d < 0 for d in shape):
        raise DatasetError(path, f"header announces negative dimensions {shape}")
    offset = 8 + 4 * stored
    dtype = _DTYPES[magic]
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    matrix = f"a {' x '.join(str(d) for d in shape)} {_KINDS[magic]} matrix takes {expected}"
    if compressed:  # the gzip trailer holds the decompressed size modulo 2^32: a cheap check before reading
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            size = struct.unpack("<I", f.read(4))[0]
        if size != expected % 2**32:
            raise DatasetError(path, f"truncated or corrupt: decompresses to {size} bytes (mod 2^32), {matrix}")
    else:
        size = path.stat().st_size
        if size != expected:
            what = "truncated" if size < expected else "longer than its header announces"
            raise DatasetError(path, f"{what}: {size} bytes, {matrix}")
    return BinaryMatrix(path, dtype, shape, offset)


def _open_split(src: Path, split: str) -> tuple[BinaryMatrix, np.ndarray]:
    """The ``dat`` matrix (``N x 2 x H x W``) and the ``N x 5`` factor values of one split."""
    dat_path, cat_path, info_path = split_files(src, split)
    dat = read_header(dat_path, BYTE_MAGIC)
    cat = read_header(cat_path, INT_MAGIC)
    info = read_header(info_path, INT_MAGIC)
    if len(dat.shape) != 4 or dat.shape[1] != 2:
        raise DatasetError(dat.path, f"must be an N x 2 x H x W matrix (stereo pairs), found {dat.shape}")
    n = dat.shape[0]
    if n == 0:
        raise DatasetError(dat.path, "holds no images")
    if cat.shape not in ((n,), (n, 1)):
        raise DatasetError(
            cat.path, f"must be a vector of {n} categories (the rows of the -dat file), found {cat.shape}"
        )
    if info.shape != (n, 4):
        raise DatasetError(
            info.path, f"must be an {n} x 4 matrix (instance, elevation, azimuth, lighting), found {info.shape}"
        )
    values = np.column_stack([cat.read().reshape(n), info.read()]).astype(np.int64)
    return dat, values


def grid_order(indices: np.ndarray, names: list[str], sizes: list[int], path: Path) -> np.ndarray:
    """The permutation putting rows in row-major grid order; every combination must occur exactly once."""
    check_row_count(len(indices), sizes, path, "images")
    linear = np.ravel_multi_index(tuple(indices.T), sizes)
    order = np.argsort(linear, kind="stable")
    repeated = np.flatnonzero(linear[order][1:] == linear[order][:-1])
    if repeated.size:
        first, second = sorted(int(r) for r in order[repeated[0] : repeated[0] + 2])
        combo = " ".join(f"{name}={int(i)}" for name, i in zip(names, indices[first]))
        raise DatasetError(
            path,
            f"the source indices {combo} occur twice (rows {first} and {second} of training then testing), "
            "so the images are not a full factorial grid",
        )
    return order


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Integer ``n_out x n_in`` overlaps: row ``i`` times ``g / n_in`` (``g = gcd``) are the exact area weights.

    In units of ``1 / (n_in n_out / g)``, output pixel ``i`` spans ``[i a, (i+1) a]`` with ``a = n_in / g`` and
    input pixel ``j`` spans ``[j b, (j+1) b]`` with ``b = n_out / g``; every row sums to ``a``.
    """
    g = gcd(n_in, n_out)
    a, b = n_in // g, n_out // g
    i = np.arange(n_out)[:, None]
    j = np.arange(n_in)[None, :]
    return np.clip(np.minimum((i + 1) * a, (j + 1) * b) - np.maximum(i * a, j * b), 0, None)


def area_resize(images: np.ndarray, size: int = TARGET_SIZE) -> np.ndarray:
    """Exact area resampling of uint8 ``N x H x W`` images to ``N x size x size``, rounded half up.

    The weighted sums are integers (small integer weights times pixels), exact in float64; the division by
    ``a_h a_w`` and the rounding are done in integers.
    """
    n, h, w = images.shape
    wh, ww = area_weights(h, size), area_weights(w, size)
    # two plain matrix products (one BLAS call each) instead of n small ones
    cols = images.reshape(n * h, w).astype(np.float64) @ ww.T.astype(np.float64)  # (n h) x size
    rows = cols.reshape(n, h, size).transpose(0, 2, 1).reshape(n * size, h) @ wh.T.astype(np.float64)
    total = np.rint(rows.reshape(n, size, size).transpose(0, 2, 1)).astype(np.int64)
    d = int(wh[0].sum()) * int(ww[0].sum())
    return ((2 * total + d) // (2 * d)).astype(np.uint8)


def open_smallnorb(src: Path, names: list[str], sizes: list[int], workers: int) -> tuple[int, Batches]:
    """Row count and ``(images N x 64 x 64 x 1, source indices)`` blocks in grid order, checked before any image."""
    if not src.is_dir():
        raise DatasetError(src, "no such directory (expected the folder of the six smallnorb-*.mat or .mat.gz files)")
    parts = [_open_split(src, split) for split in SPLITS]
    values = np.concatenate([values for _, values in parts])
    n = len(values)
    check_row_count(n, sizes, src, "images (training and testing)")
    indices = values_to_indices(values, names, sizes, src)
    order = grid_order(indices, names, sizes, src)

    def batches() -> Batches:
        left = np.empty((n, TARGET_SIZE, TARGET_SIZE), dtype=np.uint8)  # 200 MB for the published files
        offset = 0
        for dat, _ in parts:
            for start, block in dat.blocks(READ_ROWS):
                left[offset + start : offset + start + len(block)] = area_resize(block[:, 0])
            offset += dat.shape[0]
        for start in range(0, n, READ_ROWS):
            stop = min(start + READ_ROWS, n)
            yield left[order[start:stop], :, :, None], factorial_indices(start, stop, sizes)

    return n, batches()
