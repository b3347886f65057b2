"""Atomic writes: a reader sees the old file or the complete new one; nothing is left behind."""

from __future__ import annotations

import os

import pytest

from tripod_pl.io import atomic_path, atomic_write_text, temporary_path


def test_a_write_that_fails_halfway_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(path) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("killed while writing")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_clean_write_replaces_the_file_with_ordinary_permissions(tmp_path):
    path = tmp_path / "new" / "metrics.md"  # the folder is created
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and os.listdir(path.parent) == ["metrics.md"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_temporary_names_are_hidden_unique_siblings(tmp_path):
    a, b = temporary_path(tmp_path / "x.ckpt"), temporary_path(tmp_path / "x.ckpt")
    assert a != b and a.parent == b.parent == tmp_path
    assert a.name.startswith(".x.ckpt.") and a.name.endswith(".tmp")
