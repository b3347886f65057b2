"""Helpers for the callback tests: a tiny model, a tiny data module, a quiet trainer, and (until the metrics
land) stand-in metrics."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

import tripod_pl.metrics
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


def _stub_infomec(sources, latents, discrete, backend="torch"):
    z = latents.detach().double().cpu().numpy()
    k = sources.shape[1]
    active = np.percentile(z, 75, axis=0) - np.percentile(z, 25, axis=0) > 0.1
    nmi = np.nan_to_num(np.abs(np.corrcoef(np.c_[sources.double().cpu().numpy(), z].T)[:k, k:]))
    return {"infom": float(z.mean()), "infoc": float(z.std()), "infoe": 0.5, "nmi": nmi, "active": active}


def _stub_dci(sources, latents, backend="torch"):
    z = latents.detach().double().cpu().numpy()
    importance = np.ones((z.shape[1], sources.shape[1]))
    return {"d": float(z.max()), "c": float(z.min()), "i": 0.25, "importance": importance}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine two threads per process oversubscribe it and a tiny
    training step takes seconds instead of a tenth of one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _metrics_until_they_exist(monkeypatch):
    """The metrics are written in parallel; stand in for them only while they are missing."""
    if not hasattr(tripod_pl.metrics, "infomec"):
        monkeypatch.setattr(tripod_pl.metrics, "infomec", _stub_infomec, raising=False)
    if not hasattr(tripod_pl.metrics, "dci"):
        monkeypatch.setattr(tripod_pl.metrics, "dci", _stub_dci, raising=False)
