"""TripodAutoencoder, the plain-PyTorch model: loss assembly, legs, inference API, and life without Lightning."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tripod_pl.legs import FSQ, KLM, NHP, BetaTC, GaussianBottleneck, IdentityBottleneck, ScalarCodebook
from tripod_pl.legs import functional as LF
from tripod_pl.model import TripodAutoencoder

from .helpers import ROOT, TINY, images


def tripod(**kw) -> TripodAutoencoder:
    return TripodAutoencoder(FSQ(n_q=12), [KLM(weight=1e-2), NHP(weight=1e-1)], n_z=4, **TINY, **kw)


def test_n_z_defaults_to_twice_the_number_of_sources():
    assert TripodAutoencoder(FSQ(), num_sources=5, **TINY).n_z == 10
    with pytest.raises(ValueError, match="n_z"):
        TripodAutoencoder(FSQ(), **TINY)


def test_loss_is_reconstruction_plus_weighted_terms():
    torch.manual_seed(0)
    model = tripod()
    x = images()
    torch.manual_seed(1)
    loss, terms, logits = model(x)
    assert set(terms) == {"reconstruction", "klm", "nhp"}
    bce = F.binary_cross_entropy_with_logits(logits, (x + 1) / 2)
    torch.testing.assert_close(terms["reconstruction"], bce)
    torch.testing.assert_close(loss, bce + 1e-2 * terms["klm"] + 1e-1 * terms["nhp"])
    torch.manual_seed(1)
    again = model.compute_terms(x)  # forward is compute_terms
    torch.testing.assert_close(again.loss, loss)


def test_bottleneck_terms_enter_the_loss_with_their_weights():
    model = TripodAutoencoder(ScalarCodebook(quantization_weight=0.5, commitment_weight=0.25), n_z=3, **TINY)
    out = model(images(4))
    expected = out.terms["reconstruction"] + 0.5 * out.terms["quantization"] + 0.25 * out.terms["commitment"]
    torch.testing.assert_close(out.loss, expected)


def test_beta_tc_gets_the_dataset_size_and_a_gaussian_encoder_head():
    model = TripodAutoencoder(GaussianBottleneck(), [BetaTC(beta=3.0)], n_z=3, dataset_size=1000, **TINY)
    assert model.encoder.head[-1].out_features == 6
    assert model.regularizers[0].dataset_size == 1000
    assert set(model(images(4)).terms) == {"reconstruction", "mi", "tc", "dwkl"}


def test_clashing_term_names_are_an_error():
    model = TripodAutoencoder(FSQ(), [KLM(), KLM()], n_z=3, **TINY)
    with pytest.raises(KeyError, match="klm"):
        model(images(4))


def test_wrong_leg_roles_are_rejected():
    with pytest.raises(TypeError, match="Bottleneck"):
        TripodAutoencoder(KLM(), n_z=3, **TINY)
    with pytest.raises(TypeError, match="Regularizer"):
        TripodAutoencoder(FSQ(), [FSQ()], n_z=3, **TINY)


def test_legs_rebuild_from_their_specs():
    model = tripod()
    specs = model.leg_specs()
    assert specs["bottleneck"]["class_path"] == "tripod_pl.legs.bottlenecks.FSQ"
    assert specs["bottleneck"]["init_args"]["n_q"] == 12
    rebuilt = TripodAutoencoder(specs["bottleneck"], specs["regularizers"], n_z=4, **TINY)
    rebuilt.load_state_dict(model.state_dict())
    x = images(3)
    torch.testing.assert_close(rebuilt.encode(x), model.encode(x))
    assert [type(r) for r in rebuilt.regularizers] == [KLM, NHP] and rebuilt.regularizers[1].weight == 1e-1


def _gelu_tanh(x):
    """NumPy transcription of jax.nn.gelu(approximate=True), the reference's activation."""
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _layer_norm(x, weight, bias):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * weight + bias


