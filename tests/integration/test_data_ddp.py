"""Under Lightning DDP (2 CPU processes), each rank streams its own shard: disjoint, complete, same length."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from tripod_pl.data import HDF5DataModule

from ..data.helpers import SMALL_SIZES, row_ids, write_small

OPTIONS = {"batch_size": 8, "val_fraction": 0.125, "block_rows": 16, "shuffle_blocks": 2, "pin_memory": False}


class _RankRecorder(L.LightningModule):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[np.ndarray] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append(row_ids(batch["sources"], SMALL_SIZES))
        return (self.weight * batch["image"].mean()) ** 2

    def on_train_end(self) -> None:
        np.save(
            Path(self.out) / f"rank{self.global_rank}.npy",
            np.stack([np.pad(b, (0, 8 - len(b)), constant_values=-1) for b in self.seen]),
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.fixture
def small_h5(tmp_path: Path) -> str:
    return write_small(tmp_path / "small.h5")


@pytest.mark.slow
def test_ddp_ranks_get_disjoint_complete_equal_shards(small_h5: str, tmp_path: Path) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(
        _RankRecorder(str(tmp_path)), datamodule=HDF5DataModule(small_h5, num_workers=1, drop_last=False, **OPTIONS)
    )
    ranks = [np.load(tmp_path / f"rank{r}.npy") for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 16  # 126 rows per rank: 15 batches of 8, one of 6
    rows = np.concatenate([r.ravel() for r in ranks])
    rows = rows[rows >= 0]
    dm = HDF5DataModule(small_h5, num_workers=1, drop_last=False, **OPTIONS)
    np.testing.assert_array_equal(np.sort(rows), np.setdiff1d(np.arange(288), dm.val_rows()))
    for r in range(2):
        expected = dm.train_plan(r, 2).batch_rows(0, 1)
        got = [b[b >= 0] for b in ranks[r]]
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
