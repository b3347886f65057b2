"""The layout check: every malformed file is a one-line DatasetError naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tripod_pl.data import DatasetError, DatasetInfo, read_info

from .helpers import LAYOUT_NAMES, LAYOUT_SIZES, write_layout_file


def _error(path: Path) -> str:
    with pytest.raises(DatasetError) as e:
        read_info(path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_read_info_summarises_a_valid_file(tmp_path: Path) -> None:
    info = read_info(write_layout_file(tmp_path / "ok.h5"))
    assert info == DatasetInfo(str(tmp_path / "ok.h5"), 12, (8, 8, 3), LAYOUT_NAMES, LAYOUT_SIZES)
    assert info.num_sources == 2
    assert "shape=3 scale=4" in info.describe()


def test_names_stored_as_bytes_are_decoded(tmp_path: Path) -> None:
    path = write_layout_file(tmp_path / "b.h5", names=np.array([b"shape", b"scale"]))
    assert read_info(path).source_names == LAYOUT_NAMES


def test_missing_file(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.h5").endswith("no such file")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("hello")
    assert "not a readable HDF5 file" in _error(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = write_layout_file(tmp_path / "t.h5", images=np.ones((12, 32, 32, 3), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _error(path)


@pytest.mark.parametrize("missing", ["images", "sources"])
def test_missing_dataset(tmp_path: Path, missing: str) -> None:
    assert _error(write_layout_file(tmp_path / "m.h5", skip=(missing,))).endswith(f"missing dataset '{missing}'")


@pytest.mark.parametrize("missing", ["source_names", "source_sizes"])
def test_missing_attribute(tmp_path: Path, missing: str) -> None:
    assert _error(write_layout_file(tmp_path / "a.h5", skip=(missing,))).endswith(f"missing root attribute '{missing}'")


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (np.zeros((12, 8, 8), np.uint8), "must be N x H x W x 3, found shape (12, 8, 8)"),
        (np.zeros((12, 8, 8, 4), np.uint8), "must be N x H x W x 3, found shape (12, 8, 8, 4)"),
        (np.zeros((12, 8, 8, 3), np.float32), "must be uint8, found float32"),
        (np.zeros((11, 8, 8, 3), np.uint8), "'images' has 11 rows but 'sources' has 12"),
    ],
)
def test_wrong_images(tmp_path: Path, images: np.ndarray, expected: str) -> None:
    assert expected in _error(write_layout_file(tmp_path / "i.h5", images=images))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"sources": np.zeros((12,), np.int64)}, "'sources' must be N x K"),
        ({"sources": np.zeros((12, 2), np.float32)}, "'sources' must be integer, found float32"),
        ({"sources": np.zeros((12, 3), np.int64)}, "has 3 columns but 2 source names"),
        ({"sizes": [3]}, "2 source names but 1 source sizes"),
        ({"sizes": [3, 0]}, "must be positive"),
        ({"sizes": [3.0, 4.0]}, "must be a list of integers"),
        ({"names": ["a", "a"]}, "repeated names"),
    ],
)
def test_wrong_sources_or_attributes(tmp_path: Path, kwargs: dict, expected: str) -> None:
    assert expected in _error(write_layout_file(tmp_path / "s.h5", **kwargs))


def test_source_out_of_range_names_source_and_row(tmp_path: Path) -> None:
    sources = np.stack(np.unravel_index(np.arange(12), LAYOUT_SIZES), 1).astype(np.int64)
    sources[7, 1] = 4
    message = _error(write_layout_file(tmp_path / "r.h5", sources=sources))
    assert message.endswith("source 'scale' has index 4 at row 7, outside its size 4 (0..3)")


def test_negative_source(tmp_path: Path) -> None:
    sources = np.zeros((12, 2), np.int64)
    sources[3, 0] = -1
    assert "source 'shape' has index -1 at row 3" in _error(write_layout_file(tmp_path / "n.h5", sources=sources))


def test_range_check_can_be_skipped(tmp_path: Path) -> None:
    sources = np.full((12, 2), 9, np.int64)
    assert read_info(write_layout_file(tmp_path / "k.h5", sources=sources), check_sources=False).num_images == 12


def test_empty_file(tmp_path: Path) -> None:
    path = write_layout_file(
        tmp_path / "e.h5", images=np.zeros((0, 8, 8, 3), np.uint8), sources=np.zeros((0, 2), np.int64)
    )
    assert _error(path).endswith("holds no images")


def test_error_rebuilt_from_its_message_keeps_it() -> None:
    error = DatasetError("f.h5", "missing dataset 'images'\n(details)")
    assert str(error) == "f.h5: missing dataset 'images' (details)"
    assert str(DatasetError(str(error))) == str(error)
