"""SmallNORB from tiny binary matrices in the published format: splits merged, rows sorted, left camera, RGB."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tripod_pl.data import DatasetError, read_info
from tripod_pl.data.prepare.cli import main
from tripod_pl.data.prepare.converters import PUBLISHED, convert
from tripod_pl.data.prepare.resize import resize_images
from tripod_pl.data.prepare.smallnorb import BYTE_MAGIC, INT_MAGIC, SPLITS, area_resize, area_weights

from ..helpers import read_all

# category 2, instance 4 (2 per split), elevation 2, azimuth 3, lighting 2
SIZES = [2, 4, 2, 3, 2]
INSTANCES = {SPLITS[0]: [1, 3], SPLITS[1]: [0, 2]}  # interleaved, as the published 4,6,7,8,9 / 0,1,2,3,5


def write_matrix(path: Path, array: np.ndarray, magic: int) -> None:
    """A NORB binary matrix: little-endian int32 magic, ndim, max(3, ndim) dims (padded with 1), C-order data."""
    dims = list(array.shape) + [1] * (3 - array.ndim)
    dtype = "<i4" if magic == INT_MAGIC else np.uint8
    with open(path, "wb") as f:
        f.write(struct.pack(f"<ii{len(dims)}i", magic, array.ndim, *dims))
        f.write(np.ascontiguousarray(array, dtype=dtype).tobytes())


def write_smallnorb(folder: Path, sizes: list[int] = SIZES) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Both splits, each with its own instances and every other factor complete, rows shuffled;
    returns ``{split: (dat N x 2 x 96 x 96, cat N, info N x 4)}``."""
    folder.mkdir(exist_ok=True)
    categories, _, elevations, azimuths, lightings = sizes
    rng = np.random.default_rng(0)
    written = {}
    for split in SPLITS:
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes[:1] + [2] + sizes[2:]], indexing="ij"), -1)
        grid = grid.reshape(-1, 5)[rng.permutation(int(np.prod(grid.shape[:-1])))]
        cat = grid[:, 0].astype(np.int32)
        instance = np.asarray(INSTANCES[split])[grid[:, 1]]
        info = np.column_stack([instance, grid[:, 2], 2 * grid[:, 3], grid[:, 4]]).astype(np.int32)
        dat = rng.integers(0, 256, (len(grid), 2, 96, 96), dtype=np.uint8)
        write_matrix(folder / f"{split}-dat.mat", dat, BYTE_MAGIC)
        write_matrix(folder / f"{split}-cat.mat", cat, INT_MAGIC)
        write_matrix(folder / f"{split}-info.mat", info, INT_MAGIC)
        written[split] = (dat, cat, info)
    return written


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``W[i, j]``: the fraction of output pixel ``i`` covered by input pixel ``j`` (exact area resampling)."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        for j in range(n_in):
            w[i, j] = max(0.0, min((i + 1) * scale, j + 1) - max(i * scale, j)) / scale
    return w


def _fails(tmp_path: Path, src: Path, sizes: list[int] | None = SIZES) -> str:
    """The conversion fails with a one-line error, leaving an existing output and no temporary file."""
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    with pytest.raises(DatasetError) as e:
        convert("smallnorb", src, out, sizes, progress=False)
    assert "\n" not in str(e.value)
    assert out.read_bytes() == b"precious"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    return str(e.value)


def test_documented_factors() -> None:
    spec = PUBLISHED["smallnorb"]
    assert spec.factor_names == ("category", "instance", "elevation", "azimuth", "lighting")
    assert list(spec.factor_sizes) == [5, 10, 9, 18, 6] and int(np.prod(spec.factor_sizes)) == 2 * 24_300


