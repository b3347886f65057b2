"""Cars3D (Reed et al., 2015) from the publisher's ``nips2015-analogy-data.tar.gz`` or its ``data/cars`` folder.

The folder holds one MATLAB file per car, ``car_001_mesh.mat`` ..., and ``list.txt`` (the car names, one a
line, without ``.mat``). Each file's ``im`` is uint8 ``128 x 128 x 3 x 24 x 4``: height, width, RGB, azimuth
(24 views around the car), elevation (4). The object index of a car is its line in ``list.txt`` (without one,
the rank of its name among the sorted ``*.mat`` names). Sources, as disentanglement_lib orders them:
elevation 4, azimuth 24, object 183 (17,568 images), row-major, so the object varies fastest; every car is
read once (from the archive as a stream, no extraction), resized to 64x64 and held in memory (216 MB) until all
are read. ``.mat`` files are read with ``scipy.io.loadmat`` (scipy comes with scikit-learn)::

    n, batches = open_cars3d(Path("nips2015-analogy-data.tar.gz"), list(NAMES), list(SIZES), 1)
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Generator, Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from tripod_pl.data.layout import DatasetError
from tripod_pl.data.prepare.factors import factorial_indices
from tripod_pl.data.prepare.resize import TARGET_SIZE, resize_images

NAMES = ("elevation", "azimuth", "object")
SIZES = (4, 24, 183)
KEY = "im"
LIST = "list.txt"
FOLDER = "cars"  # the folder of the cars in the archive (data/cars)
READ_ROWS = 1024

Batches = Generator[tuple[np.ndarray, np.ndarray], None, None]


def load_car(source: Path | io.BytesIO, where: Path, elevations: int, azimuths: int) -> np.ndarray:
    """The renderings of one car (a file, or bytes read from ``where``) as uint8 ``elevation x azimuth x H x W x 3``."""
    from scipy.io import loadmat  # imported here: only this converter needs scipy

    try:
        mat = loadmat(source, variable_names=[KEY])
    except Exception as e:  # noqa: BLE001 - any parser failure means an unreadable file
        raise DatasetError(where, f"not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    if KEY not in mat:
        raise DatasetError(where, f"has no variable '{KEY}'")
    im = mat[KEY]
    if im.dtype != np.uint8 or im.ndim != 5 or im.shape[2] != 3 or im.shape[3:] != (azimuths, elevations):
        raise DatasetError(
            where,
            f"variable '{KEY}' must be uint8 H x W x 3 x {azimuths} x {elevations} "
            f"(height, width, RGB, azimuth, elevation), found {im.dtype} {im.shape}",
        )
    return np.ascontiguousarray(np.transpose(im, (4, 3, 0, 1, 2)))


def object_order(names: list[str], listing: str | None, where: Path) -> list[str]:
    """Car file names in object order: the lines of ``list.txt`` (each must be present), else sorted names."""
    if listing is None:
        return sorted(names)
    listed = [f"{line.strip()}.mat" for line in listing.splitlines() if line.strip()]
    present = set(names)
    missing = [name for name in listed if name not in present]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(where, f"lists {missing[0].removesuffix('.mat')}, but {missing[0]} is missing{more}")
    if len(set(listed)) != len(listed):
        raise DatasetError(where, "lists a car twice")
    return listed


def _check_count(order: list[str], objects: int, where: Path) -> None:
    if len(order) != objects:
        raise DatasetError(
            where, f"holds {len(order)} cars, but the factor sizes give {objects} objects (use --factor-sizes)"
        )


def _archive_cars(src: Path, elevations: int, azimuths: int) -> Iterator[tuple[str, Path, np.ndarray | str]]:
    """``(name, where, renderings)`` of every ``cars/*.mat`` member, then ``(LIST, where, text)``, one pass."""
    try:
        with tarfile.open(src, "r|*") as tar:
            for member in tar:
                path = PurePosixPath(member.name)
                if not member.isfile() or path.parent.name != FOLDER:
                    continue
                if path.suffix == ".mat" or path.name == LIST:
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    where = src / member.name
                    if path.name == LIST:
                        yield LIST, where, data.decode("utf-8", errors="replace")
                    else:
                        yield path.name, where, load_car(io.BytesIO(data), where, elevations, azimuths)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DatasetError(src, f"truncated or corrupt archive ({type(e).__name__}: {e})") from None


def open_cars3d(src: Path, names: list[str], sizes: list[int], workers: int) -> tuple[int, Batches]:
    """Row count and ``(images N x 64 x 64 x 3, source indices)`` blocks in grid order."""
    elevations, azimuths, objects = sizes
    n = elevations * azimuths * objects
    if src.is_dir():
        listing = src / LIST
        text = listing.read_text(encoding="utf-8", errors="replace") if listing.is_file() else None
        order = object_order([p.name for p in src.glob("*.mat") if p.is_file()], text, listing if text else src)
        _check_count(order, objects, listing if text else src)
    elif src.is_file():
        if not tarfile.is_tarfile(src):
            raise DatasetError(src, "neither a folder of car .mat files nor a .tar.gz archive")
        order = []
    else:
        raise DatasetError(src, "no such file or directory (expected nips2015-analogy-data.tar.gz or its cars folder)")

    def read() -> tuple[list[str], dict[str, np.ndarray]]:
        cars: dict[str, np.ndarray] = {}
        first: tuple[str, tuple[int, ...]] | None = None
        if src.is_dir():
            found = ((name, src / name, load_car(src / name, src / name, elevations, azimuths)) for name in order)
        else:
            found = _archive_cars(src, elevations, azimuths)
        text, list_where = None, src
        for name, where, car in found:
            if isinstance(car, str):
                text, list_where = car, where
                continue
            if first is None:
                first = (name, car.shape[2:4])
            elif car.shape[2:4] != first[1]:
                raise DatasetError(where, f"images are {car.shape[2:4]}, those of {first[0]} {first[1]}")
            flat = resize_images(car.reshape(-1, *car.shape[2:]))
            cars[name] = flat.reshape(elevations, azimuths, TARGET_SIZE, TARGET_SIZE, 3)
        if src.is_dir():
            return order, cars
        if not cars:
            raise DatasetError(src, f"holds no {FOLDER}/*.mat member")
        archive_order = object_order(list(cars), text, list_where)
        _check_count(archive_order, objects, list_where)
        return archive_order, cars

    def batches() -> Batches:
        car_order, cars = read()
        by_object = [cars[name] for name in car_order]
        for start in range(0, n, READ_ROWS):
            stop = min(start + READ_ROWS, n)
            rows = factorial_indices(start, stop, sizes)
            yield np.stack([by_object[o][e, a] for e, a, o in rows]), rows

    return n, batches()
