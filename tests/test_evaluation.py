"""tripod_pl.evaluation: the paper's metrics of a model, on the model's device, leaving it as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tripod_pl.metrics
import tripod_pl.metrics.reconstruction
from tripod_pl.data.transforms import to_float_images
from tripod_pl.evaluation import SCALARS, decoder_hessian_stats, eval_mode, evaluate_model, hessian_summary
from tripod_pl.legs import FSQ, KLM, GaussianBottleneck
from tripod_pl.model import TripodAutoencoder

from .helpers import TINY, tiny_data

pytestmark = pytest.mark.usefixtures("one_thread")


def test_evaluate_model_equals_the_metrics_of_its_latents_and_the_psnr_formula(tiny_h5):
    torch.manual_seed(0)
    model = TripodAutoencoder(FSQ(), [KLM()], n_z=4, **TINY)
    images, sources = tiny_data(tiny_h5, 100).eval_subset()
    result = evaluate_model(model, images, sources, dci=True, batch_size=32)
    x = to_float_images(images)
    model.eval()
    with torch.no_grad():
        z = model.encode(x)
        mse = ((torch.sigmoid(model.decoder(z)) - (x + 1) / 2) ** 2).flatten(1).mean(1)
        psnr = 10 * torch.log10(1 / mse)
    torch.testing.assert_close(result.latents, z)
    info, dci = tripod_pl.metrics.infomec(sources, z, discrete=True), tripod_pl.metrics.dci(sources, z)
    for key in ("infom", "infoc", "infoe"):
        assert result.scalars[key] == pytest.approx(float(info[key]), abs=1e-6)
    for key in ("d", "c", "i"):
        assert result.scalars[key] == pytest.approx(float(dci[key]), abs=1e-6)
    np.testing.assert_allclose(result.nmi, np.asarray(info["nmi"]), atol=1e-6)
    assert result.scalars["psnr"] == pytest.approx(float(psnr.mean()), rel=1e-4)
    with torch.no_grad():
        paper = tripod_pl.metrics.reconstruction.psnr_paper(torch.sigmoid(model.decoder(z)) * 2 - 1, x)
    assert result.scalars["psnr_paper"] == pytest.approx(float(paper.mean()), rel=1e-5)
    assert list(result.scalars) == list(SCALARS)
    for name in ("encoder", "decoder"):
        params = torch.cat([p.detach().flatten() for p in getattr(model, name).parameters()])
        assert result.scalars[f"weight_norm/{name}"] == pytest.approx(float(params.norm()), rel=1e-5)


def test_gaussian_models_are_evaluated_on_their_means(tiny_h5):
    torch.manual_seed(0)
    model = TripodAutoencoder(GaussianBottleneck(), n_z=3, **TINY).train()
    images, sources = tiny_data(tiny_h5, 40).eval_subset()
    first = evaluate_model(model, images, sources, dci=False).latents
    again = evaluate_model(model, images, sources, dci=False).latents
    torch.testing.assert_close(first, again)  # no sampling: mu, deterministic
    assert model.training


def test_gaussian_models_are_reconstructed_from_a_seeded_sample_as_the_reference(tiny_h5):
    torch.manual_seed(0)
    model = TripodAutoencoder(GaussianBottleneck(), n_z=3, **TINY)
    with torch.no_grad():
        model.encoder.head[-1].bias[3:] = 3.0  # sigma ~ 3: samples far from mu
    images, sources = tiny_data(tiny_h5, 40).eval_subset()
    state = torch.get_rng_state()
    result = evaluate_model(model, images, sources, dci=False)
    assert torch.equal(torch.get_rng_state(), state)  # its own generator: the global stream is untouched
    assert evaluate_model(model, images, sources, dci=False).scalars["psnr"] == result.scalars["psnr"]  # seeded
    x = to_float_images(images)

    def mean_psnr(reconstruction):
        return float(tripod_pl.metrics.reconstruction.psnr((reconstruction + 1) / 2, (x + 1) / 2).mean())

    model.eval()
    with torch.no_grad():
        torch.manual_seed(0)  # the same stream as a CPU generator seeded with 0; one batch, one draw
        sampled = mean_psnr(model.reconstruct(x))
        at_mu = mean_psnr(model.decode(model.encode(x)))
    assert result.scalars["psnr"] == pytest.approx(sampled, rel=1e-5)
    assert abs(sampled - at_mu) > 1e-3
    model.bottleneck.sample_in_eval = False
    assert evaluate_model(model, images, sources, dci=False).scalars["psnr"] == pytest.approx(at_mu, rel=1e-5)


def test_eval_mode_restores_each_submodules_own_mode():
    model = TripodAutoencoder(FSQ(), n_z=2, **TINY).train()
    model.decoder.eval()
    with eval_mode(model):
        assert not model.training and not model.encoder.training and not torch.is_grad_enabled()
    assert model.training and model.encoder.training and not model.decoder.training


# ---- exact decoder Hessians ------------------------------------------------------------------------------------


def _reference_stats(a: np.ndarray) -> dict[str, float]:
    """NumPy transcription of compute_stats (kylehkhsu/tripod scripts/train_autoencoder.py) on one matrix."""
    n = a.shape[0]
    masked = a * (np.ones_like(a) - np.eye(n))
    off = masked.sum() / (n * (n - 1))
    diag = np.mean(np.diag(a))
    return {"diagonal_mean": diag, "off_diagonal_mean": off, "diagonal_share": diag / (diag + off + 1e-10)}


def test_hessian_summary_matches_the_reference_statistics():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((7, 4, 4))
    h = h + h.transpose(0, 2, 1)
    std = rng.random(4) + 0.5
    out = hessian_summary(torch.from_numpy(h), torch.from_numpy(std))
    for kind, a in (("raw", np.abs(h)), ("rescaled", np.abs(h * std[:, None] * std[None, :]))):
        per_unit = [_reference_stats(m) for m in a]
        for key in ("diagonal_mean", "off_diagonal_mean", "diagonal_share"):
            assert out[f"{kind}/{key}"] == pytest.approx(np.mean([u[key] for u in per_unit]), rel=1e-12)


def test_decoder_hessians_are_exact(monkeypatch):
    model = TripodAutoencoder(FSQ(), n_z=3, **TINY)
    # two units with known Hessians: z0 z1 (all off-diagonal) and z0^2 + 3 z2^2 (all diagonal)
    monkeypatch.setattr(
        model.decoder,
        "activations",
        lambda z, names: [torch.stack([z[:, 0] * z[:, 1], z[:, 0] ** 2 + 3 * z[:, 2] ** 2], -1)],
    )
    latents = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, -2.0], [0.0, 1.0, 0.0]])
    out = decoder_hessian_stats(model, latents, num_samples=2, names=("cond",))
    assert out["hessian/cond/raw/diagonal_mean"] == pytest.approx((0 + 8 / 3) / 2)
    assert out["hessian/cond/raw/off_diagonal_mean"] == pytest.approx((2 / 6 + 0) / 2)
    assert out["hessian/cond/raw/diagonal_share"] == pytest.approx(0.5)
    std = latents.std(0, unbiased=False) + 1e-6
    rescaled_off = 2 * float(std[0] * std[1]) / 6 / 2
    assert out["hessian/cond/rescaled/off_diagonal_mean"] == pytest.approx(rescaled_off, rel=1e-5)


def test_evaluate_model_adds_the_hessian_statistics_of_every_activation_on_request(tiny_h5):
    torch.manual_seed(0)
    model = TripodAutoencoder(FSQ(), n_z=3, **TINY)
    images, sources = tiny_data(tiny_h5, 40).eval_subset()
    result = evaluate_model(model, images, sources, dci=False, hessian_samples=2)
    for name in model.decoder.names:
        share = result.scalars[f"hessian/{name}/rescaled/diagonal_share"]
        assert 0.0 <= share <= 1.0
    assert not any(k.startswith("hessian/") for k in evaluate_model(model, images, sources, dci=False).scalars)
