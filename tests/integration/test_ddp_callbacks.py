"""The evaluation and selection callbacks under two-process DDP on CPU (gloo): no rank waits forever."""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tripod_pl import TripodModule
from tripod_pl.callbacks import BestInfoMCheckpoint, EvaluationCallback
from tripod_pl.legs import FSQ

from ..helpers import TINY, tiny_data

pytestmark = pytest.mark.slow


class FailingEvaluation(EvaluationCallback):
    """Fails on rank 0 only, where the evaluation runs."""

    def _evaluate_on_rank_zero(self, trainer, pl_module, step):
        raise ValueError("no evaluation subset today")


def fsq_model() -> TripodModule:
    """No batch-statistics leg: the test is about the callbacks, not about gathering uneven batches."""
    torch.manual_seed(0)
    return TripodModule(FSQ(), [], n_z=4, **TINY)


def ddp_trainer(tmp_path, callbacks, **kw) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=4, val_check_interval=2,
        check_val_every_n_epoch=None, limit_val_batches=1, num_sanity_val_steps=0, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=callbacks,
        **kw,
    )  # fmt: skip


def test_ddp_evaluates_on_rank_zero_and_selects_consistently(tmp_path, tiny_h5):
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    callbacks = [
        EvaluationCallback(every_n_steps=2, dci=False, traversal_steps=3, num_traversal_samples=1),
        BestInfoMCheckpoint(psnr_threshold=0.0, dirpath=str(tmp_path / "ckpt")),
    ]
    ddp_trainer(tmp_path, callbacks, logger=logger).fit(fsq_model(), datamodule=tiny_data(tiny_h5, 64))
    events = EventAccumulator(os.path.join(str(tmp_path), "tb", "version_0"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("eval/infom")] == [2, 4]  # once per evaluation, not once per rank
    assert "eval/nmi" in events.Tags()["images"]
    ckpt = torch.load(tmp_path / "ckpt" / "best-infom.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] in (2, 4)
    assert not (tmp_path / "ckpt" / ".best-infom.ckpt.tmp").exists()


def test_ddp_failure_on_rank_zero_ends_every_rank(tmp_path, tiny_h5):
    trainer = ddp_trainer(tmp_path, [FailingEvaluation(every_n_steps=2, figures=False)], logger=False)
    with pytest.raises(Exception, match="no evaluation subset today"):
        trainer.fit(fsq_model(), datamodule=tiny_data(tiny_h5, 64))
