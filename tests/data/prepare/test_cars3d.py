"""Cars3D from tiny per-car ``.mat`` files in the published layout (``im``: H x W x 3 x azimuth x elevation)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from tripod_pl.data import DatasetError, read_info
from tripod_pl.data.prepare.cli import main
from tripod_pl.data.prepare.converters import PUBLISHED, convert

from ..helpers import read_all

SIZES = [2, 3, 3]  # elevation, azimuth, object
NAMES = ["car_001_mesh.mat", "car_004_mesh.mat", "car_010_mesh.mat"]
LISTED = [2, 0, 1]  # list.txt order of NAMES: object o is NAMES[LISTED[o]]


def write_car(path: Path, seed: int = 0, size: int = 128) -> np.ndarray:
    """One car: ``im`` uint8 size x size x 3 x azimuth 3 x elevation 2, random, and its ``mask``."""
    im = np.random.default_rng(seed).integers(0, 256, (size, size, 3, SIZES[1], SIZES[0]), dtype=np.uint8)
    savemat(path, {"im": im, "mask": im[:, :, 0] > 128})
    return im


def write_cars(folder: Path, listed: bool = True) -> list[np.ndarray]:
    """The ``cars`` folder of the archive: the cars of ``NAMES`` and ``list.txt``; returns them in object order."""
    folder.mkdir(parents=True)
    cars = [write_car(folder / name, seed=k) for k, name in enumerate(NAMES)]
    if not listed:
        return cars
    (folder / "list.txt").write_text("".join(f"{NAMES[k].removesuffix('.mat')}\n" for k in LISTED))
    return [cars[k] for k in LISTED]


def write_archive(path: Path, folder: Path) -> None:
    """``nips2015-analogy-data.tar.gz``: ``data/cars/...`` beside the other data sets of the paper."""
    savemat(folder.parent / "shapes48.mat", {"im": np.zeros((2, 2), np.uint8)})
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.add(folder.parent / "shapes48.mat", "data/shapes48.mat")
        tar.add(folder, "data/cars")


def _box_half(image: np.ndarray) -> np.ndarray:
    """128 -> 64 by the mean of each 2 x 2 block, rounded half up."""
    return np.floor(image.astype(np.float64).reshape(64, 2, 64, 2, 3).mean(axis=(1, 3)) + 0.5)


def _fails(tmp_path: Path, src: Path, sizes: list[int] | None = SIZES) -> str:
    """The conversion fails with a one-line error, leaving an existing output and no temporary file."""
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    with pytest.raises(DatasetError) as e:
        convert("cars3d", src, out, sizes, progress=False)
    assert "\n" not in str(e.value)
    assert out.read_bytes() == b"precious"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    return str(e.value)


def test_documented_factors() -> None:
    spec = PUBLISHED["cars3d"]
    assert spec.factor_names == ("elevation", "azimuth", "object")
    assert list(spec.factor_sizes) == [4, 24, 183] and int(np.prod(spec.factor_sizes)) == 17_568


def _check(out: Path, cars: list[np.ndarray]) -> None:
    assert read_info(out).num_images == 18
    images, sources = read_all(out)
    for n, (e, a, o) in enumerate(np.ndindex(*SIZES)):
        assert sources[n].tolist() == [e, a, o]
        np.testing.assert_array_equal(images[n], _box_half(cars[o][:, :, :, a, e]))


def test_rows_are_elevation_azimuth_object_row_major_objects_in_list_order(tmp_path: Path) -> None:
    cars = write_cars(tmp_path / "data" / "cars")
    info = convert("cars3d", tmp_path / "data" / "cars", tmp_path / "out.h5", SIZES, progress=False)
    assert info.source_names == ["elevation", "azimuth", "object"] and info.source_sizes == SIZES
    _check(tmp_path / "out.h5", cars)


def test_without_list_objects_in_name_order(tmp_path: Path) -> None:
    cars = write_cars(tmp_path / "cars", listed=False)
    convert("cars3d", tmp_path / "cars", tmp_path / "out.h5", SIZES, progress=False)
    _check(tmp_path / "out.h5", cars)


def test_the_published_archive_is_read_as_a_stream(tmp_path: Path) -> None:
    cars = write_cars(tmp_path / "data" / "cars")
    write_archive(tmp_path / "nips2015-analogy-data.tar.gz", tmp_path / "data" / "cars")
    convert("cars3d", tmp_path / "nips2015-analogy-data.tar.gz", tmp_path / "out.h5", SIZES, progress=False)
    _check(tmp_path / "out.h5", cars)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_cars(tmp_path / "cars")
    argv = ["convert", "cars3d", str(tmp_path / "cars"), str(tmp_path / "o.h5"), "--quiet"]
    assert main([*argv, "--factor-sizes", *map(str, SIZES)]) == 0
    assert "sources: 3 (elevation=2 azimuth=3 object=3)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*argv, "--force"])  # the documented sizes do not fit the fixture
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "list.txt: holds 3 cars, but the factor sizes give 183 objects" in err


# -- bad input ---------------------------------------------------------------------------------------------


def test_missing_variable(tmp_path: Path) -> None:
    write_cars(tmp_path / "cars")
    savemat(tmp_path / "cars" / NAMES[1], {"img": np.zeros((2, 2), np.uint8)})
    assert _fails(tmp_path, tmp_path / "cars") == f"{tmp_path / 'cars' / NAMES[1]}: has no variable 'im'"


@pytest.mark.parametrize(
    ("im", "found"),
    [
        (np.zeros((128, 128, 3, 2, 3), np.uint8), "uint8 (128, 128, 3, 2, 3)"),  # azimuth and elevation swapped
        (np.zeros((128, 128, 3, 3, 2), np.float64), "float64 (128, 128, 3, 3, 2)"),
        (np.zeros((128, 128, 3, 6), np.uint8), "uint8 (128, 128, 3, 6)"),
    ],
)
def test_wrong_shape_or_dtype(tmp_path: Path, im: np.ndarray, found: str) -> None:
    write_cars(tmp_path / "cars")
    savemat(tmp_path / "cars" / NAMES[2], {"im": im})
    assert _fails(tmp_path, tmp_path / "cars") == (
        f"{tmp_path / 'cars' / NAMES[2]}: variable 'im' must be uint8 H x W x 3 x 3 x 2 "
        f"(height, width, RGB, azimuth, elevation), found {found}"
    )


def test_truncated_and_not_a_mat_file(tmp_path: Path) -> None:
    write_cars(tmp_path / "cars")
    path = tmp_path / "cars" / NAMES[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _fails(tmp_path, tmp_path / "cars").startswith(f"{path}: not a readable MATLAB .mat file (")
    path.write_bytes(b"not a mat file")
    assert _fails(tmp_path, tmp_path / "cars").startswith(f"{path}: not a readable MATLAB .mat file (")


def test_truncated_archive_and_bad_member(tmp_path: Path) -> None:
    write_cars(tmp_path / "data" / "cars")
    archive = tmp_path / "nips2015-analogy-data.tar.gz"
    write_archive(archive, tmp_path / "data" / "cars")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert _fails(tmp_path, archive).startswith(f"{archive}: truncated or corrupt archive (")
    archive.write_bytes(b"not an archive")
    assert _fails(tmp_path, archive) == f"{archive}: neither a folder of car .mat files nor a .tar.gz archive"
    savemat(tmp_path / "data" / "cars" / NAMES[1], {"img": np.zeros((2, 2), np.uint8)})
    write_archive(archive, tmp_path / "data" / "cars")
    assert _fails(tmp_path, archive) == f"{archive / 'data' / 'cars' / NAMES[1]}: has no variable 'im'"


def test_images_of_another_size(tmp_path: Path) -> None:
    write_cars(tmp_path / "cars", listed=False)
    write_car(tmp_path / "cars" / NAMES[2], size=64)
    assert "images are (64, 64), those of car_001_mesh.mat (128, 128)" in _fails(tmp_path, tmp_path / "cars")


def test_listed_car_missing_or_wrong_number_of_cars(tmp_path: Path) -> None:
    write_cars(tmp_path / "cars")
    (tmp_path / "cars" / NAMES[1]).unlink()
    assert _fails(tmp_path, tmp_path / "cars") == (
        f"{tmp_path / 'cars' / 'list.txt'}: lists car_004_mesh, but car_004_mesh.mat is missing"
    )
    (tmp_path / "cars" / "list.txt").unlink()
    message = _fails(tmp_path, tmp_path / "cars")
    assert message == f"{tmp_path / 'cars'}: holds 2 cars, but the factor sizes give 3 objects (use --factor-sizes)"
    message = _fails(tmp_path, tmp_path / "nowhere")
    assert message.endswith("no such file or directory (expected nips2015-analogy-data.tar.gz or its cars folder)")
