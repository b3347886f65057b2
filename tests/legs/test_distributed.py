"""Global batch statistics: 2 ranks x b/2 reproduce 1 process x b (values and gradients), on gloo."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tripod_pl.legs import FSQ, KLM, NHP, BetaTC, GaussianBottleneck, StepContext
from tripod_pl.legs import functional as LF
from tripod_pl.nets import Decoder


def test_row_subsets_average_to_the_full_batch_estimate():
    torch.manual_seed(0)
    z, s = torch.randn(8, 3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    halves = [LF.klm(z, s, rows=slice(0, 4)), LF.klm(z, s, rows=slice(4, 8))]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, LF.klm(z, s))
    mu, sigma = torch.randn(8, 3, dtype=torch.float64), torch.rand(8, 3, dtype=torch.float64) + 0.5
    full = LF.beta_tc(z, mu, sigma, 100)
    parts = [LF.beta_tc(z, mu, sigma, 100, rows=slice(i, i + 4)) for i in (0, 4)]
    for key in full:
        torch.testing.assert_close((parts[0][key] + parts[1][key]) / 2, full[key])


def _losses(h: torch.Tensor, decoder: Decoder, batch_stats: str) -> torch.Tensor:
    fsq_lat = FSQ(12)(h[:, :3])
    gauss_lat = GaussianBottleneck(sample_in_eval=False).eval()(h)
    x = torch.zeros(h.shape[0], 3, 16, 16)
    beta = BetaTC(batch_stats=batch_stats)
    beta.build(3, 1000)
    torch.manual_seed(123)  # same NHP draws for the rows of every rank: draws are per sample
    terms = {
        **KLM(batch_stats=batch_stats)(StepContext(x, fsq_lat, decoder)),
        **beta(StepContext(x, gauss_lat, decoder)),
    }
    return sum(terms.values())


def _worker(rank: int, world: int, port: int, h_full: torch.Tensor, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        decoder = Decoder(3, widths=[8, 4], cond_dim=8, image_size=16)
        b = h_full.shape[0] // world
        h = h_full[rank * b : (rank + 1) * b].clone().requires_grad_()
        loss = _losses(h, decoder, "global")
        loss.backward()
        grad = h.grad.clone()
        dist.all_reduce(grad)  # rows of other ranks are zero-padded below, so sum = concatenation
        grads = torch.zeros_like(h_full)
        grads[rank * b : (rank + 1) * b] = h.grad
        dist.all_reduce(grads)
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0:
            # NumPy travels by value: a tensor would travel as a shared-memory handle that dies with this process
            queue.put(((total / world).numpy(), (grads / world).numpy()))
        dist.barrier()  # no rank tears the group down while another still uses it
    finally:
        dist.destroy_process_group()
    _exit_now(queue)


def _exit_now(queue) -> None:
    """Ends a worker that succeeded without the interpreter's teardown, where gloo's threads sometimes abort the
    process ("terminate called without an active exception", exit code -6) on a loaded machine."""
    queue.close()
    queue.join_thread()  # what was put has been handed to the pipe
    os._exit(0)


def test_global_batch_stats_on_two_ranks_match_one_process():
    torch.manual_seed(0)
    h_full = torch.randn(12, 6)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=_worker, args=(r, 2, port, h_full, queue)) for r in range(2)]
    for p in procs:
        p.start()
    loss2, grad2 = (torch.from_numpy(a) for a in queue.get(timeout=120))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    torch.manual_seed(0)
    decoder = Decoder(3, widths=[8, 4], cond_dim=8, image_size=16)
    h = h_full.clone().requires_grad_()
    loss1 = _losses(h, decoder, "global")
    loss1.backward()
    torch.testing.assert_close(loss2, loss1.detach(), rtol=1e-5, atol=1e-6)
    # DDP averages parameter gradients over ranks: the averaged per-row gradients equal the 1-process ones
    torch.testing.assert_close(grad2, h.grad, rtol=1e-4, atol=1e-6)


def test_batch_stats_must_be_global_or_local():
    from tripod_pl.legs.distributed import gather_batch

    with pytest.raises(ValueError, match="batch_stats"):
        gather_batch(torch.zeros(2, 2), "everywhere")
    t = torch.zeros(3, 2)
    assert gather_batch(t)[0] is t and gather_batch(t)[1] == slice(0, 3)
    assert NHP(batch_stats="local").batch_stats == "local"


def _uneven_worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from tripod_pl.legs.distributed import gather_batch

        t = torch.full((2 + rank, 3), float(rank), requires_grad=True)  # ranks hold 2 and 3 rows
        full, rows = gather_batch(t)
        (full * torch.arange(1.0, full.shape[0] + 1)[:, None]).sum().backward()
        queue.put((rank, full.detach().numpy(), rows, t.grad.numpy()))  # by value (see _worker)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    _exit_now(queue)


def test_ranks_with_different_batch_sizes_gather_without_padding_rows():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + (os.getpid() + 500) % 1000
    procs = [ctx.Process(target=_uneven_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r[0], r[1:]) for r in (queue.get(timeout=120), queue.get(timeout=120)))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    expected = torch.tensor([[0.0] * 3] * 2 + [[1.0] * 3] * 3)
    for rank, (full, rows, grad) in results.items():
        full, grad = torch.from_numpy(full), torch.from_numpy(grad)
        torch.testing.assert_close(full, expected)
        assert rows == (slice(0, 2) if rank == 0 else slice(2, 5))
        # each rank's loss weights row i by i+1; the gather's backward sums both ranks' gradients
        weights = torch.arange(1.0, 6.0)[rows]
        torch.testing.assert_close(grad, 2 * weights[:, None].expand(-1, 3))
