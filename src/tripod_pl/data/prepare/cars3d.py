"""Cars3D (Reed et al., 2015) from its published per-car MATLAB files ``car_001_mesh.mat`` ... (183 cars).

Each file holds ``im``, uint8 ``128 x 128 x 3 x 24 x 4``: height, width, RGB, azimuth (24 views around the
car), elevation (4). The object index of a car is the rank of its file name among the sorted ``*.mat`` names
of the folder. Sources, as disentanglement_lib orders them: elevation 4, azimuth 24, object 183 (17,568
images), row-major, so the object varies fastest: every file is needed for each view, and the images, resized
to 64x64 file by file, are held in memory (216 MB) before writing. Reading ``.mat`` uses ``scipy.io.loadmat``
(scipy comes with scikit-learn)::

    n, batches = open_cars3d(Path("cars"), list(NAMES), list(SIZES), 1)
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import numpy as np

from tripod_pl.data.layout import DatasetError
from tripod_pl.data.prepare.factors import factorial_indices
from tripod_pl.data.prepare.resize import TARGET_SIZE, resize_images

NAMES = ("elevation", "azimuth", "object")
SIZES = (4, 24, 183)
KEY = "im"
READ_ROWS = 1024

Batches = Generator[tuple[np.ndarray, np.ndarray], None, None]


def car_files(src: Path) -> list[Path]:
    """The ``.mat`` files of folder ``src``, sorted by name (the object order)."""
    if not src.is_dir():
        raise DatasetError(src, "no such directory (expected the folder of the car_*_mesh.mat files)")
    return sorted(p for p in src.iterdir() if p.suffix == ".mat" and p.is_file())


def load_car(path: Path, elevations: int, azimuths: int) -> np.ndarray:
    """The renderings of one car as uint8 ``elevation x azimuth x H x W x 3``."""
    from scipy.io import loadmat  # imported here: only this converter needs scipy

    try:
        mat = loadmat(path, variable_names=[KEY])
    except Exception as e:  # noqa: BLE001 - any parser failure means an unreadable file
        raise DatasetError(path, f"not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    if KEY not in mat:
        raise DatasetError(path, f"has no variable '{KEY}'")
    im = mat[KEY]
    if im.dtype != np.uint8 or im.ndim != 5 or im.shape[2] != 3 or im.shape[3:] != (azimuths, elevations):
        raise DatasetError(
            path,
            f"variable '{KEY}' must be uint8 H x W x 3 x {azimuths} x {elevations} "
            f"(height, width, RGB, azimuth, elevation), found {im.dtype} {im.shape}",
        )
    return np.ascontiguousarray(np.transpose(im, (4, 3, 0, 1, 2)))


def open_cars3d(src: Path, names: list[str], sizes: list[int], workers: int) -> tuple[int, Batches]:
    """Row count and ``(images N x 64 x 64 x 3, source indices)`` blocks in grid order."""
    files = car_files(src)
    elevations, azimuths, objects = sizes
    if len(files) != objects:
        raise DatasetError(
            src, f"holds {len(files)} .mat files, but the factor sizes give {objects} objects (use --factor-sizes)"
        )
    n = elevations * azimuths * objects

    def batches() -> Batches:
        grid = np.empty((elevations, azimuths, objects, TARGET_SIZE, TARGET_SIZE, 3), dtype=np.uint8)
        first: tuple[int, ...] | None = None
        for obj, path in enumerate(files):
            car = load_car(path, elevations, azimuths)
            if first is None:
                first = car.shape[2:4]
            elif car.shape[2:4] != first:
                raise DatasetError(path, f"images are {car.shape[2:4]}, those of {files[0].name} {first}")
            flat = car.reshape(-1, *car.shape[2:])
            grid[:, :, obj] = resize_images(flat).reshape(elevations, azimuths, TARGET_SIZE, TARGET_SIZE, 3)
        rows = grid.reshape(n, TARGET_SIZE, TARGET_SIZE, 3)
        for start in range(0, n, READ_ROWS):
            stop = min(start + READ_ROWS, n)
            yield rows[start:stop], factorial_indices(start, stop, sizes)

    return n, batches()
