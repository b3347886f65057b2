"""dSprites (Matthey et al., 2017) from its published archive ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``.

The archive holds ``imgs`` (N x 64 x 64 uint8, pixels 0 or 1) and ``latents_classes`` (N x 6 integer: color,
shape, scale, orientation, position x, position y), rows in row-major order of those six factors. ``color``
has a single value in the published file: a constant is no source of variation, so it is dropped and the
file has five sources, shape 3, scale 6, orientation 40, position x 32, position y 32 (737,280 images). Pixels
become 0/255 and the single channel is replicated to RGB by the converter. ``imgs`` is streamed from the
archive; ``latents_classes`` (35 MB) is read whole. The ``metadata`` member (a pickle) is never loaded::

    n, batches = open_dsprites(Path("dsprites.npz"), list(NAMES), list(SIZES), 1)
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np

from tripod_pl.data.layout import DatasetError
from tripod_pl.data.prepare.factors import check_factorial_order, check_row_count, values_to_indices
from tripod_pl.data.prepare.npz import NpzRows

NAMES = ("shape", "scale", "orientation", "position_x", "position_y")
SIZES = (3, 6, 40, 32, 32)
IMAGES_KEY = "imgs"
CLASSES_KEY = "latents_classes"
#: columns of ``latents_classes``; the first is constant and dropped
CLASS_COLUMNS = ("color", *NAMES)
READ_ROWS = 1024

Batches = Generator[tuple[np.ndarray, np.ndarray], None, None]


def read_classes(src: Path) -> np.ndarray:
    """``latents_classes`` as an ``N x 6`` int64 array, checked: integer, six columns, ``color`` constant."""
    with NpzRows(src, CLASSES_KEY) as arr:
        if len(arr.shape) != 2 or arr.shape[1] != len(CLASS_COLUMNS) or not np.issubdtype(arr.dtype, np.integer):
            raise DatasetError(
                src, f"array '{CLASSES_KEY}' must be integer N x {len(CLASS_COLUMNS)}, found {arr.dtype} {arr.shape}"
            )
        blocks = [block for _, block in arr.blocks(1 << 16)]
    classes = np.concatenate(blocks).astype(np.int64) if blocks else np.empty((0, 6), np.int64)
    colors = np.unique(classes[:, 0])
    if len(colors) > 1:
        raise DatasetError(src, f"column 'color' of '{CLASSES_KEY}' must be constant, found {len(colors)} values")
    return classes


def _check_binary(block: np.ndarray, start: int, src: Path) -> None:
    bad = block > 1
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        value = int(block[bad][0])
        raise DatasetError(src, f"array '{IMAGES_KEY}' must hold 0/1 pixels, found {value} in image {start + row}")


def open_dsprites(src: Path, names: list[str], sizes: list[int], workers: int) -> tuple[int, Batches]:
    """Row count and ``(images N x 64 x 64 x 1 in {0, 255}, source indices)`` blocks, checked before any image."""
    with NpzRows(src, IMAGES_KEY) as arr:
        if len(arr.shape) != 3 or arr.dtype != np.uint8:
            raise DatasetError(src, f"array '{IMAGES_KEY}' must be uint8 N x H x W, found {arr.dtype} {arr.shape}")
        n = arr.shape[0]
    classes = read_classes(src)
    if len(classes) != n:
        raise DatasetError(src, f"'{IMAGES_KEY}' has {n} rows but '{CLASSES_KEY}' has {len(classes)}")
    check_row_count(n, sizes, src, "images")
    indices = values_to_indices(classes[:, 1:], names, sizes, src)
    check_factorial_order(indices, names, sizes, src)

    def batches() -> Batches:
        with NpzRows(src, IMAGES_KEY) as rows:
            for start, block in rows.blocks(READ_ROWS):
                _check_binary(block, start, src)
                yield (block * np.uint8(255))[..., None], indices[start : start + len(block)]

    return n, batches()
