"""HDF5DataModule: what it exposes, what its loaders deliver, across ranks, workers, epochs and modes."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import tripod_pl.data.datamodule as datamodule_module
from tripod_pl.data import DatasetError, HDF5DataModule, generate_procedural, to_float_images

from .helpers import SMALL_FACTORS, read_all, row_ids

SIZES = list(SMALL_FACTORS.values())
#: 288 images, 36 held out, 252 for training: 2 ranks x 2 workers x 8 images per batch
OPTIONS = {"batch_size": 8, "val_fraction": 0.125, "block_rows": 16, "shuffle_blocks": 2, "pin_memory": False}


def _dm(path: str, **kwargs) -> HDF5DataModule:
    return HDF5DataModule(path, **{**OPTIONS, **kwargs})


def _rows(loader) -> list[np.ndarray]:
    return [row_ids(batch["sources"], SIZES) for batch in loader]


def test_cheap_attributes_after_init(small_h5: str) -> None:
    dm = _dm(small_h5, num_workers=0)
    assert dm.info.num_images == 288
    assert dm.num_sources == 7
    assert dm.source_names == list(SMALL_FACTORS)
    assert dm.source_sizes == SIZES
    assert dm.dataset_size == 252
    assert dm.hparams.batch_size == 8 and dm.hparams.path == small_h5


def test_batches_are_uint8_images_and_int64_sources(small_h5: str) -> None:
    dm = _dm(small_h5, num_workers=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (8, 64, 64, 3)
    assert batch["sources"].dtype == torch.int64 and batch["sources"].shape == (8, 7)
    images, _ = read_all(small_h5)
    np.testing.assert_array_equal(batch["image"].numpy(), images[row_ids(batch["sources"], SIZES)])
    moved = dm.on_after_batch_transfer(batch, 0)
    assert moved["image"].dtype == torch.float32 and moved["image"].shape == (8, 3, 64, 64)
    torch.testing.assert_close(moved["image"], batch["image"].permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert moved["sources"] is batch["sources"]


def test_to_float_images_maps_0_and_255_to_minus_one_and_one() -> None:
    x = torch.tensor([[[[0, 255, 51]]]], dtype=torch.uint8)
    torch.testing.assert_close(to_float_images(x), torch.tensor([[[[-1.0]], [[1.0]], [[-0.6]]]]))
    with pytest.raises(TypeError):
        to_float_images(x.float())


@pytest.mark.parametrize("workers", [0, 2])
def test_delivered_batches_are_the_plan(small_h5: str, workers: int) -> None:
    dm = _dm(small_h5, num_workers=workers)
    loader = dm.train_dataloader()
    assert len(loader) == 252 // 8
    got = _rows(loader)
    expected = dm.train_plan().batch_rows(0, max(1, workers))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_no_sample_repeated_or_dropped_over_2_ranks_x_2_workers(small_h5: str) -> None:
    per_rank = []
    for rank in range(2):
        dm = _dm(small_h5, num_workers=2, drop_last=False)
        per_rank.append(_rows(dm.training_loader(rank, world_size=2)))
    assert len(per_rank[0]) == len(per_rank[1])
    rows = np.concatenate([b for rank in per_rank for b in rank])
    val = _dm(small_h5).val_rows()
    np.testing.assert_array_equal(np.sort(rows), np.setdiff1d(np.arange(288), val))


def test_shuffle_order_changes_across_epochs_and_repeats_with_the_seed(small_h5: str) -> None:
    dm = _dm(small_h5, num_workers=0, drop_last=False)
    loader = dm.train_dataloader()
    epoch0, epoch1 = np.concatenate(_rows(loader)), np.concatenate(_rows(loader))
    assert dm.state_dict()["epoch"] == 1
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(np.sort(epoch0), np.sort(epoch1))
    again = _dm(small_h5, num_workers=0, drop_last=False)
    np.testing.assert_array_equal(np.concatenate(_rows(again.train_dataloader())), epoch0)
    again.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate(_rows(again.train_dataloader())), epoch1)
    other = _dm(small_h5, num_workers=0, drop_last=False, seed=1)
    assert not np.array_equal(np.concatenate(_rows(other.train_dataloader())), epoch0)


@pytest.mark.parametrize("workers", [0, 2])
def test_in_memory_delivers_the_same_batches(small_h5: str, workers: int) -> None:
    streamed = _dm(small_h5, num_workers=workers)
    held = _dm(small_h5, num_workers=workers, in_memory=True)
    for a, b in zip(streamed.train_dataloader(), held.train_dataloader()):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["sources"], b["sources"])
    assert held._memory is not None and held._memory.images.is_shared()


def test_persistent_workers_survive_an_abandoned_epoch(small_h5: str) -> None:
    dm = _dm(small_h5, num_workers=2)
    loader = dm.train_dataloader()
    first = []
    for i, batch in enumerate(loader):
        first.append(row_ids(batch["sources"], SIZES))
        if i == 4:
            break
    rest = _rows(loader)  # no trainer: continues after the 5 consumed batches
    expected = dm.train_plan().batch_rows(0, 2)
    for a, b in zip(first + rest, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.concatenate(_rows(loader)), np.concatenate(dm.train_plan().batch_rows(1, 2)))


@pytest.mark.parametrize("workers", [0, 2])
def test_validation_is_the_held_out_rows_spread_over_the_file(small_h5: str, workers: int) -> None:
    dm = _dm(small_h5, num_workers=workers, val_batch_size=5)
    val = np.concatenate(_rows(dm.val_dataloader()))
    assert len(val) == 36 == len(np.unique(val))
    assert val.min() < 100 and val.max() > 188  # not the file's tail
    train = np.concatenate(_rows(dm.train_dataloader()))
    assert not np.intersect1d(val, train).size
    np.testing.assert_array_equal(np.concatenate(_rows(dm.test_dataloader())), val)
    images, _ = read_all(small_h5)
    batch = next(iter(dm.val_dataloader()))
    np.testing.assert_array_equal(batch["image"].numpy(), images[row_ids(batch["sources"], SIZES)])


@pytest.mark.parametrize("workers", [0, 2])
def test_the_first_validation_batches_are_a_sample_of_the_whole_split(small_h5: str, workers: int) -> None:
    # limit_val_batches reads the first batches: in a file in factorial order, the split's first rows in row
    # order would hold only the fastest-varying sources; a seeded order spreads them over the split
    dm = _dm(small_h5, num_workers=workers, val_batch_size=5)
    batches = _rows(dm.val_dataloader())
    split = dm.val_rows()
    first = np.concatenate(batches[:2])
    assert not np.array_equal(np.sort(first), split[:10]) and first.max() > np.median(split)
    assert all(np.array_equal(b, np.sort(b)) for b in batches)  # each batch read in row order
    again = _rows(_dm(small_h5, num_workers=0, val_batch_size=5).val_dataloader())
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))  # the same order every time
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), split)


def test_validation_is_padded_to_equal_batch_counts_over_ranks(small_h5: str, monkeypatch) -> None:
    dm = _dm(small_h5, num_workers=0, val_batch_size=5)  # 36 rows: 8 batches
    counts, seen = [], []
    for rank in range(3):
        monkeypatch.setattr(dm, "_rank_world", lambda rank=rank: (rank, 3))
        batches = _rows(dm.val_dataloader())
        counts.append(len(batches))
        seen.extend(batches)
    assert counts == [3, 3, 3]
    assert len(np.unique(np.concatenate(seen))) == 36


def test_no_validation_split(small_h5: str) -> None:
    dm = _dm(small_h5, num_workers=0, val_fraction=0.0)
    assert dm.dataset_size == 288 and dm.val_dataloader() == []


def test_predict_is_every_image_in_file_order(small_h5: str) -> None:
    dm = _dm(small_h5, num_workers=0, val_batch_size=50)
    np.testing.assert_array_equal(np.concatenate(_rows(dm.predict_dataloader())), np.arange(288))


@pytest.mark.parametrize("in_memory", [False, True])
def test_eval_subset_is_fixed_seeded_and_cached(small_h5: str, in_memory: bool) -> None:
    dm = _dm(small_h5, num_workers=0, eval_size=100, in_memory=in_memory)
    images, sources = dm.eval_subset()
    assert images.shape == (100, 64, 64, 3) and images.dtype == torch.uint8
    assert sources.shape == (100, 7) and sources.dtype == torch.int64
    assert dm.eval_subset()[0] is images
    rows = row_ids(sources, SIZES)
    assert len(np.unique(rows)) == 100
    all_images, all_sources = read_all(small_h5)
    np.testing.assert_array_equal(images.numpy(), all_images[rows])
    np.testing.assert_array_equal(sources.numpy(), all_sources[rows])
    torch.testing.assert_close(_dm(small_h5, eval_size=100).eval_subset()[1], sources)
    assert not torch.equal(_dm(small_h5, eval_size=100, seed=5).eval_subset()[1], sources)


def test_eval_subset_is_at_most_the_whole_file(small_h5: str) -> None:
    images, _ = _dm(small_h5, num_workers=0).eval_subset()  # default eval_size 10,000
    assert len(images) == 288


def test_generate_if_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    small = partial(generate_procedural, factor_sizes={name: 2 for name in SMALL_FACTORS})
    monkeypatch.setattr(datamodule_module, "generate_procedural", small)
    path = str(tmp_path / "data" / "procedural.h5")  # a folder that does not exist yet, as data/ in a fresh clone
    dm = HDF5DataModule(path, batch_size=4, num_workers=0, generate_if_missing=True)
    assert dm.info.num_images == 128 and os.listdir(tmp_path / "data") == ["procedural.h5"]
    assert (
        capsys.readouterr().out
        == f"{path} does not exist: generating the procedural dataset (43,200 64x64 images) ...\n"
    )
    stamp = os.stat(path).st_mtime_ns
    HDF5DataModule(path, batch_size=4, num_workers=0, generate_if_missing=True)
    assert os.stat(path).st_mtime_ns == stamp


@pytest.mark.parametrize("name", ["shapes3d.h5", "data.h5"])
def test_generate_if_missing_writes_nothing_under_another_name(tmp_path: Path, name: str) -> None:
    """A mistyped or not yet converted benchmark is an error, not 43,200 procedural scenes under its name."""
    path = tmp_path / name
    with pytest.raises(DatasetError, match=rf"^{path}: no such file; generate_if_missing writes .* \*procedural\*\.h5"):
        HDF5DataModule(str(path), batch_size=4, num_workers=0, generate_if_missing=True)
    assert not list(tmp_path.iterdir())


def test_a_bad_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        HDF5DataModule(str(tmp_path / "missing.h5"))


def test_a_file_gone_after_construction_fails_in_the_worker_with_a_dataset_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.h5"
    generate_procedural(path, {name: 2 for name in SMALL_FACTORS})
    loader = HDF5DataModule(str(path), batch_size=4, num_workers=1, pin_memory=False).train_dataloader()
    path.unlink()
    with pytest.raises(DatasetError, match="gone.h5: no such file"):
        next(iter(loader))
