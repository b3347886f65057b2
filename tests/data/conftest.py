"""Fixtures of the data tests: small procedural files and helpers to read them back."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

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


@pytest.fixture(scope="session")
def small_h5(tmp_path_factory: pytest.TempPathFactory) -> str:
    """288 procedural images; row ``i`` has the sources ``np.unravel_index(i, sizes)``."""
    path = tmp_path_factory.mktemp("data") / "small.h5"
    generate_procedural(path, SMALL_FACTORS)
    return str(path)


def row_ids(sources: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Row of each image of a factorial file, recovered from its sources."""
    return np.ravel_multi_index(np.asarray(sources).T, sizes)


def read_all(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The whole file, for comparisons."""
    with h5py.File(path, "r") as f:
        return f["images"][()], f["sources"][()]