@pytest.mark.parametrize("form", ["tanh", "none"])
def test_every_decoder_activation_uses_the_configured_gelu(form, monkeypatch):
    model = tripod() if form == "tanh" else tripod(gelu_approximate=form)  # tanh is the default
    forms = []
    gelu = F.gelu

    def recording_gelu(x, approximate="none"):
        forms.append(approximate)
        return gelu(x, approximate=approximate)

    monkeypatch.setattr(F, "gelu", recording_gelu)  # nn.GELU calls F.gelu too
    model.decoder(torch.zeros(2, 4))
    stages = len(TINY["decoder_widths"])
    assert forms == [form] * (2 + 2 * 2 * stages)  # conditioning MLP, then two GELUs per block, two blocks a stage
    forms.clear()
    model.encoder(images(2))
    assert set(forms) == {form} and len(forms) == 2 * 2 * len(TINY["encoder_widths"]) + 1


def test_the_conditioning_activation_is_the_reference_tanh_gelu():
    torch.manual_seed(0)
    model, z = tripod(), torch.randn(5, 4)
    x = z.double().numpy()
    for layer in model.decoder.cond_mlp:  # Linear -> LayerNorm -> GELU, twice
        linear, norm = layer[0], layer[1]
        x = x @ linear.weight.detach().double().numpy().T + linear.bias.detach().double().numpy()
        x = _gelu_tanh(_layer_norm(x, norm.weight.detach().double().numpy(), norm.bias.detach().double().numpy()))
    (cond,) = model.decoder.activations(z, ["cond"])
    np.testing.assert_allclose(cond.detach().numpy(), x, rtol=1e-5, atol=1e-6)
    exact = tripod(gelu_approximate="none")
    exact.load_state_dict(model.state_dict())
    (cond_exact,) = exact.decoder.activations(z, ["cond"])
    assert not np.allclose(cond_exact.detach().numpy(), x, rtol=1e-5, atol=1e-6)  # the two forms are told apart
    with pytest.raises(ValueError, match="gelu_approximate"):
        tripod(gelu_approximate="sigmoid")


def test_the_mlp_encoder_is_the_references_flattened_image_mlp():
    torch.manual_seed(0)
    model = tripod(encoder_type="mlp")
    enc = model.encoder
    linear, norm, head = enc.mlp[1][0], enc.mlp[1][1], enc.mlp[2]
    assert (linear.in_features, linear.out_features, head.out_features) == (3 * 64 * 64, 512, 4)
    x = images(3)
    flat = x.double().flatten(1).numpy()  # (c h w) order, as einops' 'c h w -> (c h w)'
    h = flat @ linear.weight.detach().double().numpy().T + linear.bias.detach().double().numpy()
    h = _gelu_tanh(_layer_norm(h, norm.weight.detach().double().numpy(), norm.bias.detach().double().numpy()))
    h = h @ head.weight.detach().double().numpy().T + head.bias.detach().double().numpy()
    np.testing.assert_allclose(model.encoder(x).detach().numpy(), h, rtol=1e-4, atol=1e-5)
    loss, _, _ = model(x)
    loss.backward()
    assert linear.weight.grad is not None
    with pytest.raises(ValueError, match="encoder_type"):
        tripod(encoder_type="transformer")


def test_the_dssim_reconstruction_is_the_references_ssim_loss_of_the_sigmoid_images():
    torch.manual_seed(0)
    model = tripod(reconstruction_loss="dssim")
    x = images(4)
    torch.manual_seed(1)
    loss, terms, logits = model(x)
    assert set(terms) == {"reconstruction", "klm", "nhp"}
    expected = LF.dssim(torch.sigmoid(logits), (x + 1) / 2)
    torch.testing.assert_close(terms["reconstruction"], expected)
    assert 0 < terms["reconstruction"].item() < 1
    torch.testing.assert_close(loss, expected + 1e-2 * terms["klm"] + 1e-1 * terms["nhp"])
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert tripod().reconstruction_loss == "bce"  # the default is the paper's BCE
    with pytest.raises(ValueError, match="reconstruction_loss must be one of 'bce', 'dssim', got 'ssim'"):
        tripod(reconstruction_loss="ssim")


