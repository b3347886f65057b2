"""beta-VAE's KL leg against a NumPy quadrature of KL(N(mu, sigma^2) || N(0, 1))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripod_pl.legs import KL, GaussianBottleneck, IdentityBottleneck, StepContext, build_leg
from tripod_pl.legs.betavae import gaussian_kl
from tripod_pl.model import TripodAutoencoder
from tripod_pl.nets import Decoder

from ..helpers import TINY


def _np_kl_quadrature(mu: float, sigma: float) -> float:
    """``int q log(q / p) dz`` on a fine grid, q = N(mu, sigma^2), p = N(0, 1): the definition, not the closed form."""
    z = np.linspace(mu - 12 * sigma, mu + 12 * sigma, 200_001)
    log_q = -0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    log_p = -0.5 * z**2 - 0.5 * np.log(2 * np.pi)
    return float(np.trapezoid(np.exp(log_q) * (log_q - log_p), z))


def _ctx(latents, batch=6, size=8):
    x = torch.rand(batch, 3, size, size) * 2 - 1
    return StepContext(x=x, latents=latents, decoder=Decoder(3, widths=[8, 4], cond_dim=8, image_size=size))


def test_gaussian_kl_matches_the_definition_summed_over_latents():
    mu = torch.tensor([[0.0, 1.5, -0.7], [2.0, -0.1, 0.3]], dtype=torch.float64)
    sigma = torch.tensor([[1.0, 0.3, 2.2], [0.05, 1.1, 0.8]], dtype=torch.float64)
    want = [
        sum(_np_kl_quadrature(m, s) for m, s in zip(mr, sr, strict=True))
        for mr, sr in zip(mu.tolist(), sigma.tolist(), strict=True)
    ]
    np.testing.assert_allclose(gaussian_kl(mu, sigma).numpy(), want, rtol=1e-6)
    assert gaussian_kl(torch.zeros(1, 4), torch.ones(1, 4)).item() == 0.0  # the prior itself


def test_kl_leg_is_the_batch_mean_divided_by_the_pixels_and_weighted_by_beta():
    torch.manual_seed(0)
    h = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    lat = GaussianBottleneck()(h)
    leg = KL(beta=4.0)
    out = leg(_ctx(lat))
    mu, sigma = lat.mu.detach().numpy(), lat.sigma.detach().numpy()
    want = np.mean(np.sum(0.5 * (mu**2 + sigma**2 - 1 - np.log(sigma**2)), axis=1)) / (3 * 8 * 8)
    assert out["kl"].item() == pytest.approx(want, rel=1e-6)  # the bottleneck works in float32
    assert leg.weights == {"kl": 4.0}
    # d kl / d mu = mu / (b P): the gradient reaches the encoder output
    out["kl"].backward()
    np.testing.assert_allclose(h.grad[:, :3].numpy(), mu / (6 * 3 * 8 * 8), rtol=1e-6)
    assert build_leg({"class_path": "kl", "init_args": {"beta": 4.0}}).spec() == leg.spec()


def test_kl_leg_needs_a_gaussian_bottleneck():
    with pytest.raises(RuntimeError, match="Gaussian bottleneck"):
        KL()(_ctx(IdentityBottleneck()(torch.randn(6, 3))))


def test_the_model_adds_beta_times_kl_to_the_reconstruction():
    torch.manual_seed(0)
    model = TripodAutoencoder(GaussianBottleneck(), [KL(beta=6.0)], n_z=3, **TINY)
    loss, terms, _ = model(torch.rand(4, 3, 64, 64) * 2 - 1)
    assert set(terms) == {"reconstruction", "kl"}
    torch.testing.assert_close(loss, terms["reconstruction"] + 6.0 * terms["kl"])


def test_the_baseline_legs_are_registered_by_short_name():
    from tripod_pl.legs import DIPVAE, MMD, FactorTC, get_leg, list_legs

    for name, cls in {"kl": KL, "dip_vae": DIPVAE, "mmd": MMD, "factor_tc": FactorTC}.items():
        assert get_leg(name) is cls and cls.leg_name == name and name in list_legs()
        assert build_leg({"class_path": name}).spec() == cls().spec()
