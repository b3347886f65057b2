"""Converters on small files in each published layout: values -> indices, order, resize, atomicity."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from tripod_pl.data import DatasetError, read_info
from tripod_pl.data.prepare.converters import PUBLISHED, convert
from tripod_pl.data.prepare.resize import resize_images

from ..helpers import read_all
from . import published


def _grid(sizes: list[int]) -> np.ndarray:
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), 1)


def _reference_resize(images: np.ndarray) -> np.ndarray:
    """Area average with torch, rounded half up."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double()
    y = torch.nn.functional.interpolate(x, size=(64, 64), mode="area")
    return torch.floor(y + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_documented_sizes_match_design() -> None:
    counts = {name: int(np.prod(spec.factor_sizes)) for name, spec in PUBLISHED.items()}
    assert counts == {
        "shapes3d": 480_000,
        "mpi3d": 460_800,
        "falcor3d": 233_280,
        "isaac3d": 737_280,
        "dsprites": 737_280,
        "smallnorb": 48_600,
        "cars3d": 17_568,
    }


def test_shapes3d(tmp_path: Path) -> None:
    images, _ = published.shapes3d(tmp_path / "3dshapes.h5")
    info = convert("shapes3d", tmp_path / "3dshapes.h5", tmp_path / "out.h5", published.SHAPES3D_SIZES, progress=False)
    assert read_info(tmp_path / "out.h5") == info
    assert info.source_names == ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
    got_images, got_sources = read_all(tmp_path / "out.h5")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_sources, _grid(published.SHAPES3D_SIZES))


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_streams_stored_and_deflated_npz(tmp_path: Path, compressed: bool) -> None:
    images = published.mpi3d(tmp_path / "mpi.npz", compressed=compressed)
    info = convert("mpi3d", tmp_path / "mpi.npz", tmp_path / "out.h5", published.MPI3D_SIZES, progress=False)
    assert info.source_sizes == published.MPI3D_SIZES
    got_images, got_sources = read_all(tmp_path / "out.h5")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_sources, _grid(published.MPI3D_SIZES))


@pytest.mark.parametrize(("dataset", "workers"), [("falcor3d", 1), ("isaac3d", 2)])
def test_png_folders_are_resized_with_an_area_filter(tmp_path: Path, dataset: str, workers: int) -> None:
    sizes = published.FALCOR3D_SIZES if dataset == "falcor3d" else published.ISAAC3D_SIZES
    images, _ = getattr(published, dataset)(tmp_path / "src", sizes)
    info = convert(dataset, tmp_path / "src", tmp_path / "out.h5", sizes, workers=workers, progress=False)
    assert info.source_names == list(PUBLISHED[dataset].factor_names)
    got_images, got_sources = read_all(tmp_path / "out.h5")
    np.testing.assert_array_equal(got_sources, _grid(sizes))
    assert got_images.shape == (len(images), 64, 64, 3)
    np.testing.assert_array_equal(got_images, _reference_resize(images))
    pil = np.stack([np.asarray(Image.fromarray(im).resize((64, 64), Image.Resampling.BOX)) for im in images])
    assert np.abs(got_images.astype(int) - pil).max() <= 1  # PIL rounds after each of its two passes


def test_resize_of_a_non_integer_ratio_uses_pil_box() -> None:
    images = published.random_images(2, 100)
    expected = np.stack([np.asarray(Image.fromarray(im).resize((64, 64), Image.Resampling.BOX)) for im in images])
    np.testing.assert_array_equal(resize_images(images), expected)


def test_64_pixel_images_are_untouched() -> None:
    images = published.random_images(2, 64)
    assert resize_images(images) is images


# -- bad input ---------------------------------------------------------------------------------------------


