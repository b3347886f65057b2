"""Exact resume: after load_state_dict, training continues with the batches an uninterrupted run gets next."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tripod_pl.data import HDF5DataModule

from .helpers import SMALL_FACTORS, row_ids

SIZES = list(SMALL_FACTORS.values())
OPTIONS = {"batch_size": 8, "val_fraction": 0.125, "block_rows": 16, "shuffle_blocks": 2, "pin_memory": False}
PER_EPOCH = 252 // 8  # 31 batches


def _dm(path: str, **kwargs) -> HDF5DataModule:
    return HDF5DataModule(path, **{**OPTIONS, **kwargs})


def _take(loader, n: int | None = None) -> list[np.ndarray]:
    return [row_ids(b["sources"], SIZES) for b in itertools.islice(loader, n)]


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("workers", "k"), [(0, 5), (2, 5), (2, 12), (3, 30)])
def test_resume_continues_exactly(small_h5: str, workers: int, k: int) -> None:
    reference = _dm(small_h5, num_workers=workers)
    loader = reference.train_dataloader()
    uninterrupted = _take(loader) + _take(loader)  # epochs 0 and 1

    interrupted = _dm(small_h5, num_workers=workers)
    _take(interrupted.train_dataloader(), k)
    state = interrupted.state_dict()
    assert state["epoch"] == 0 and state["batches_consumed"] == k

    resumed = _dm(small_h5, num_workers=workers)
    resumed.load_state_dict(state)
    loader = resumed.train_dataloader()
    _assert_same(_take(loader) + _take(loader), uninterrupted[k:])


def test_state_at_the_end_of_an_epoch_resumes_with_the_next_epoch(small_h5: str) -> None:
    reference = _dm(small_h5, num_workers=0)
    loader = reference.train_dataloader()
    _take(loader)
    state = reference.state_dict()
    assert (state["epoch"], state["batches_consumed"]) == (0, PER_EPOCH)
    resumed = _dm(small_h5, num_workers=0)
    resumed.load_state_dict(state)
    _assert_same(_take(resumed.train_dataloader()), _take(loader))


def test_a_different_number_of_workers_restarts_the_epoch_with_a_warning(small_h5: str) -> None:
    interrupted = _dm(small_h5, num_workers=0)
    _take(interrupted.train_dataloader(), 7)
    resumed = _dm(small_h5, num_workers=2)
    resumed.load_state_dict(interrupted.state_dict())
    with pytest.warns(UserWarning, match="restarts from its first batch"):
        loader = resumed.train_dataloader()
    assert len(_take(loader)) == PER_EPOCH


class _Recorder(L.LightningModule):
    """Records the rows of every training batch; learns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[np.ndarray] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (3, 64, 64)
        self.seen.append(row_ids(batch["sources"].cpu(), SIZES))
        return (self.weight * batch["image"].mean()) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(
    path: str,
    tmp_path: Path,
    max_steps: int,
    ckpt: str | None = None,
    every: int | None = None,
    data: dict | None = None,
    **trainer,
):
    model = _Recorder()
    callbacks = [ModelCheckpoint(tmp_path, "{step}", every_n_train_steps=every, save_top_k=-1)] if every else []
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(every),
        callbacks=callbacks,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        **trainer,
    )
    trainer.fit(model, datamodule=_dm(path, **{"num_workers": 0, **(data or {})}), ckpt_path=ckpt)
    return model.seen


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("stop", [12, PER_EPOCH])
def test_lightning_checkpoint_resumes_the_data_order(small_h5: str, tmp_path: Path, stop: int) -> None:
    total = PER_EPOCH + 9
    uninterrupted = _fit(small_h5, tmp_path / "a", total)
    assert len(uninterrupted) == total
    first = _fit(small_h5, tmp_path / "b", stop, every=stop)
    _assert_same(first, uninterrupted[:stop])
    resumed = _fit(small_h5, tmp_path / "c", total, ckpt=str(tmp_path / "b" / f"step={stop}.ckpt"))
    _assert_same(resumed, uninterrupted[stop:])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_short_trainer_epochs_walk_through_the_data_epoch(small_h5: str, tmp_path: Path) -> None:
    """With ``limit_train_batches``, trainer epochs are consecutive slices of one pass over the data
    (the slice that reaches the end of the pass is shorter), not the same first batches again and again."""
    uninterrupted = _fit(small_h5, tmp_path / "a", 45)
    sliced = _fit(small_h5, tmp_path / "b", -1, max_epochs=5, limit_train_batches=10)
    _assert_same(sliced, uninterrupted[: 10 + 10 + 10 + 1 + 10])


def test_lightning_sees_a_resumable_loader(small_h5: str, tmp_path: Path) -> None:
    """The train loader is stateful for Lightning: its state rides in the checkpoint, resuming mid-epoch draws no
    "not resumable" warning, and an order saved under other options warns once (not once per restore)."""
    from lightning.fabric.utilities.types import _Stateful

    assert isinstance(_dm(small_h5, num_workers=0).train_dataloader(), _Stateful)
    _fit(small_h5, tmp_path / "b", 12, every=12)
    ckpt = str(tmp_path / "b" / "step=12.ckpt")
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    [state] = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert (state["epoch"], state["batches_consumed"]) == (0, 12)
    for data, expected in [({}, 0), ({"shuffle_blocks": 3}, 1)]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _fit(small_h5, tmp_path / "c", 14, ckpt=ckpt, data=data)
        messages = [str(w.message) for w in caught]
        assert not [m for m in messages if "not resumable" in m], messages
        assert len([m for m in messages if "restarts from its first batch" in m]) == expected, messages
