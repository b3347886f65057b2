"""TripodModule: loss assembly, logging, optimiser groups, inference API and checkpoint round trip."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tripod_pl import TripodModule, load_model
from tripod_pl.legs import FSQ, KLM, NHP, BetaTC, GaussianBottleneck, IdentityBottleneck, ScalarCodebook

from .conftest import TINY


def tripod(**kw):
    return TripodModule(FSQ(n_q=12), [KLM(weight=1e-2), NHP(weight=1e-1)], n_z=4, **TINY, **kw)


def images(n=8, seed=0):
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_n_z_defaults_to_twice_the_number_of_sources():
    assert TripodModule(FSQ(), num_sources=5, **TINY).n_z == 10
    with pytest.raises(ValueError, match="n_z"):
        TripodModule(FSQ(), **TINY)


def test_loss_is_reconstruction_plus_weighted_terms():
    torch.manual_seed(0)
    model = tripod()
    x = images()
    torch.manual_seed(1)
    loss, terms, logits = model.compute_terms(x)
    assert set(terms) == {"reconstruction", "klm", "nhp"}
    bce = F.binary_cross_entropy_with_logits(logits, (x + 1) / 2)
    torch.testing.assert_close(terms["reconstruction"], bce)
    torch.testing.assert_close(loss, bce + 1e-2 * terms["klm"] + 1e-1 * terms["nhp"])


def test_bottleneck_terms_enter_the_loss_with_their_weights():
    model = TripodModule(ScalarCodebook(quantization_weight=0.5, commitment_weight=0.25), n_z=3, **TINY)
    loss, terms, _ = model.compute_terms(images(4))
    expected = terms["reconstruction"] + 0.5 * terms["quantization"] + 0.25 * terms["commitment"]
    torch.testing.assert_close(loss, expected)


def test_beta_tc_gets_the_dataset_size_and_a_gaussian_encoder_head():
    model = TripodModule(GaussianBottleneck(), [BetaTC(beta=3.0)], n_z=3, dataset_size=1000, **TINY)
    assert model.encoder.head[-1].out_features == 6
    assert model.regularizers[0].dataset_size == 1000
    _, terms, _ = model.compute_terms(images(4))
    assert set(terms) == {"reconstruction", "mi", "tc", "dwkl"}


def test_clashing_term_names_are_an_error():
    model = TripodModule(FSQ(), [KLM(), KLM()], n_z=3, **TINY)
    with pytest.raises(KeyError, match="klm"):
        model.compute_terms(images(4))


def test_wrong_leg_roles_are_rejected():
    with pytest.raises(TypeError, match="Bottleneck"):
        TripodModule(KLM(), n_z=3, **TINY)
    with pytest.raises(TypeError, match="Regularizer"):
        TripodModule(FSQ(), [FSQ()], n_z=3, **TINY)


def test_weight_decay_applies_to_the_networks_only():
    model = TripodModule(ScalarCodebook(), n_z=3, weight_decay=0.1, **TINY)
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW)
    nets, legs = opt.param_groups
    assert nets["weight_decay"] == 0.1 and legs["weight_decay"] == 0.0
    assert legs["params"] == [model.bottleneck.codebook]
    n_net = sum(1 for m in (model.encoder, model.decoder) for _ in m.parameters())
    assert len(nets["params"]) == n_net and nets["lr"] == 2e-4 and nets["betas"] == (0.9, 0.999)


def test_encode_returns_evaluation_latents_and_decode_images_in_range():
    model = tripod().eval()
    x = images(5)
    z = model.encode(x)
    assert z.shape == (5, 4)
    assert torch.allclose((z + 1) * 5.5, torch.round((z + 1) * 5.5), atol=1e-5)  # the 12-level grid
    out = model.decode(z)
    assert out.shape == (5, 3, 64, 64) and out.min() >= -1 and out.max() <= 1
    ae = TripodModule(IdentityBottleneck(), n_z=4, **TINY).eval()
    torch.testing.assert_close(ae.encode(x), ae.encoder(x))


def test_psnr_matches_its_definition():
    x = torch.zeros(2, 3, 4, 4)  # 0.5 grey in [0, 1]
    logits = torch.full_like(x, torch.logit(torch.tensor(0.6)).item())  # off by 0.1 everywhere
    assert TripodModule.psnr(logits, x).item() == pytest.approx(20.0, abs=1e-4)


def _loader(n=16, batch=8):
    data = [{"image": x, "sources": torch.zeros(2, dtype=torch.long)} for x in images(n)]
    return DataLoader(data, batch_size=batch)


def test_fit_logs_every_term_and_checkpoint_restores_the_same_latents(tmp_path):
    model = tripod()
    trainer = L.Trainer(
        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=1, gradient_clip_val=1.0,
    )
    trainer.fit(model, _loader(), _loader())
    logged = set(trainer.logged_metrics)
    for stage in ("train", "val"):
        assert {f"{stage}/{t}" for t in ("reconstruction", "klm", "nhp", "loss", "psnr")} <= logged
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = load_model(str(path))
    assert not restored.training
    x = images(6, seed=3)
    torch.testing.assert_close(restored.encode(x), model.eval().encode(x))
    assert restored.hparams["regularizers"][1]["init_args"]["weight"] == 1e-1


def test_training_reduces_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = TripodModule(FSQ(), [KLM(1e-3)], n_z=4, **TINY, lr=3e-3)
    opt = model.configure_optimizers()
    x = images(8)
    first = None
    for _ in range(30):
        loss, _, _ = model.compute_terms(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first - 0.02