def _fails(tmp_path: Path, dataset: str, src: Path, sizes: list[int] | None) -> str:
    with pytest.raises(DatasetError) as e:
        convert(dataset, src, tmp_path / "out.h5", sizes, progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out.h5").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    return str(e.value)


def test_shapes3d_rows_out_of_order(tmp_path: Path) -> None:
    published.shapes3d(tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5", "a") as f:
        labels = f["labels"][()]
        labels[[4, 6]] = labels[[6, 4]]
        f["labels"][...] = labels
    message = _fails(tmp_path, "shapes3d", tmp_path / "s.h5", published.SHAPES3D_SIZES)
    assert "row 4 has factor 'scale' at index 1, expected 0" in message


def test_shapes3d_wrong_factor_size_names_the_factor(tmp_path: Path) -> None:
    published.shapes3d(tmp_path / "s.h5")
    sizes = [2, 2, 2, 2, 2, 3]
    sizes_wrong = [2, 2, 2, 2, 1, 6]
    assert "factor 'shape' has 2 distinct values, expected 1" in _fails(
        tmp_path, "shapes3d", tmp_path / "s.h5", sizes_wrong
    )
    assert np.prod(sizes) == np.prod(sizes_wrong)


def test_shapes3d_documented_sizes_do_not_fit_a_subset(tmp_path: Path) -> None:
    published.shapes3d(tmp_path / "s.h5")
    message = _fails(tmp_path, "shapes3d", tmp_path / "s.h5", None)
    assert "has 96 images, but the factor sizes 10 x 10 x 10 x 8 x 4 x 15 make 480000" in message
    assert "--factor-sizes" in message


def test_shapes3d_missing_labels(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["images"] = np.zeros((96, 64, 64, 3), np.uint8)
    assert _fails(tmp_path, "shapes3d", tmp_path / "s.h5", None).endswith("missing dataset 'labels'")


def test_shapes3d_not_hdf5(tmp_path: Path) -> None:
    (tmp_path / "s.h5").write_bytes(b"\x00" * 100)
    assert "not a readable HDF5 file" in _fails(tmp_path, "shapes3d", tmp_path / "s.h5", None)


def test_mpi3d_row_count_must_equal_the_product_of_sizes(tmp_path: Path) -> None:
    published.mpi3d(tmp_path / "m.npz")
    message = _fails(tmp_path, "mpi3d", tmp_path / "m.npz", [2, 2, 1, 1, 1, 3, 4])
    assert "has 36 images, but the factor sizes 2 x 2 x 1 x 1 x 1 x 3 x 4 make 48" in message


def test_mpi3d_missing_key_and_not_a_zip(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", pictures=np.zeros((1, 64, 64, 3), np.uint8))
    assert "has no array 'images' (arrays: pictures)" in _fails(tmp_path, "mpi3d", tmp_path / "m.npz", None)
    (tmp_path / "n.npz").write_text("not a zip")
    assert "not an .npz archive" in _fails(tmp_path, "mpi3d", tmp_path / "n.npz", None)


def test_mpi3d_wrong_dtype(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", images=np.zeros((36, 64, 64, 3), np.float32))
    assert "must be uint8 N x H x W x 3" in _fails(tmp_path, "mpi3d", tmp_path / "m.npz", published.MPI3D_SIZES)


def test_png_folder_missing_image(tmp_path: Path) -> None:
    published.falcor3d(tmp_path / "src")
    (tmp_path / "src" / "images" / "000003.png").unlink()
    message = _fails(tmp_path, "falcor3d", tmp_path / "src", published.FALCOR3D_SIZES)
    assert message == f"{tmp_path / 'src' / 'images' / '000003.png'}: missing image"


@pytest.mark.parametrize("workers", [1, 2])
def test_png_folder_unreadable_image(tmp_path: Path, workers: int) -> None:
    published.isaac3d(tmp_path / "src")
    (tmp_path / "src" / "images" / "000005.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError) as e:
        convert("isaac3d", tmp_path / "src", tmp_path / "out.h5", published.ISAAC3D_SIZES, workers, progress=False)
    assert str(e.value).startswith(f"{tmp_path / 'src' / 'images' / '000005.png'}: unreadable image (")
    assert not (tmp_path / "out.h5").exists()


def test_png_folder_image_of_another_size(tmp_path: Path) -> None:
    published.falcor3d(tmp_path / "src")
    Image.new("RGB", (96, 96)).save(tmp_path / "src" / "images" / "000001.png")
    assert "image is 96x96, the first one is 128x128" in _fails(
        tmp_path, "falcor3d", tmp_path / "src", published.FALCOR3D_SIZES
    )


def test_png_folder_missing_or_bad_labels(tmp_path: Path) -> None:
    published.falcor3d(tmp_path / "src")
    (tmp_path / "src" / "train-rec.labels").unlink()
    assert _fails(tmp_path, "falcor3d", tmp_path / "src", None).endswith("train-rec.labels: missing labels file")
    (tmp_path / "src" / "train-rec.labels").write_text("1 2 3")
    assert "not a NumPy array file" in _fails(tmp_path, "falcor3d", tmp_path / "src", None)


def test_missing_source_folder(tmp_path: Path) -> None:
    assert _fails(tmp_path, "isaac3d", tmp_path / "nowhere", None).endswith("no such directory")


def test_wrong_number_of_factor_sizes(tmp_path: Path) -> None:
    published.mpi3d(tmp_path / "m.npz")
    assert "mpi3d has 7 factors" in _fails(tmp_path, "mpi3d", tmp_path / "m.npz", [36])
