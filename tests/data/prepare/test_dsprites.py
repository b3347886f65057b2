"""dSprites from a tiny archive in the published layout: 0/1 pixels -> 0/255 RGB, constant color dropped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tripod_pl.data import DatasetError, read_info
from tripod_pl.data.prepare.cli import main
from tripod_pl.data.prepare.converters import PUBLISHED, convert

from ..helpers import read_all

SIZES = [2, 2, 3, 2, 2]  # shape, scale, orientation, position x, position y


def _grid(sizes: list[int]) -> np.ndarray:
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), 1)


def write_dsprites(path: Path, sizes: list[int] = SIZES, **replace: np.ndarray) -> dict[str, np.ndarray]:
    """``imgs`` (N x 64 x 64 uint8 in {0, 1}), ``latents_classes`` (N x 6 int64, color first and constant),
    ``latents_values`` and a pickled ``metadata``, compressed, as the published archive."""
    grid = _grid(sizes)
    rng = np.random.default_rng(0)
    arrays = {
        "imgs": rng.integers(0, 2, (len(grid), 64, 64), dtype=np.uint8),
        "latents_classes": np.column_stack([np.zeros(len(grid), np.int64), grid]).astype(np.int64),
        "latents_values": np.column_stack([np.ones(len(grid)), grid * 0.5]),
        "metadata": np.array({"latents_sizes": np.array([1, *sizes])}, dtype=object),
    }
    arrays.update(replace)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def _fails(tmp_path: Path, src: Path, sizes: list[int] | None = SIZES) -> str:
    """The conversion fails with a one-line error, leaving an existing output and no temporary file."""
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    with pytest.raises(DatasetError) as e:
        convert("dsprites", src, out, sizes, progress=False)
    assert "\n" not in str(e.value)
    assert out.read_bytes() == b"precious"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    return str(e.value)


def test_documented_factors() -> None:
    spec = PUBLISHED["dsprites"]
    assert spec.factor_names == ("shape", "scale", "orientation", "position_x", "position_y")
    assert int(np.prod(spec.factor_sizes)) == 737_280  # 1 x 3 x 6 x 40 x 32 x 32 in the published file name


def test_pixels_become_0_255_rgb_and_sources_the_classes(tmp_path: Path) -> None:
    arrays = write_dsprites(tmp_path / "d.npz")
    info = convert("dsprites", tmp_path / "d.npz", tmp_path / "out.h5", SIZES, progress=False)
    assert read_info(tmp_path / "out.h5") == info
    assert info.source_names == list(PUBLISHED["dsprites"].factor_names) and info.source_sizes == SIZES
    images, sources = read_all(tmp_path / "out.h5")
    assert images.shape == (48, 64, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(images[..., c], np.where(arrays["imgs"] == 1, 255, 0))
    np.testing.assert_array_equal(sources, arrays["latents_classes"][:, 1:])
    assert set(np.unique(images)) == {0, 255}


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dsprites(tmp_path / "d.npz")
    argv = ["convert", "dsprites", str(tmp_path / "d.npz"), str(tmp_path / "o.h5"), "--quiet"]
    assert main([*argv, "--factor-sizes", *map(str, SIZES)]) == 0
    assert "sources: 5 (shape=2 scale=2 orientation=3 position_x=2 position_y=2)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*argv, "--force"])  # the documented sizes do not fit the fixture
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has 48 images, but the factor sizes 3 x 6 x 40 x 32 x 32 make 737280" in err


# -- bad input ---------------------------------------------------------------------------------------------


def test_missing_key(tmp_path: Path) -> None:
    write_dsprites(tmp_path / "d.npz", latents_classes=None)
    message = _fails(tmp_path, tmp_path / "d.npz")
    assert message.startswith(f"{tmp_path / 'd.npz'}: has no array 'latents_classes' (arrays: imgs, ")


def test_wrong_image_shape(tmp_path: Path) -> None:
    write_dsprites(tmp_path / "d.npz", imgs=np.zeros((48, 64, 64, 1), np.uint8))
    assert "array 'imgs' must be uint8 N x H x W, found uint8 (48, 64, 64, 1)" in _fails(tmp_path, tmp_path / "d.npz")


def test_wrong_classes_shape(tmp_path: Path) -> None:
    write_dsprites(tmp_path / "d.npz", latents_classes=np.zeros((48, 5), np.int64))
    assert "array 'latents_classes' must be integer N x 6, found int64 (48, 5)" in _fails(tmp_path, tmp_path / "d.npz")


def test_pixels_not_binary(tmp_path: Path) -> None:
    imgs = np.zeros((48, 64, 64), np.uint8)
    imgs[37, 5, 9] = 7
    write_dsprites(tmp_path / "d.npz", imgs=imgs)
    assert _fails(tmp_path, tmp_path / "d.npz").endswith("array 'imgs' must hold 0/1 pixels, found 7 in image 37")


def test_color_not_constant(tmp_path: Path) -> None:
    classes = np.column_stack([np.arange(48) % 2, _grid(SIZES)])
    write_dsprites(tmp_path / "d.npz", latents_classes=classes)
    assert "column 'color' of 'latents_classes' must be constant, found 2 values" in _fails(
        tmp_path, tmp_path / "d.npz"
    )


def test_rows_out_of_order(tmp_path: Path) -> None:
    classes = np.column_stack([np.zeros(48, np.int64), _grid(SIZES)])
    classes[[1, 2]] = classes[[2, 1]]
    write_dsprites(tmp_path / "d.npz", latents_classes=classes)
    assert "row 1 has factor 'position_x' at index 1, expected 0" in _fails(tmp_path, tmp_path / "d.npz")


def test_truncated_and_not_an_archive(tmp_path: Path) -> None:
    write_dsprites(tmp_path / "d.npz")
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    assert "not an .npz archive" in _fails(tmp_path, tmp_path / "d.npz")
    assert _fails(tmp_path, tmp_path / "none.npz").endswith("none.npz: no such file")
