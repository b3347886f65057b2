"""Factor values to source indices, and the check that rows form the documented full-factorial grid.

Published datasets label each image with the *values* of its factors (a hue, a scale, an angle...). The
index of a value is its rank among the sorted unique values of that factor. A dataset is usable only if
its rows are the full factorial grid in row-major order of the documented factors, i.e. row ``i`` has
indices ``np.unravel_index(i, sizes)``; anything else is an error naming the factor::

    indices = values_to_indices(labels, names, sizes, "3dshapes.h5")
    check_factorial_order(indices, names, sizes, "3dshapes.h5")
"""

from __future__ import annotations

import os

import numpy as np

from tripod_pl.data.layout import DatasetError


def grid_size(sizes: list[int]) -> int:
    """Number of rows of the full factorial grid."""
    return int(np.prod(np.asarray(sizes, dtype=np.int64)))


def check_row_count(num_rows: int, sizes: list[int], path: str | os.PathLike[str], what: str = "rows") -> None:
    """The grid must have exactly ``num_rows`` rows."""
    expected = grid_size(sizes)
    if num_rows != expected:
        product = " x ".join(str(s) for s in sizes)
        raise DatasetError(
            path,
            f"has {num_rows} {what}, but the factor sizes {product} make {expected} (use --factor-sizes for a subset)",
        )


def values_to_indices(
    values: np.ndarray, names: list[str], sizes: list[int], path: str | os.PathLike[str]
) -> np.ndarray:
    """Maps every column of factor values (``N x K``) to the rank of the value among its sorted unique ones."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise DatasetError(path, f"labels must be N x {len(names)}, found shape {values.shape}")
    if not np.issubdtype(values.dtype, np.number):
        raise DatasetError(path, f"labels must be numeric, found {values.dtype}")
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise DatasetError(path, "labels contain NaN or infinite values")
    indices = np.empty(values.shape, dtype=np.int64)
    for k, (name, size) in enumerate(zip(names, sizes)):
        unique, inverse = np.unique(values[:, k], return_inverse=True)
        if len(unique) != size:
            raise DatasetError(path, f"factor '{name}' has {len(unique)} distinct values, expected {size}")
        indices[:, k] = inverse.reshape(-1)
    return indices


def check_factorial_order(
    indices: np.ndarray, names: list[str], sizes: list[int], path: str | os.PathLike[str]
) -> None:
    """Row ``i`` must hold ``np.unravel_index(i, sizes)``; reports the first row and factor that differ."""
    check_row_count(indices.shape[0], sizes, path)
    expected = factorial_indices(0, indices.shape[0], sizes)
    wrong = indices != expected
    if wrong.any():
        row, col = (int(i) for i in np.argwhere(wrong)[0])
        raise DatasetError(
            path,
            f"rows are not the full factorial grid in the documented order: row {row} has factor "
            f"'{names[col]}' at index {int(indices[row, col])}, expected {int(expected[row, col])}",
        )


def factorial_indices(start: int, stop: int, sizes: list[int]) -> np.ndarray:
    """Source indices of rows ``start .. stop-1`` of the row-major full factorial grid (``n x K`` int64)."""
    rows = np.arange(start, stop, dtype=np.int64)
    return np.stack(np.unravel_index(rows, sizes), axis=1).astype(np.int64)
