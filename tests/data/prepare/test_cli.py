"""``tripod-data``: generate, convert, info; bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tripod_pl.data import read_info
from tripod_pl.data.prepare.cli import main

from ..helpers import write_layout_file
from . import published

ROOT = Path(__file__).resolve().parents[3]


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("tripod-data: error: ")
    return err.strip()


def test_generate_with_sizes_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tmp_path / "g.h5"), "--factor-sizes", "1", "2", "2", "1", "2", "2", "3"]) == 0
    info = read_info(tmp_path / "g.h5")
    assert info.source_sizes == [1, 2, 2, 1, 2, 2, 3] and info.num_images == 48
    assert "images:  48 x 64 x 64 x 3 uint8" in capsys.readouterr().out


def test_generate_refuses_to_replace_a_file_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.h5"
    out.write_bytes(b"precious")
    err = _fails(["generate", str(out), "--factor-sizes", "1", "1", "1", "1", "1", "1", "2"], capsys)
    assert err == f"tripod-data: error: {out} exists; pass --force to replace it"
    assert out.read_bytes() == b"precious"
    assert main(["generate", str(out), "--factor-sizes", "1", "1", "1", "1", "1", "1", "2", "--force"]) == 0
    assert read_info(out).num_images == 2


def test_generate_with_named_sizes(tmp_path: Path) -> None:
    sizes = ["background_color=1", "object_color=1", "shape=2", "scale=1", "position_x=2", "position_y=1"]
    main(["generate", str(tmp_path / "g.h5"), "--factor-sizes", *sizes, "rotation=2", "--seed", "3"])
    assert read_info(tmp_path / "g.h5").num_images == 8


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        (["2", "2"], "--factor-sizes needs 7 sizes"),
        (["shape=2", "3"], "not both"),
        (["shape=x"], "expects integers"),
        (["hue=2"], "unknown procedural factor 'hue'"),
    ],
)
def test_generate_bad_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str], sizes: list[str], message: str) -> None:
    assert message in _fails(["generate", str(tmp_path / "g.h5"), "--factor-sizes", *sizes], capsys)
    assert not os.listdir(tmp_path)


def test_info(small_h5: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", small_h5]) == 0
    out = capsys.readouterr().out
    assert f"file:    {small_h5}" in out and "sources: 7 (background_color=2" in out


def test_info_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails(["info", str(tmp_path / "none.h5")], capsys)
    assert err == f"tripod-data: error: {tmp_path / 'none.h5'}: no such file"


def test_info_not_hdf5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.h5").write_text("x")
    assert "x.h5: not a readable HDF5 file" in _fails(["info", str(tmp_path / "x.h5")], capsys)


def test_convert_shapes3d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    published.shapes3d(tmp_path / "3dshapes.h5")
    sizes = [str(s) for s in published.SHAPES3D_SIZES]
    argv = ["convert", "shapes3d", str(tmp_path / "3dshapes.h5"), str(tmp_path / "o.h5"), "--quiet"]
    assert main([*argv, "--factor-sizes", *sizes]) == 0
    assert read_info(tmp_path / "o.h5").num_images == int(np.prod(published.SHAPES3D_SIZES))
    assert "sources: 6 (floor_hue=2" in capsys.readouterr().out


def test_convert_refuses_to_replace_a_file_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    published.shapes3d(tmp_path / "3dshapes.h5")
    out = tmp_path / "o.h5"
    out.write_bytes(b"precious")
    sizes = [str(s) for s in published.SHAPES3D_SIZES]
    argv = ["convert", "shapes3d", str(tmp_path / "3dshapes.h5"), str(out), "--quiet", "--factor-sizes", *sizes]
    assert _fails(argv, capsys) == f"tripod-data: error: {out} exists; pass --force to replace it"
    assert out.read_bytes() == b"precious"
    assert main([*argv, "--force"]) == 0
    assert read_info(out).num_images == int(np.prod(published.SHAPES3D_SIZES))


def test_download_convert_refuses_an_existing_output_before_downloading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shapes3d.h5"  # the default output, DIR/NAME.h5
    out.write_bytes(b"precious")
    err = _fails(["download", "shapes3d", str(tmp_path), "--convert", "--quiet"], capsys)
    assert err == f"tripod-data: error: {out} exists; pass --force to replace it"
    assert out.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["shapes3d.h5"]


def test_convert_png_folder_with_workers(tmp_path: Path) -> None:
    published.isaac3d(tmp_path / "Isaac3D_down128")
    sizes = [str(s) for s in published.ISAAC3D_SIZES]
    src, out = str(tmp_path / "Isaac3D_down128"), str(tmp_path / "o.h5")
    assert main(["convert", "isaac3d", src, out, "--workers", "2", "--quiet", "--factor-sizes", *sizes]) == 0
    assert read_info(out).image_shape == (64, 64, 3)


def test_convert_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    published.falcor3d(tmp_path / "F")
    (tmp_path / "F" / "images" / "000002.png").unlink()
    sizes = [str(s) for s in published.FALCOR3D_SIZES]
    err = _fails(["convert", "falcor3d", str(tmp_path / "F"), str(tmp_path / "o.h5"), "--factor-sizes", *sizes], capsys)
    assert err.endswith("000002.png: missing image")
    err = _fails(["convert", "falcor3d", str(tmp_path / "F"), str(tmp_path / "o.h5")], capsys)
    assert "the factor sizes 5 x 6 x 6 x 6 x 6 x 6 x 6 make 233280" in err
    assert not (tmp_path / "o.h5").exists()


def test_unknown_dataset_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["convert", "celeba", "a", "b"])
    assert e.value.code == 2
    assert "invalid choice: 'celeba'" in capsys.readouterr().err


def test_console_script_entry_point_is_this_main() -> None:
    target = re.search(r'^tripod-data = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert target is not None
    module, function = target.group(1).split(":")
    assert getattr(importlib.import_module(module), function) is main


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"skip": ("images",)}, "missing dataset 'images'"),
        ({"skip": ("source_sizes",)}, "missing root attribute 'source_sizes'"),
        ({"images": np.zeros((12, 8, 8, 3), np.float64)}, "dataset 'images' must be uint8, found float64"),
        ({"sources": np.full((12, 2), 3)}, "source 'shape' has index 3 at row 0, outside its size 3 (0..2)"),
    ],
)
def test_info_on_malformed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], kwargs: dict, problem: str):
    path = write_layout_file(tmp_path / "bad.h5", **kwargs)
    assert _fails(["info", str(path)], capsys) == f"tripod-data: error: {path}: {problem}"
