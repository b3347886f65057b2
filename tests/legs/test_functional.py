"""The leg mathematics against slow, obviously-correct NumPy formulas, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tripod_pl.legs import functional as LF


@pytest.fixture(autouse=True)
def float64():
    """The maths is checked in float64; restore the default dtype for other test modules."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _np_log_normal(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def _np_logsumexp(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


# ---- FSQ ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_q", [2, 5, 12, 1000])
def test_fsq_values_lie_on_the_grid_nearest_to_tanh(n_q):
    h = torch.randn(64, 7) * 2
    z_c, z = LF.fsq(h, n_q)
    grid = np.array([2 * i / (n_q - 1) - 1 for i in range(n_q)])
    expected = grid[np.abs(np.tanh(h.numpy())[..., None] - grid).argmin(-1)]
    np.testing.assert_allclose(z_c.numpy(), np.tanh(h.numpy()), rtol=0, atol=1e-15)
    np.testing.assert_allclose(z.numpy(), expected, rtol=0, atol=1e-12)
    assert len(np.unique(np.round(z.numpy(), 9))) <= n_q


def test_fsq_gradient_is_straight_through():
    h = torch.randn(16, 5, requires_grad=True)
    _, z = LF.fsq(h, 12)
    weights = torch.randn(16, 5)
    (z * weights).sum().backward()
    expected = weights * (1 - torch.tanh(h.detach()) ** 2)  # d tanh / dh, rounding passed straight through
    torch.testing.assert_close(h.grad, expected)


