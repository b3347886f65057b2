"""FactorVAE's TC leg: permute-dims, the density-ratio TC estimate and the discriminator loss against NumPy
transcriptions of Kim & Mnih (2018), the split of gradients, and the discriminator's own Adam group."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tripod_pl.legs import KL, FactorTC, GaussianBottleneck, StepContext, build_leg
from tripod_pl.legs.factorvae import permute_dims
from tripod_pl.model import TripodAutoencoder
from tripod_pl.nets import Decoder

from ..helpers import TINY


def _np_mlp(leg: FactorTC, z: np.ndarray) -> np.ndarray:
    """The discriminator by hand: linear layers with LeakyReLU(0.2) between them."""
    linears = [m for m in leg.discriminator if isinstance(m, torch.nn.Linear)]
    a = z
    for i, lin in enumerate(linears):
        a = a @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        if i < len(linears) - 1:
            a = np.where(a > 0, a, 0.2 * a)
    return a


def _np_log_softmax(logits: np.ndarray) -> np.ndarray:
    m = logits.max(1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(1, keepdims=True))


def _ctx(lat, batch, size=8):
    n_z = lat.z.shape[1]
    x = torch.zeros(batch, 3, size, size)
    return StepContext(x=x, latents=lat, decoder=Decoder(n_z, widths=[8, 4], cond_dim=8, image_size=size))


def test_permute_dims_shuffles_each_latent_independently_over_the_batch():
    torch.manual_seed(0)
    z = torch.arange(200.0).reshape(50, 4) + torch.tensor([0.0, 1000.0, 2000.0, 3000.0])
    perm = permute_dims(z)
    for k in range(4):  # each column is a permutation of itself
        assert sorted(perm[:, k].tolist()) == sorted(z[:, k].tolist())
    rows = {tuple(r) for r in z.tolist()}
    assert sum(tuple(r) in rows for r in perm.tolist()) < 5  # rows are broken up: samples of prod_k q(z_k)
    assert not torch.equal(perm[:, 0], permute_dims(z)[:, 0])


def test_the_discriminator_is_the_papers_mlp_by_default():
    leg = FactorTC()
    leg.build(n_z=10)
    linears = [m for m in leg.discriminator if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 1000)] + [(1000, 1000)] * 4 + [(1000, 2)]
    slopes = {m.negative_slope for m in leg.discriminator if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}


def test_terms_match_numpy_and_each_trains_only_its_own_part():
    torch.manual_seed(0)
    h = torch.randn(12, 6, requires_grad=True)
    lat = GaussianBottleneck()(h)
    leg = FactorTC(gamma=7.0, hidden=8, layers=3)
    leg.build(n_z=3)
    ctx = _ctx(lat, 12)
    state = torch.get_rng_state()
    out = leg(ctx)
    torch.set_rng_state(state)
    z = lat.z.detach()
    perm = permute_dims(z).double().numpy()  # the leg's permutation (same random state)
    logits = _np_mlp(leg, z.double().numpy())
    tc = np.mean(logits[:, 0] - logits[:, 1])  # log D(z) / (1 - D(z)) with D = softmax(logits)[0]
    d_loss = -0.5 * (np.mean(_np_log_softmax(logits)[:, 0]) + np.mean(_np_log_softmax(_np_mlp(leg, perm))[:, 1]))
    assert out["tc"].item() == pytest.approx(tc / (3 * 8 * 8), rel=1e-5)
    assert out["discriminator"].item() == pytest.approx(d_loss, rel=1e-5)
    assert leg.weights == {"tc": 7.0, "discriminator": 1.0}
    # tc moves the encoder only; the discriminator loss moves the discriminator only
    out["tc"].backward(retain_graph=True)
    assert h.grad.abs().sum() > 0 and all(p.grad is None for p in leg.discriminator.parameters())
    h.grad = None
    out["discriminator"].backward()
    assert h.grad is None and all(p.grad.abs().sum() > 0 for p in leg.discriminator.parameters())
    assert build_leg(leg.spec()).spec() == leg.spec()


def test_the_discriminator_learns_the_total_correlation_of_a_gaussian():
    """For a 2-D Gaussian with correlation rho, TC = -log(1 - rho^2) / 2; the trained discriminator's density
    ratio recovers it (0.83 nats at rho = 0.9; about 0.7 after this short training), and about 0 for independent
    latents."""
    torch.manual_seed(0)

    def trained_tc(rho: float) -> float:
        leg = FactorTC(hidden=32, layers=3, lr=3e-3, betas=(0.5, 0.9))
        leg.build(n_z=2)
        opt = torch.optim.Adam(leg.discriminator.parameters(), lr=leg.lr, betas=leg.betas)
        mix = torch.tensor([[1.0, rho], [0.0, math.sqrt(1 - rho**2)]])
        for _ in range(150):
            opt.zero_grad()
            leg.discriminator_loss(torch.randn(128, 2) @ mix).backward()
            opt.step()
        with torch.no_grad():
            return leg.tc_estimate(torch.randn(20_000, 2) @ mix).item()

    rho = 0.9
    assert trained_tc(rho) == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.25)
    assert abs(trained_tc(0.0)) < 0.1


def test_the_discriminator_is_its_own_adam_group_equal_to_a_separate_adam():
    torch.manual_seed(0)
    model = TripodAutoencoder(GaussianBottleneck(), [KL(), FactorTC(hidden=8, layers=2)], n_z=3, **TINY)
    groups = model.parameter_groups(weight_decay=0.1)
    assert [g["name"] for g in groups] == ["decay", "no_decay", "factor_tc_discriminator"]
    disc = list(model.regularizers[1].discriminator.parameters())
    assert groups[2]["params"] == disc and groups[2]["lr"] == 1e-4 and groups[2]["betas"] == (0.5, 0.9)
    assert not {id(p) for p in disc} & {id(p) for g in groups[:2] for p in g["params"]}
    # the module's AdamW with this group steps the discriminator exactly as the paper's own Adam would
    twin = [p.detach().clone().requires_grad_() for p in disc]
    adamw = torch.optim.AdamW(groups, lr=2e-4, weight_decay=0.1)
    adam = torch.optim.Adam(twin, lr=1e-4, betas=(0.5, 0.9))
    for _ in range(3):
        adamw.zero_grad(), adam.zero_grad()
        loss, terms, _ = model(torch.rand(4, 3, 64, 64) * 2 - 1)
        loss.backward()
        for p, t in zip(disc, twin, strict=True):
            t.grad = p.grad.clone()
        adamw.step(), adam.step()
    for p, t in zip(disc, twin, strict=True):
        torch.testing.assert_close(p, t, rtol=0, atol=0)
    assert set(terms) == {"reconstruction", "kl", "tc", "discriminator"}
