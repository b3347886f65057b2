"""The InfoMEC and DCI Metric classes: compute() equals the functional forms on the same samples, however they
arrive in update() batches, and two DDP ranks (gloo) with half the samples each agree with one process."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tripod_pl.metrics import dci, infomec
from tripod_pl.metrics.classes import DCI, InfoMEC

from ._data import make_latents, make_sources


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def _batches(metric, sources: np.ndarray, latents: np.ndarray, splits=(0, 37, 150, 300)) -> dict:
    for lo, hi in zip(splits[:-1], splits[1:]):
        metric.update(torch.as_tensor(latents[lo:hi]), torch.as_tensor(sources[lo:hi]))
    return metric.compute()


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("protocol", ["paper", "converged"])
def test_infomec_class_equals_the_function(discrete, protocol):
    sources = make_sources(300)
    latents = make_latents("noisy", sources, discrete)
    metric = InfoMEC(discrete=discrete, infoe_protocol=protocol)
    out = _batches(metric, sources, latents)
    _assert_same(out, infomec(sources, latents, discrete, infoe_protocol=protocol))
    metric.reset()
    assert metric.latents == [] and metric.sources == []


def test_dci_class_equals_the_function():
    sources = make_sources(300)
    latents = make_latents("rotated", sources, True)
    out = _batches(DCI(n_estimators=10, max_depth=4), sources, latents)
    _assert_same(out, dci(sources, latents, n_estimators=10, max_depth=4))


def test_bad_options_and_updates_are_refused():
    with pytest.raises(ValueError, match="backend"):
        InfoMEC(backend="jax")
    with pytest.raises(ValueError, match="infoe_protocol"):
        InfoMEC(infoe_protocol="exact")
    with pytest.raises(ValueError, match="same B"):
        DCI().update(torch.zeros(4, 2), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="before any update"):
        DCI().compute()


def _worker(rank: int, world: int, port: int, sources: np.ndarray, latents: np.ndarray, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        half = len(sources) // world
        rows = slice(rank * half, (rank + 1) * half)
        metrics = {"infomec": InfoMEC(discrete=True), "dci": DCI(n_estimators=10, max_depth=4)}
        for metric in metrics.values():
            metric.update(torch.as_tensor(latents[rows]), torch.as_tensor(sources[rows]))
        out = {name: metric.compute() for name, metric in metrics.items()}  # gathers every rank's samples
        if rank == 0:
            queue.put(out)
        dist.barrier()
    except Exception as err:  # reported instead of leaving the test waiting
        queue.put(f"rank {rank}: {type(err).__name__}: {err}")
        raise
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_with_half_the_samples_each_equal_one_process():
    sources = make_sources(300)
    latents = make_latents("noisy", sources, True)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + (os.getpid() + 457) % 1000
    procs = [ctx.Process(target=_worker, args=(r, 2, port, sources, latents, queue)) for r in range(2)]
    for p in procs:
        p.start()
    out = queue.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
    assert isinstance(out, dict), out
    _assert_same(out["infomec"], infomec(sources, latents, True))
    _assert_same(out["dci"], dci(sources, latents, n_estimators=10, max_depth=4))
