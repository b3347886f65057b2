"""Atomic writing: a dataset file appears complete or not at all, chunked in whole-image blocks."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from tripod_pl.data import DatasetError, DatasetWriter, read_info, write_batches, write_dataset
from tripod_pl.data.prepare.writer import sources_dtype

from ..helpers import read_all


def _arrays(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), np.stack([np.arange(n) % 2, np.arange(n) % 5], 1)


def test_round_trip(tmp_path: Path) -> None:
    images, sources = _arrays()
    info = write_dataset(tmp_path / "d.h5", images, sources, ["a", "b"], [2, 5], chunk_rows=4)
    assert read_info(tmp_path / "d.h5") == info
    got_images, got_sources = read_all(tmp_path / "d.h5")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_sources, sources)
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["images"].chunks == (4, 8, 8, 3)
        assert f["sources"].dtype == np.uint8
    assert os.listdir(tmp_path) == ["d.h5"]


def test_batches_add_up(tmp_path: Path) -> None:
    images, sources = _arrays()
    batches = [(images[:3], sources[:3]), (images[3:], sources[3:])]
    write_batches(tmp_path / "d.h5", batches, 10, (8, 8, 3), ["a", "b"], [2, 5])
    np.testing.assert_array_equal(read_all(tmp_path / "d.h5")[0], images)


def test_failure_leaves_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "d.h5"
    target.write_bytes(b"previous")
    images, sources = _arrays()

    def batches():
        yield images[:5], sources[:5]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_batches(target, batches(), 10, (8, 8, 3), ["a", "b"], [2, 5])
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["d.h5"]


def test_too_few_rows_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    images, sources = _arrays()
    with pytest.raises(ValueError, match="5 rows written, 10 announced"):
        write_batches(tmp_path / "d.h5", [(images[:5], sources[:5])], 10, (8, 8, 3), ["a", "b"], [2, 5])
    assert os.listdir(tmp_path) == []


def test_out_of_range_sources_are_refused(tmp_path: Path) -> None:
    images, sources = _arrays()
    with pytest.raises(DatasetError, match="source 'b' has index 4 at row 4, outside its size 4"):
        write_dataset(tmp_path / "d.h5", images, sources, ["a", "b"], [2, 4])
    assert os.listdir(tmp_path) == []


def _write_half_then_die(path: str) -> None:
    images, sources = _arrays()
    writer = DatasetWriter(path, 10, (8, 8, 3), ["a", "b"], [2, 5])
    writer.write(images[:5], sources[:5])
    os._exit(0)  # killed: no cleanup runs


def test_killed_writer_leaves_no_file_that_looks_valid(tmp_path: Path) -> None:
    process = multiprocessing.get_context("fork").Process(target=_write_half_then_die, args=(str(tmp_path / "d.h5"),))
    process.start()
    process.join(30)
    assert not (tmp_path / "d.h5").exists()
    leftovers = os.listdir(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].startswith(".d.h5.") and leftovers[0].endswith(".tmp")


def test_missing_output_directory(tmp_path: Path) -> None:
    images, sources = _arrays()
    with pytest.raises(DatasetError, match="output directory does not exist"):
        write_dataset(tmp_path / "no" / "d.h5", images, sources, ["a", "b"], [2, 5])


def test_sources_dtype_is_the_smallest_that_fits() -> None:
    assert sources_dtype([2, 256]) == np.uint8
    assert sources_dtype([257]) == np.uint16
    assert sources_dtype([70_000]) == np.uint32
