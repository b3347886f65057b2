"""Cars3D from tiny per-car ``.mat`` files in the published layout (``im``: H x W x 3 x azimuth x elevation)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from tripod_pl.data import DatasetError, read_info
from tripod_pl.data.prepare.cli import main
from tripod_pl.data.prepare.converters import PUBLISHED, convert

from ..helpers import read_all

SIZES = [2, 3, 3]  # elevation, azimuth, object
NAMES = ["car_001_mesh.mat", "car_004_mesh.mat", "car_010_mesh.mat"]  # object order: sorted names


def write_car(path: Path, seed: int = 0, size: int = 128) -> np.ndarray:
    """One car: ``im`` uint8 size x size x 3 x azimuth 3 x elevation 2, random."""
    im = np.random.default_rng(seed).integers(0, 256, (size, size, 3, SIZES[1], SIZES[0]), dtype=np.uint8)
    savemat(path, {"im": im})
    return im


def write_cars(folder: Path) -> list[np.ndarray]:
    """The cars of ``NAMES``, in that (object) order."""
    folder.mkdir()
    return [write_car(folder / name, seed=k) for k, name in enumerate(NAMES)]


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


def test_rows_are_elevation_azimuth_object_row_major(tmp_path: Path) -> None:
    cars = write_cars(tmp_path / "cars")
    info = convert("cars3d", tmp_path / "cars", tmp_path / "out.h5", SIZES, progress=False)
    assert read_info(tmp_path / "out.h5") == info and info.num_images == 18
    images, sources = read_all(tmp_path / "out.h5")
    for n, (e, a, o) in enumerate(np.ndindex(*SIZES)):
        assert sources[n].tolist() == [e, a, o]
        np.testing.assert_array_equal(images[n], _box_half(cars[o][:, :, :, a, e]))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_cars(tmp_path / "cars")
    argv = ["convert", "cars3d", str(tmp_path / "cars"), str(tmp_path / "o.h5"), "--quiet"]
    assert main([*argv, "--factor-sizes", *map(str, SIZES)]) == 0
    assert "sources: 3 (elevation=2 azimuth=3 object=3)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds 3 .mat files, but the factor sizes give 183 objects" in err


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


def test_images_of_another_size(tmp_path: Path) -> None:
    write_cars(tmp_path / "cars")
    write_car(tmp_path / "cars" / NAMES[2], size=64)
    assert "images are (64, 64), those of car_001_mesh.mat (128, 128)" in _fails(tmp_path, tmp_path / "cars")


def test_wrong_number_of_files_and_missing_folder(tmp_path: Path) -> None:
    write_cars(tmp_path / "cars")
    (tmp_path / "cars" / NAMES[1]).unlink()
    assert "holds 2 .mat files, but the factor sizes give 3 objects" in _fails(tmp_path, tmp_path / "cars")
    assert _fails(tmp_path, tmp_path / "nowhere").endswith(
        "no such directory (expected the folder of the car_*_mesh.mat files)"
    )
