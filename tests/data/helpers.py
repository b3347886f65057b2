"""Helpers of the data tests: the small procedural grid, reading files back, and hand-made layout files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from tripod_pl.data import generate_procedural

#: 2 x 2 x 2 x 2 x 3 x 3 x 2 = 288 images
SMALL_FACTORS = {
    "background_color": 2,
    "object_color": 2,
    "shape": 2,
    "scale": 2,
    "position_x": 3,
    "position_y": 3,
    "rotation": 2,
}
SMALL_SIZES = list(SMALL_FACTORS.values())

#: sources of the hand-made layout files of ``write_layout_file``
LAYOUT_NAMES = ["shape", "scale"]
LAYOUT_SIZES = [3, 4]


def write_small(path: str | Path) -> str:
    """Writes the 288 procedural images of ``SMALL_FACTORS``; row ``i`` has sources ``np.unravel_index(i, sizes)``."""
    generate_procedural(path, SMALL_FACTORS)
    return str(path)


def row_ids(sources: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Row of each image of a factorial file, recovered from its sources."""
    return np.ravel_multi_index(np.asarray(sources).T, sizes)


def read_all(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The whole file, for comparisons."""
    with h5py.File(path, "r", locking=False) as f:
        return f["images"][()], f["sources"][()]


def write_layout_file(path: Path, images=None, sources=None, names=LAYOUT_NAMES, sizes=LAYOUT_SIZES, skip=()) -> Path:
    """A 12-image file in the training layout, or malformed as asked: other arrays or attributes, or ``skip``
    some of ``images``, ``sources``, ``source_names``, ``source_sizes``."""
    n = 12
    images = np.zeros((n, 8, 8, 3), np.uint8) if images is None else images
    grid = np.stack(np.unravel_index(np.arange(n), LAYOUT_SIZES), 1).astype(np.uint8)
    sources = grid if sources is None else sources
    with h5py.File(path, "w") as f:
        if "images" not in skip:
            f["images"] = images
        if "sources" not in skip:
            f["sources"] = sources
        if "source_names" not in skip:
            f.attrs["source_names"] = names
        if "source_sizes" not in skip:
            f.attrs["source_sizes"] = sizes
    return path