def test_weight_decay_spares_biases_and_the_codebook_as_latent_quantization():
    model = TripodAutoencoder(ScalarCodebook(), n_z=3, **TINY)
    decay, no_decay = model.parameter_groups(weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    named = dict(model.named_parameters())
    exempt = {n for n in named if n.endswith(".bias") or n.startswith("bottleneck.")}
    assert ids(no_decay["params"]) == ids(named[n] for n in exempt)
    assert ids(decay["params"]) == ids(p for n, p in named.items() if n not in exempt)
    assert id(model.bottleneck.codebook) in ids(no_decay["params"])
    assert id(model.decoder.input) in ids(decay["params"])  # a weight there, not a bias
    assert id(model.encoder.stages[0].norm1.weight) in ids(decay["params"])  # GroupNorm scale decays
    assert id(model.encoder.stages[0].norm1.bias) in ids(no_decay["params"])  # its shift does not
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)


def test_adamw_decays_only_the_decay_group():
    torch.manual_seed(0)
    model = TripodAutoencoder(ScalarCodebook(), n_z=3, **TINY)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameter_groups(weight_decay=0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # Adam's step is 0: only the decoupled decay moves parameters
    optimizer.step()
    for name, p in model.named_parameters():
        factor = 1.0 if name.endswith(".bias") or name.startswith("bottleneck") else 1 - 0.1 * 0.5
        torch.testing.assert_close(p.detach(), before[name] * factor)


def test_encode_returns_evaluation_latents_and_decode_images_in_range():
    model = tripod().eval()
    x = images(5)
    z = model.encode(x)
    assert z.shape == (5, 4)
    assert torch.allclose((z + 1) * 5.5, torch.round((z + 1) * 5.5), atol=1e-5)  # the 12-level grid
    out = model.decode(z)
    assert out.shape == (5, 3, 64, 64) and out.min() >= -1 and out.max() <= 1
    torch.testing.assert_close(model.reconstruct(x), out)  # FSQ: decoded from the same quantized values
    ae = TripodAutoencoder(IdentityBottleneck(), n_z=4, **TINY).eval()
    torch.testing.assert_close(ae.encode(x), ae.encoder(x))


def test_training_reduces_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = TripodAutoencoder(FSQ(), [KLM(1e-3)], n_z=4, **TINY)
    opt = torch.optim.AdamW(model.parameter_groups(), lr=3e-3)
    x = images(8)
    losses = []
    for _ in range(30):
        loss = model(x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.02


def test_the_model_trains_in_a_plain_loop_without_lightning():
    """Importing and training the model must not import Lightning (or anything that does)."""
    script = textwrap.dedent(
        f"""
        import sys, torch
        from tripod_pl.model import TripodAutoencoder
        from tripod_pl.legs import FSQ, KLM, NHP
        torch.manual_seed(0)
        model = TripodAutoencoder(FSQ(), [KLM(1e-3), NHP(1e-2)], n_z=4, **{TINY!r})
        opt = torch.optim.AdamW(model.parameter_groups(), lr=3e-3)
        x = torch.rand(8, 3, 64, 64) * 2 - 1
        first = None
        for _ in range(15):
            loss, terms, _ = model(x)
            opt.zero_grad(); loss.backward(); opt.step()
            first = first if first is not None else terms["reconstruction"].item()
        roots = {{m.split(".")[0] for m in sys.modules}}
        heavy = sorted(roots & {{"lightning", "pytorch_lightning", "lightning_fabric"}})
        print("LIGHTNING", heavy, "TERMS", sorted(terms), "DROP", first - terms["reconstruction"].item())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("LIGHTNING [] TERMS ['klm', 'nhp', 'reconstruction']"), line
    assert float(line.rsplit(" ", 1)[1]) > 0.01  # the steps lowered the reconstruction loss (NHP's draws are noise)
