"""Streaming an .npz member block by block (MPI3D's 5.7 GB of images are never loaded at once)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tripod_pl.data import DatasetError
from tripod_pl.data.prepare.npz import NpzRows


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_blocks_cover_the_array_in_order(tmp_path: Path, save) -> None:
    array = np.arange(23 * 4 * 3, dtype=np.int16).reshape(23, 4, 3)
    save(tmp_path / "a.npz", other=np.zeros(3), images=array)
    with NpzRows(tmp_path / "a.npz", "images") as rows:
        assert rows.shape == (23, 4, 3) and rows.dtype == np.int16
        blocks = list(rows.blocks(5))
    assert [start for start, _ in blocks] == [0, 5, 10, 15, 20]
    assert max(len(b) for _, b in blocks) == 5
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), array)


def test_truncated_member_is_an_error(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "t.npz", "w") as z:
        header = np.lib.format.header_data_from_array_1_0(np.zeros((10, 4), np.uint8))
        with z.open("images.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(b"\x00" * 12)  # 3 of 10 rows
    with NpzRows(tmp_path / "t.npz", "images") as rows, pytest.raises(DatasetError, match="truncated at row"):
        list(rows.blocks(4))


def test_fortran_order_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "f.npz", images=np.asfortranarray(np.zeros((4, 3), np.uint8)))
    with pytest.raises(DatasetError, match="Fortran order"):
        NpzRows(tmp_path / "f.npz", "images")