def test_splits_merged_sorted_into_the_grid_left_camera_resized_to_rgb(tmp_path: Path) -> None:
    written = write_smallnorb(tmp_path / "norb")
    info = convert("smallnorb", tmp_path / "norb", tmp_path / "out.h5", SIZES, progress=False)
    assert read_info(tmp_path / "out.h5") == info and info.num_images == 96
    images, sources = read_all(tmp_path / "out.h5")
    np.testing.assert_array_equal(sources, np.stack(np.unravel_index(np.arange(96), SIZES), 1))
    assert images.shape == (96, 64, 64, 3)
    np.testing.assert_array_equal(images[..., 1], images[..., 0])
    np.testing.assert_array_equal(images[..., 2], images[..., 0])

    # find each grid row in the files by its values: instance = its rank among 0..3, azimuth = value / 2
    lookup = {}
    for dat, cat, info_rows in written.values():
        for row in range(len(cat)):
            instance, elevation, azimuth, lighting = (int(v) for v in info_rows[row])
            lookup[(int(cat[row]), instance, elevation, azimuth // 2, lighting)] = dat[row, 0]
    w = _area_matrix(96, 64)
    for n, key in enumerate(map(tuple, sources.tolist())):
        left = lookup[key]
        # exact area average (k / 9: never a tie), rounded half up
        np.testing.assert_array_equal(images[n, :, :, 0], np.floor(w @ left.astype(np.float64) @ w.T + 0.5))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_smallnorb(tmp_path / "norb")
    argv = ["convert", "smallnorb", str(tmp_path / "norb"), str(tmp_path / "o.h5"), "--quiet"]
    assert main([*argv, "--factor-sizes", *map(str, SIZES)]) == 0
    assert "sources: 5 (category=2 instance=4 elevation=2 azimuth=3 lighting=2)" in capsys.readouterr().out


# -- bad input ---------------------------------------------------------------------------------------------


def test_wrong_magic(tmp_path: Path) -> None:
    written = write_smallnorb(tmp_path / "norb")
    path = tmp_path / "norb" / f"{SPLITS[1]}-dat.mat"
    write_matrix(path, written[SPLITS[1]][0], INT_MAGIC)
    assert _fails(tmp_path, tmp_path / "norb") == (
        f"{path}: not a NORB byte matrix: magic number 0x1E3D4C54, expected 0x1E3D4C55"
    )


def test_truncated_matrices(tmp_path: Path) -> None:
    write_smallnorb(tmp_path / "norb")
    path = tmp_path / "norb" / f"{SPLITS[0]}-dat.mat"
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    assert _fails(tmp_path, tmp_path / "norb") == (
        f"{path}: truncated: {len(data) - 100} bytes, a 48 x 2 x 96 x 96 byte matrix takes {len(data)}"
    )
    path.write_bytes(data[:6])
    assert "truncated: 6 bytes, shorter than a binary matrix header" in _fails(tmp_path, tmp_path / "norb")


def _gzip_all(folder: Path) -> None:
    """Replaces every ``.mat`` by its ``.mat.gz``, as the publisher serves them."""
    for path in folder.glob("*.mat"):
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(path.read_bytes())
        path.unlink()


def test_gzipped_files_as_published_give_the_same_dataset(tmp_path: Path) -> None:
    write_smallnorb(tmp_path / "norb")
    convert("smallnorb", tmp_path / "norb", tmp_path / "plain.h5", SIZES, progress=False)
    _gzip_all(tmp_path / "norb")
    convert("smallnorb", tmp_path / "norb", tmp_path / "gz.h5", SIZES, progress=False)
    for a, b in zip(read_all(tmp_path / "plain.h5"), read_all(tmp_path / "gz.h5")):
        np.testing.assert_array_equal(a, b)


def test_truncated_or_not_gzip(tmp_path: Path) -> None:
    write_smallnorb(tmp_path / "norb")
    _gzip_all(tmp_path / "norb")
    path = tmp_path / "norb" / f"{SPLITS[0]}-dat.mat.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _fails(tmp_path, tmp_path / "norb").startswith(f"{path}: truncated or corrupt: decompresses to ")
    path.write_bytes(b"plain bytes, no gzip header")
    assert _fails(tmp_path, tmp_path / "norb").startswith(f"{path}: not a readable gzip file (")


def test_missing_file_or_folder(tmp_path: Path) -> None:
    write_smallnorb(tmp_path / "norb")
    path = tmp_path / "norb" / f"{SPLITS[1]}-info.mat"
    path.unlink()
    assert _fails(tmp_path, tmp_path / "norb") == f"{path}: no such file (nor {path.name}.gz)"
    message = _fails(tmp_path, tmp_path / "nowhere")
    assert message.endswith("no such directory (expected the folder of the six smallnorb-*.mat or .mat.gz files)")


def test_wrong_shapes(tmp_path: Path) -> None:
    written = write_smallnorb(tmp_path / "norb")
    dat, cat, info = written[SPLITS[0]]
    info_path = tmp_path / "norb" / f"{SPLITS[0]}-info.mat"
    write_matrix(info_path, info[:, :3], INT_MAGIC)
    assert _fails(tmp_path, tmp_path / "norb") == (
        f"{info_path}: must be an 48 x 4 matrix (instance, elevation, azimuth, lighting), found (48, 3)"
    )
    write_matrix(info_path, info, INT_MAGIC)
    cat_path = tmp_path / "norb" / f"{SPLITS[0]}-cat.mat"
    write_matrix(cat_path, cat[:-1], INT_MAGIC)
    assert "must be a vector of 48 categories (the rows of the -dat file), found (47,)" in _fails(
        tmp_path, tmp_path / "norb"
    )
    write_matrix(cat_path, cat, INT_MAGIC)
    dat_path = tmp_path / "norb" / f"{SPLITS[0]}-dat.mat"
    write_matrix(dat_path, dat[:, 0], BYTE_MAGIC)
    assert "must be an N x 2 x H x W matrix (stereo pairs), found (48, 96, 96)" in _fails(tmp_path, tmp_path / "norb")


def test_repeated_combination_is_not_a_grid(tmp_path: Path) -> None:
    written = write_smallnorb(tmp_path / "norb")
    _, _, info = written[SPLITS[1]]
    info = info.copy()
    info[5] = info[4]  # rows 4 and 5 of testing: same instance, elevation, azimuth, lighting ...
    cat = written[SPLITS[1]][1].copy()
    cat[5] = cat[4]  # ... and category
    write_matrix(tmp_path / "norb" / f"{SPLITS[1]}-info.mat", info, INT_MAGIC)
    write_matrix(tmp_path / "norb" / f"{SPLITS[1]}-cat.mat", cat, INT_MAGIC)
    message = _fails(tmp_path, tmp_path / "norb")
    assert (
        "occur twice (rows 52 and 53 of training then testing), so the images are not a full factorial grid" in message
    )


def test_documented_sizes_do_not_fit_a_subset(tmp_path: Path) -> None:
    write_smallnorb(tmp_path / "norb")
    message = _fails(tmp_path, tmp_path / "norb", None)
    assert "has 96 images (training and testing), but the factor sizes 5 x 10 x 9 x 18 x 6 make 48600" in message


def test_area_resize_of_an_integer_ratio_is_the_box_average() -> None:
    images = np.random.default_rng(3).integers(0, 256, (4, 128, 128), dtype=np.uint8)
    np.testing.assert_array_equal(area_resize(images)[..., None], resize_images(images[..., None]))
    assert area_weights(96, 64).sum(1).tolist() == [3] * 64
