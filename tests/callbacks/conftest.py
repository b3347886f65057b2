"""Helpers for the callback tests: a tiny model, a tiny data module, a quiet trainer, and (until the metrics
land) stand-in metrics."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tripod_pl import TripodModule
from tripod_pl.data import HDF5DataModule
from tripod_pl.legs import FSQ, KLM

from ..conftest import TINY


def tiny_model(seed: int = 0) -> TripodModule:
    torch.manual_seed(seed)
    return TripodModule(FSQ(), [KLM()], n_z=4, **TINY)


def tiny_data(path: str, eval_size: int = 200) -> HDF5DataModule:
    return HDF5DataModule(path, batch_size=16, num_workers=0, eval_size=eval_size)


def tiny_trainer(tmp_path, callbacks, **kw) -> L.Trainer:
    """A quiet trainer; no validation unless ``val_check_interval`` is given."""
    opts = dict(
        max_steps=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    if "val_check_interval" in kw:
        opts.update(limit_val_batches=1, check_val_every_n_epoch=None)
    opts.update(kw)
    return L.Trainer(callbacks=callbacks, **opts)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine two threads per process oversubscribe it and a tiny
    training step takes seconds instead of a tenth of one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
