"""Asynchronous evaluation under two-process DDP on CPU (gloo): each evaluation is logged once, at its own step,
collected where every rank takes part (the next evaluation, the end of training)."""

from __future__ import annotations

import os

import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tripod_pl.callbacks import EvaluationCallback

from ..helpers import tiny_data
from .test_ddp_callbacks import ddp_trainer, fsq_model

pytestmark = pytest.mark.slow


def test_ddp_asynchronous_evaluations_are_logged_once_at_their_steps(tmp_path, tiny_h5):
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    evaluation = EvaluationCallback(every_n_steps=1, dci=False, figures=False, asynchronous=True)
    trainer = ddp_trainer(tmp_path, [evaluation], logger=logger, enable_checkpointing=False)
    trainer.fit(fsq_model(), datamodule=tiny_data(tiny_h5, 64))
    events = EventAccumulator(os.path.join(str(tmp_path), "tb", "version_0"))
    events.Reload()
    assert [e.step for e in events.Scalars("eval/infom")] == [1, 2, 3, 4]
