"""DIP-VAE's covariance penalties against a NumPy transcription of Kulkarni et al. (2018)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripod_pl.legs import DIPVAE, GaussianBottleneck, IdentityBottleneck, StepContext, build_leg
from tripod_pl.legs.dipvae import dip_covariance, dip_penalties
from tripod_pl.nets import Decoder


def _np_dip(mu: np.ndarray, sigma: np.ndarray, kind: str) -> tuple[float, float]:
    """The paper's regularizers with loops: ``Cov_p(x)[mu(x)]`` (I) or ``E[Sigma(x)] + Cov[mu(x)]`` (II),
    ``sum_{i != j} C_ij^2`` and ``sum_i (C_ii - 1)^2``."""
    b, n = mu.shape
    mean = [sum(mu[s, i] for s in range(b)) / b for i in range(n)]
    cov = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            cov[i, j] = sum((mu[s, i] - mean[i]) * (mu[s, j] - mean[j]) for s in range(b)) / b
            if kind == "ii" and i == j:
                cov[i, j] += sum(sigma[s, i] ** 2 for s in range(b)) / b
    off = sum(cov[i, j] ** 2 for i in range(n) for j in range(n) if i != j)
    diag = sum((cov[i, i] - 1) ** 2 for i in range(n))
    return off, diag


def _ctx(latents, batch, size=8):
    x = torch.rand(batch, 3, size, size) * 2 - 1
    n_z = latents.z.shape[1]
    return StepContext(x=x, latents=latents, decoder=Decoder(n_z, widths=[8, 4], cond_dim=8, image_size=size))


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_penalties_match_the_papers_formulas(kind):
    torch.manual_seed(0)
    mu = torch.randn(12, 4, dtype=torch.float64) @ torch.randn(4, 4, dtype=torch.float64)
    sigma = torch.rand(12, 4, dtype=torch.float64) + 0.1
    cov = dip_covariance(mu, sigma if kind == "ii" else None)
    posterior = np.diag((sigma.numpy() ** 2).mean(0)) if kind == "ii" else 0
    np.testing.assert_allclose(cov.numpy(), np.cov(mu.numpy(), rowvar=False, bias=True) + posterior, rtol=1e-12)
    off, diag = dip_penalties(cov)
    want_off, want_diag = _np_dip(mu.numpy(), sigma.numpy(), kind)
    assert (off.item(), diag.item()) == (pytest.approx(want_off, rel=1e-12), pytest.approx(want_diag, rel=1e-12))


def test_whitened_means_have_no_penalty_and_dip_ii_counts_the_posterior_variance():
    torch.manual_seed(0)
    mu = torch.randn(50, 3, dtype=torch.float64)
    mu = mu - mu.mean(0)
    whiten = torch.linalg.cholesky(mu.T @ mu / 50)
    mu = mu @ torch.linalg.inv(whiten).T  # population covariance exactly I
    off, diag = dip_penalties(dip_covariance(mu))
    assert off.item() == pytest.approx(0, abs=1e-20) and diag.item() == pytest.approx(0, abs=1e-20)
    # II: the same means with posterior std 0.5 have diagonal covariance 1.25 -> 3 * 0.25^2
    off, diag = dip_penalties(dip_covariance(mu, torch.full_like(mu, 0.5)))
    assert off.item() == pytest.approx(0, abs=1e-20) and diag.item() == pytest.approx(3 * 0.0625, rel=1e-12)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_dip_leg_divides_by_pixels_weights_lambdas_and_reaches_the_encoder(kind):
    torch.manual_seed(1)
    h = torch.randn(10, 6, dtype=torch.float64, requires_grad=True)
    lat = GaussianBottleneck()(h)
    leg = DIPVAE(kind=kind, lambda_od=3.0, lambda_d=30.0)
    out = leg(_ctx(lat, 10))
    want_off, want_diag = _np_dip(lat.mu.detach().numpy(), lat.sigma.detach().numpy(), kind)
    pixels = 3 * 8 * 8
    assert out["dip_offdiag"].item() == pytest.approx(want_off / pixels, rel=1e-5)
    assert out["dip_diag"].item() == pytest.approx(want_diag / pixels, rel=1e-5)
    assert leg.weights == {"dip_offdiag": 3.0, "dip_diag": 30.0}
    (out["dip_offdiag"] + out["dip_diag"]).backward()
    sigma_grad = h.grad[:, 3:].abs().sum().item()
    assert h.grad[:, :3].abs().sum() > 0 and (sigma_grad > 0 if kind == "ii" else sigma_grad == 0)
    assert build_leg(leg.spec()).spec() == leg.spec()


def test_bad_kind_and_missing_gaussian_bottleneck_are_clear_errors():
    with pytest.raises(ValueError, match="kind must be 'i' or 'ii'"):
        DIPVAE(kind="iii")
    with pytest.raises(RuntimeError, match="Gaussian bottleneck"):
        DIPVAE()(_ctx(IdentityBottleneck()(torch.randn(6, 3)), 6))


# ---- global batch statistics under DDP ------------------------------------------------------------------


def _dip_mmd_loss(h: torch.Tensor) -> torch.Tensor:
    """DIP-VAE-II and MMD (both gathering the global batch) on a Gaussian bottleneck without sampling."""
    from tripod_pl.legs import MMD

    lat = GaussianBottleneck(sample_in_eval=False).eval()(h)
    ctx = StepContext(x=torch.zeros(h.shape[0], 3, 8, 8), latents=lat, decoder=None)
    torch.manual_seed(7)  # the same prior draws (of the global batch's size) on every rank
    terms = {**DIPVAE(kind="ii")(ctx), **MMD(kernel="rbf")(ctx)}
    return sum(terms.values())


def _ddp_worker(rank: int, world: int, port: int, h_full: torch.Tensor, queue) -> None:
    import os

    import torch.distributed as dist

    from .test_distributed import _exit_now

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        b = h_full.shape[0] // world
        h = h_full[rank * b : (rank + 1) * b].clone().requires_grad_()
        loss = _dip_mmd_loss(h)
        loss.backward()
        grads = torch.zeros_like(h_full)
        grads[rank * b : (rank + 1) * b] = h.grad
        dist.all_reduce(grads)
        losses = [torch.zeros(()) for _ in range(world)]
        dist.all_gather(losses, loss.detach())
        if rank == 0:
            queue.put(([x.item() for x in losses], (grads / world).numpy()))  # DDP averages over ranks
        dist.barrier()
    finally:
        dist.destroy_process_group()
    _exit_now(queue)


@pytest.mark.slow  # two spawned gloo processes: ~10 s on the shared 2-core machine
def test_two_ranks_compute_the_one_process_penalties_and_gradients():
    """Every rank computes the global batch's statistic; all-gather's backward sums the ranks' gradients and
    DDP's averaging divides by the ranks: the single-process gradient."""
    import os

    import torch.multiprocessing as mp

    torch.manual_seed(0)
    h_full = torch.randn(12, 6)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + (os.getpid() + 250) % 1000
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, h_full, queue)) for r in range(2)]
    for p in procs:
        p.start()
    losses, grad2 = queue.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    h = h_full.clone().requires_grad_()
    loss1 = _dip_mmd_loss(h)
    loss1.backward()
    assert losses == pytest.approx([loss1.item()] * 2, rel=1e-5)
    torch.testing.assert_close(torch.from_numpy(grad2), h.grad, rtol=1e-4, atol=1e-9)


def test_the_covariance_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    mu = torch.randn(64, 5) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cov = dip_covariance(mu)
    assert cov.dtype == torch.float32
    torch.testing.assert_close(
        cov, torch.from_numpy(np.cov(mu.numpy(), rowvar=False, bias=True)).float(), rtol=1e-5, atol=1e-5
    )
