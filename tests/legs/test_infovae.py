"""InfoVAE's MMD leg against a NumPy transcription of the MMD estimator (Gretton et al. 2012) with the
documented kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tripod_pl.legs import FSQ, MMD, StepContext, build_leg
from tripod_pl.legs.infovae import mmd
from tripod_pl.nets import Decoder


def _np_mmd(q: np.ndarray, p: np.ndarray, kernel: str, var: float, unbiased: bool) -> float:
    c = 2 * q.shape[1] * var

    def k(a, b):
        d2 = float(np.sum((a - b) ** 2))
        return c / (c + d2) if kernel == "imq" else math.exp(-d2 / c)

    def within(x):
        n = len(x)
        pairs = [(i, j) for i in range(n) for j in range(n) if not (unbiased and i == j)]
        return sum(k(x[i], x[j]) for i, j in pairs) / len(pairs)

    cross = sum(k(a, b) for a in q for b in p) / (len(q) * len(p))
    return within(q) + within(p) - 2 * cross


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_matches_numpy(kernel, unbiased):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(9, 5, dtype=torch.float64, generator=g) * 1.5 + 0.3
    p = torch.randn(7, 5, dtype=torch.float64, generator=g)
    got = mmd(q, p, kernel=kernel, prior_variance=2.0, unbiased=unbiased).item()
    assert got == pytest.approx(_np_mmd(q.numpy(), p.numpy(), kernel, 2.0, unbiased), rel=1e-12)


def test_mmd_is_zero_for_identical_samples_and_grows_with_the_shift():
    torch.manual_seed(0)
    p = torch.randn(200, 4, dtype=torch.float64)
    assert mmd(p, p, unbiased=False).item() == pytest.approx(0.0, abs=1e-12)
    same = mmd(torch.randn(200, 4, dtype=torch.float64), p).item()
    values = [mmd(torch.randn(200, 4, dtype=torch.float64) + shift, p).item() for shift in (0.5, 1.0, 2.0)]
    assert abs(same) < 0.01 < values[0] < values[1] < values[2]  # unbiased: about 0 for the same distribution


def test_mmd_leg_compares_z_with_prior_draws_divided_by_pixels():
    torch.manual_seed(0)
    h = torch.randn(16, 3, requires_grad=True)
    lat = FSQ(n_q=12)(h)  # any bottleneck: the leg uses z only
    ctx = StepContext(
        x=torch.zeros(16, 3, 8, 8), latents=lat, decoder=Decoder(3, widths=[8, 4], cond_dim=8, image_size=8)
    )
    leg = MMD(weight=500.0, kernel="rbf")
    torch.manual_seed(5)
    out = leg(ctx)
    torch.manual_seed(5)
    prior = torch.randn(16, 3)
    want = _np_mmd(lat.z.detach().numpy(), prior.numpy(), "rbf", 1.0, True) / (3 * 8 * 8)
    assert out["mmd"].item() == pytest.approx(want, rel=1e-5)
    assert leg.weights == {"mmd": 500.0}
    out["mmd"].backward()
    assert h.grad.abs().sum() > 0
    assert build_leg(leg.spec()).spec() == leg.spec()


def test_bad_kernel_and_variance_are_clear_errors():
    with pytest.raises(ValueError, match="kernel must be 'imq' or 'rbf'"):
        MMD(kernel="laplace")
    with pytest.raises(ValueError, match="prior_variance must be positive"):
        MMD(prior_variance=0.0)