def test_fsq_quantizes_in_float32_under_bf16_autocast():
    h = torch.linspace(-3, 3, 4001, dtype=torch.float32)[:, None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, z = LF.fsq(h.bfloat16(), 1000)
    assert z.dtype == torch.float32
    assert len(torch.unique(z)) > 500  # bf16 would merge the fine grid into far fewer levels


# ---- scalar codebook ----------------------------------------------------------------------------------


def test_scalar_quantize_picks_each_latents_nearest_code_with_straight_through():
    z_c = torch.randn(32, 4, requires_grad=True)
    codebook = torch.randn(4, 10)
    z_q, z = LF.scalar_quantize(z_c, codebook)
    zc, cb = z_c.detach().numpy(), codebook.numpy()
    expected = np.array([[cb[j][np.abs(cb[j] - zc[i, j]).argmin()] for j in range(4)] for i in range(32)])
    np.testing.assert_allclose(z_q.detach().numpy(), expected)
    np.testing.assert_allclose(z.detach().numpy(), expected)
    z.sum().backward()
    torch.testing.assert_close(z_c.grad, torch.ones_like(z_c))


# ---- KLM ----------------------------------------------------------------------------------------------


def _np_klm(z, s):
    b, n = z.shape
    c = (4 / (n + 2)) ** (1 / (n + 4)) * b ** (-1 / (n + 4))
    total = 0.0
    for i in range(b):
        joint = _np_logsumexp([sum(_np_log_normal(z[i, k], z[j, k], s[k] * c) for k in range(n)) for j in range(b)])
        marg = sum(_np_logsumexp([_np_log_normal(z[i, k], z[j, k], s[k]) for j in range(b)]) for k in range(n))
        total += (joint - math.log(b)) - (marg - n * math.log(b))
    return total / b


@pytest.mark.parametrize("b,n", [(8, 2), (20, 5), (33, 12)])
def test_klm_matches_numpy_kernel_density_formula(b, n):
    gen = torch.Generator().manual_seed(b * n)
    z = torch.randn(b, n, generator=gen) @ torch.randn(n, n, generator=gen)  # correlated latents
    s = z.std(0, unbiased=False) + 1e-6
    assert LF.klm(z, s).item() == pytest.approx(_np_klm(z.numpy(), s.numpy()), rel=1e-10, abs=1e-10)


def test_klm_is_larger_for_dependent_than_for_independent_latents():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(256, 1, generator=gen)
    independent = torch.cat([a, torch.randn(256, 1, generator=gen)], 1)
    dependent = torch.cat([a, a + 0.05 * torch.randn(256, 1, generator=gen)], 1)
    klm = [LF.klm(z, LF.latent_std(z)).item() for z in (independent, dependent)]
    assert klm[1] > klm[0] + 0.5


def test_klm_gradient_flows_through_the_stds():
    z = torch.randn(16, 3)
    s = (z.std(0) + 0.1).requires_grad_()
    LF.klm(z, s).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# ---- NHP and the Hessian penalty ----------------------------------------------------------------------


def _counting(f):
    calls = []

    def wrapped(z):
        calls.append(z.shape[0])
        return f(z)

    return wrapped, calls


def test_nhp_is_exactly_zero_for_elementwise_separable_f():
    z = torch.randn(8, 4)
    f = lambda z: [torch.sin(z) * 3, z**3]  # noqa: E731
    assert LF.nhp(f, z, LF.latent_std(z), k=4).item() == 0.0


def test_nhp_is_zero_for_additively_separable_f():
    z = torch.randn(8, 4)
    f = lambda z: [(torch.sin(z) + z**2).sum(-1, keepdim=True), torch.exp(z).sum(-1, keepdim=True)]  # noqa: E731
    assert abs(LF.nhp(f, z, LF.latent_std(z), k=4).item()) < 1e-12


def test_nhp_tends_to_one_for_a_pure_interaction():
    z = torch.randn(4, 2)
    f = lambda z: [(z[:, 0] * z[:, 1])[:, None]]  # noqa: E731
    value = LF.nhp(f, z, torch.tensor([0.7, 1.3]), k=20000, generator=torch.Generator().manual_seed(0))
    assert value.item() == pytest.approx(1.0, abs=0.05)


def test_nhp_equals_the_off_diagonal_share_of_the_rescaled_hessian_for_quadratics():
    gen = torch.Generator().manual_seed(1)
    n, units = 3, 5
    A = torch.randn(units, n, n, generator=gen)
    A = A + A.transpose(1, 2)  # per unit f_u(z) = z^T A_u z / 2 has Hessian A_u
    f = lambda z: [0.5 * torch.einsum("bi,uij,bj->bu", z, A, z)]  # noqa: E731
    s = torch.tensor([0.5, 1.0, 2.0])
    H = s[:, None] * A * s[None, :]  # std-rescaled Hessians
    off = (H**2).sum((1, 2)) - (torch.diagonal(H, dim1=1, dim2=2) ** 2).sum(-1)
    # Var_r(r^T H r) = 2 sum_{i != j} H_ij^2 ; Var_g(g^T H g) = 2 sum_ij H_ij^2
    expected = off.mean() / (H**2).sum((1, 2)).mean()
    z = torch.randn(2, n, generator=gen)
    value = LF.nhp(f, z, s, k=40000, generator=gen)
    assert value.item() == pytest.approx(expected.item(), rel=0.04)


def test_nhp_is_invariant_to_rescaling_one_latent_with_its_std():
    z = torch.randn(6, 3)
    s = LF.latent_std(z)
    f = lambda z: [torch.tanh(z @ torch.ones(3, 4) + z[:, :1] * z[:, 1:2]), z.prod(-1, keepdim=True)]  # noqa: E731
    scale = torch.tensor([5.0, 1.0, 1.0])
    g = lambda y: f(y / scale)  # noqa: E731  (g(scale * z) == f(z))
    a = LF.nhp(f, z, s, k=3, generator=torch.Generator().manual_seed(7))
    b = LF.nhp(g, z * scale, s * scale, k=3, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert a.item() > 0.01


def test_nhp_is_invariant_to_rescaling_one_whole_activation():
    z = torch.randn(6, 3)
    s = LF.latent_std(z)
    f = lambda z: [z[:, :1] * z[:, 1:] ** 2, torch.sin(z).prod(-1, keepdim=True)]  # noqa: E731
    g = lambda z: [1000.0 * a if i == 0 else a for i, a in enumerate(f(z))]  # noqa: E731
    a = LF.nhp(f, z, s, k=3, generator=torch.Generator().manual_seed(3))
    b = LF.nhp(g, z, s, k=3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_nhp_and_hessian_penalty_call_f_once_with_all_perturbed_copies():
    z = torch.randn(5, 3)
    f, calls = _counting(lambda z: [z.prod(-1, keepdim=True)])
    LF.nhp(f, z, LF.latent_std(z), k=3)
    assert calls == [4 * 3 * 5]
    f, calls = _counting(lambda z: [z.prod(-1, keepdim=True)])
    LF.hessian_penalty(f, z, k=3)
    assert calls == [2 * 3 * 5]


def test_hessian_penalty_matches_the_rademacher_variance_of_a_quadratic():
    # f(z) = z1 z2: D_u f = 2 r1 r2 (eps cancels), whose unbiased variance over draws has expectation 4
    z = torch.randn(3, 2)
    f = lambda z: [(z[:, 0] * z[:, 1])[:, None]]  # noqa: E731
    value = LF.hessian_penalty(f, z, eps=0.1, k=20000, generator=torch.Generator().manual_seed(0))
    assert value.item() == pytest.approx(4.0, rel=0.03)


def test_hessian_penalty_is_not_scale_invariant_but_nhp_is():
    z = torch.randn(4, 2)
    f = lambda z: [(z[:, 0] * z[:, 1])[:, None]]  # noqa: E731
    g = lambda z: [10 * a for a in f(z)]  # noqa: E731
    hp = [LF.hessian_penalty(h, z, k=8, generator=torch.Generator().manual_seed(0)).item() for h in (f, g)]
    assert hp[1] == pytest.approx(100 * hp[0])


def test_hessian_penalty_perturbations_are_not_rescaled_by_the_latent_stds():
    # naive Tripod follows the Hessian penalty paper: u = eps r. Spreading the latents by alpha (with the decoder
    # compensating, g(z) = f(z / alpha)) divides the Hessian by alpha^2 and the penalty by alpha^4; the std-rescaled
    # variant of the authors' code (u = eps r s) would be unchanged.
    z, alpha = torch.randn(16, 2, dtype=torch.float64), 3.0
    f = lambda z: [(z[:, 0] * z[:, 1])[:, None]]  # noqa: E731
    g = lambda z: f(z / alpha)  # noqa: E731
    hp_f = LF.hessian_penalty(f, z, k=2, generator=torch.Generator().manual_seed(0))
    hp_g = LF.hessian_penalty(g, alpha * z, k=2, generator=torch.Generator().manual_seed(0))
    assert hp_f.item() > 0
    assert hp_g.item() == pytest.approx(hp_f.item() / alpha**4, rel=1e-6)


def test_hessian_penalty_variance_over_draws_is_unbiased():
    # f(z) = z1 z2, k = 2: D_u f = 2 r1 r2 = +-2 per draw; two draws of opposite sign give an unbiased variance
    # (2 - (-2))^2 / 2 = 8 (ddof 0, as the authors' logged term, would give 4); equal signs give 0
    z = torch.randn(64, 2, dtype=torch.float64)
    f = lambda z: [(z[:, 0] * z[:, 1])[:, None]]  # noqa: E731
    seen = []

    def recording(batch):
        seen.append(batch)
        return f(batch)

    value = LF.hessian_penalty(recording, z, k=2, generator=torch.Generator().manual_seed(1))
    d = f(seen[0])[0].reshape(2, 2, 64)  # (z + u, z - u) x draws x samples
    second = (d[0] + d[1] - 2 * f(z)[0][:, 0]) / 0.1**2
    expected = second.var(dim=0, unbiased=True).mean()
    assert set(torch.round(second.var(dim=0, unbiased=True)).unique().tolist()) <= {0.0, 8.0}
    assert value.item() == pytest.approx(expected.item(), rel=1e-9)


@pytest.mark.parametrize("k,eps", [(1, 0.1), (2, 0.0)])
def test_penalties_reject_invalid_draws(k, eps):
    with pytest.raises(ValueError):
        LF.nhp(lambda z: [z], torch.randn(2, 2), torch.ones(2), eps=eps, k=k)


def test_nhp_gradients_reach_latents_and_stds():
    z = torch.randn(6, 3, requires_grad=True)
    f = lambda z: [torch.tanh(z[:, :1] * z[:, 1:2] + z)]  # noqa: E731
    LF.nhp(f, z, LF.latent_std(z), k=2).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


# ---- beta-TC ------------------------------------------------------------------------------------------


def _np_beta_tc(z, mu, sigma, n_data):
    b, n = z.shape
    mi = tc = dw = 0.0
    for i in range(b):
        log_q_zx = sum(_np_log_normal(z[i, k], mu[i, k], sigma[i, k]) for k in range(n))
        log_qz = _np_logsumexp(
            [sum(_np_log_normal(z[i, k], mu[j, k], sigma[j, k]) for k in range(n)) for j in range(b)]
        ) - math.log(b * n_data)
        log_qk = sum(
            _np_logsumexp([_np_log_normal(z[i, k], mu[j, k], sigma[j, k]) for j in range(b)]) - math.log(b * n_data)
            for k in range(n)
        )
        log_pz = sum(_np_log_normal(z[i, k], 0.0, 1.0) for k in range(n))
        mi += log_q_zx - log_qz
        tc += log_qz - log_qk
        dw += log_qk - log_pz
    return {"mi": mi / b, "tc": tc / b, "dwkl": dw / b}


def test_beta_tc_matches_numpy_minibatch_weighted_sampling():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(12, 4, generator=gen)
    sigma = torch.rand(12, 4, generator=gen) + 0.2
    z = mu + sigma * torch.randn(12, 4, generator=gen)
    got = LF.beta_tc(z, mu, sigma, dataset_size=1000)
    ref = _np_beta_tc(z.numpy(), mu.numpy(), sigma.numpy(), 1000)
    assert set(got) == {"mi", "tc", "dwkl"}
    for key in ref:
        assert got[key].item() == pytest.approx(ref[key], rel=1e-10, abs=1e-10)


def test_beta_tc_terms_sum_to_the_mws_estimate_of_the_kl():
    mu, sigma = torch.randn(10, 3), torch.rand(10, 3) + 0.5
    z = mu + sigma * torch.randn(10, 3)
    t = LF.beta_tc(z, mu, sigma, 50)
    log_q_zx = (-0.5 * ((z - mu) / sigma) ** 2 - sigma.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(t["mi"] + t["tc"] + t["dwkl"], (log_q_zx - log_p).mean())


# ---- SSIM (the authors' alternative reconstruction loss) -----------------------------------------------------


def _dm_pix_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """NumPy transcription of dm_pix.ssim with its defaults (11 taps, sigma 1.5, k1 0.01, k2 0.03, max_val 1) on
    one H x W x C image pair: separable 'valid' Gaussian blur, clipped variances and covariance."""
    taps = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
    taps /= taps.sum()

    def blur(z):
        z = np.apply_along_axis(lambda v: np.convolve(v, taps, mode="valid"), 1, z)
        return np.apply_along_axis(lambda v: np.convolve(v, taps, mode="valid"), 0, z)

    mu0, mu1 = blur(a), blur(b)
    eps = np.finfo(np.float32).eps ** 2
    s00, s11 = np.maximum(eps, blur(a * a) - mu0**2), np.maximum(eps, blur(b * b) - mu1**2)
    s01 = blur(a * b) - mu0 * mu1
    s01 = np.sign(s01) * np.minimum(np.sqrt(s00 * s11), np.abs(s01))
    c1, c2 = 0.01**2, 0.03**2
    return float(np.mean((2 * mu0 * mu1 + c1) * (2 * s01 + c2) / ((mu0**2 + mu1**2 + c1) * (s00 + s11 + c2))))


def test_ssim_matches_the_numpy_transcription_of_dm_pix():
    rng = np.random.default_rng(0)
    x = rng.random((4, 3, 24, 20))
    noise = np.array([0.0, 0.05, 0.3, 1.0])[:, None, None, None]
    y = np.clip(x + noise * rng.standard_normal(x.shape), 0, 1)
    y[3, :, :8] = 0.5  # a flat patch: clipped variances
    ours = LF.ssim(torch.from_numpy(y), torch.from_numpy(x)).numpy()
    ref = [_dm_pix_ssim(np.moveaxis(y[i], 0, -1), np.moveaxis(x[i], 0, -1)) for i in range(4)]
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    assert ours[0] == pytest.approx(1.0) and ours[1] > ours[2] > ours[3]
    dssim = LF.dssim(torch.from_numpy(y), torch.from_numpy(x))
    assert dssim.item() == pytest.approx(np.mean([(1 - r) / 2 for r in ref]), rel=1e-10)
