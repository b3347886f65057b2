"""Leg modules: registry, specs, weights and terms of each leg."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tripod_pl.legs import (
    FSQ,
    KLM,
    NHP,
    BetaTC,
    GaussianBottleneck,
    HessianPenalty,
    IdentityBottleneck,
    Leg,
    Regularizer,
    ScalarCodebook,
    StepContext,
    build_leg,
    get_leg,
    list_legs,
    load_plugins,
    register_leg,
)
from tripod_pl.legs import functional as LF
from tripod_pl.nets import Decoder

BUILTINS = {
    "fsq": FSQ,
    "codebook": ScalarCodebook,
    "gaussian": GaussianBottleneck,
    "identity": IdentityBottleneck,
    "klm": KLM,
    "nhp": NHP,
    "hessian_penalty": HessianPenalty,
    "beta_tc": BetaTC,
}


def test_builtin_legs_are_registered_by_short_name():
    for name, cls in BUILTINS.items():
        assert get_leg(name) is cls
        assert cls.leg_name == name
    assert set(BUILTINS) <= set(list_legs())


def test_unknown_leg_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="fsq"):
        get_leg("no_such_leg")


def test_a_registered_name_cannot_be_taken_by_another_class():
    with pytest.raises(ValueError, match="already taken"):

        @register_leg("fsq")
        class Other(Regularizer):
            pass


@pytest.mark.parametrize(
    "leg",
    [
        FSQ(n_q=7),
        ScalarCodebook(n_v=5, init_range=0.3),
        KLM(weight=0.5, fixed_std=0.2),
        NHP(activations=["cond"], k=3),
        BetaTC(beta=4.0),
        GaussianBottleneck(),
        IdentityBottleneck(),
        HessianPenalty(eps=0.2),
    ],
)
def test_spec_rebuilds_an_equal_leg(leg):
    spec = leg.spec()
    again = build_leg(spec)
    assert type(again) is type(leg) and again.spec() == spec
    short = {"class_path": type(leg).leg_name, "init_args": spec["init_args"]}
    assert build_leg(short).spec() == spec


def _ctx(latents, n_z=3, batch=8):
    x = torch.rand(batch, 3, 16, 16) * 2 - 1
    return StepContext(x=x, latents=latents, decoder=Decoder(n_z, widths=[8, 4], cond_dim=8, image_size=16))


def test_codebook_terms_match_numpy_and_split_their_gradients():
    leg = ScalarCodebook(n_v=4, quantization_weight=0.3, commitment_weight=0.7)
    leg.build(n_z=3)
    np.testing.assert_allclose(leg.codebook.detach().numpy(), np.tile(np.linspace(-0.5, 0.5, 4), (3, 1)), atol=1e-7)
    h = torch.randn(10, 3, requires_grad=True)
    lat = leg(h)
    cb = leg.codebook.detach().numpy()
    hz = h.detach().numpy()
    z_q = np.array([[cb[j][np.abs(cb[j] - hz[i, j]).argmin()] for j in range(3)] for i in range(10)])
    mse = ((hz - z_q) ** 2).mean()
    assert lat.terms["quantization"].item() == pytest.approx(mse, rel=1e-6)
    assert lat.terms["commitment"].item() == pytest.approx(mse, rel=1e-6)
    assert leg.weights == {"quantization": 0.3, "commitment": 0.7}
    lat.terms["quantization"].backward(retain_graph=True)
    assert h.grad is None and leg.codebook.grad.abs().sum() > 0  # quantization moves only the codes
    leg.codebook.grad = None
    lat.terms["commitment"].backward()
    assert leg.codebook.grad is None and h.grad.abs().sum() > 0  # commitment moves only the encoder output
    np.testing.assert_allclose(lat.z_eval.numpy(), z_q, atol=1e-7)


def test_fsq_leg_outputs_grid_latents_for_evaluation():
    lat = FSQ(n_q=5)(torch.randn(6, 4))
    assert set(np.round(lat.z_eval.numpy().ravel(), 6)) <= {-1.0, -0.5, 0.0, 0.5, 1.0}
    assert FSQ.discrete and ScalarCodebook.discrete and not GaussianBottleneck.discrete


def test_gaussian_bottleneck_samples_while_training_and_evaluates_at_mu():
    leg = GaussianBottleneck()
    assert leg.encoder_features(4) == 8
    h = torch.randn(5, 8)
    lat = leg.train()(h)
    torch.testing.assert_close(lat.mu, h[:, :4])
    torch.testing.assert_close(lat.sigma, torch.nn.functional.softplus(h[:, 4:]))
    assert not torch.allclose(lat.z, lat.mu)
    torch.testing.assert_close(lat.z_eval, lat.mu)


def test_gaussian_bottleneck_samples_in_eval_mode_as_the_reference_unless_told_not_to():
    h = torch.randn(2000, 4)
    h[:, 2:] = 0.5  # sigma = softplus(0.5) ~ 0.974
    lat = GaussianBottleneck().eval()(h)
    torch.testing.assert_close(lat.z_eval, h[:, :2])
    noise = (lat.z - lat.mu) / lat.sigma  # standard normal draws
    assert abs(float(noise.mean())) < 0.1 and abs(float(noise.std()) - 1) < 0.1
    deterministic = GaussianBottleneck(sample_in_eval=False).eval()(h)
    torch.testing.assert_close(deterministic.z, h[:, :2])
    assert GaussianBottleneck(sample_in_eval=False).train().samples


def test_klm_leg_uses_quantized_latents_and_continuous_stds():
    fsq = FSQ(n_q=12)
    lat = fsq(torch.randn(16, 3))
    out = KLM(weight=2.0)(_ctx(lat))
    torch.testing.assert_close(out["klm"], LF.klm(lat.z, lat.z_c.std(0, unbiased=False) + 1e-6))
    fixed = KLM(fixed_std=0.3)(_ctx(lat))
    torch.testing.assert_close(fixed["klm"], LF.klm(lat.z, torch.full((3,), 0.3)))
    assert KLM(weight=2.0).weights == {"klm": 2.0}


def test_nhp_leg_runs_the_decoder_only_to_the_deepest_named_activation():
    lat = FSQ()(torch.randn(8, 3))
    ctx = _ctx(lat)
    seen = []
    original = ctx.decoder.activations
    ctx.decoder.activations = lambda z, names: seen.append(list(names)) or original(z, names)
    out = NHP(weight=0.1, activations=["cond", "block0"], k=2)(ctx)
    assert seen == [["cond", "block0"]] and out["nhp"].item() >= 0
    with pytest.raises(KeyError, match="block5"):
        NHP(activations=["block5"])(ctx)


def test_beta_tc_leg_divides_by_pixels_and_weights_alpha_beta_gamma():
    leg = BetaTC(beta=3.0, alpha=0.5, gamma=2.0)
    leg.build(n_z=3, dataset_size=500)
    lat = GaussianBottleneck()(torch.randn(8, 6))
    ctx = _ctx(lat)
    out = leg(ctx)
    ref = LF.beta_tc(lat.z, lat.mu, lat.sigma, 500)
    for key in ("mi", "tc", "dwkl"):
        torch.testing.assert_close(out[key], ref[key] / (3 * 16 * 16))
    assert leg.weights == {"mi": 0.5, "tc": 3.0, "dwkl": 2.0}
    with pytest.raises(RuntimeError, match="Gaussian"):
        leg(_ctx(IdentityBottleneck()(torch.randn(8, 3))))
    with pytest.raises(ValueError, match="dataset size"):
        BetaTC().build(3, None)


# ---- plugins ------------------------------------------------------------------------------------------

PLUGIN_CODE = '''
import torch
from tripod_pl.legs import Regularizer

class L1Latents(Regularizer):
    """Sparsity of the latents: mean |z|."""
    def __init__(self, weight: float = 0.1) -> None:
        super().__init__()
        self.weight = weight

    @property
    def weights(self):
        return {"l1": self.weight}

    def forward(self, ctx):
        return {"l1": ctx.latents.z.abs().mean()}
'''


def install_throwaway_plugin(root, name="tripod_l1_plugin"):
    """Install a package by hand the way pip lays it out: the module plus a dist-info with entry points."""
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(PLUGIN_CODE)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[tripod_pl.legs]\nl1_latents = {name}:L1Latents\n")
    return name


def test_plugin_leg_is_found_through_its_entry_point(tmp_path, monkeypatch):
    name = install_throwaway_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "l1_latents" in load_plugins()
    cls = get_leg("l1_latents")
    assert cls.__module__ == name and issubclass(cls, Leg)
    leg = build_leg({"class_path": "l1_latents", "init_args": {"weight": 0.5}})
    lat = IdentityBottleneck()(torch.ones(4, 3) * -2)
    assert leg(_ctx(lat))["l1"].item() == 2.0
    assert leg.spec() == {"class_path": f"{name}.L1Latents", "init_args": {"weight": 0.5}}
    sys.modules.pop(name, None)


def test_nhp_in_float64_matches_float32_and_trains_the_float32_decoder():
    torch.manual_seed(0)
    lat = FSQ()(torch.randn(8, 3) * 2)
    ctx = _ctx(lat)
    torch.manual_seed(1)
    v32 = NHP(activations=["cond", "block0"])(ctx)["nhp"]
    torch.manual_seed(1)
    v64 = NHP(activations=["cond", "block0"], dtype="float64")(ctx)["nhp"]
    assert v64.dtype == torch.float32
    torch.testing.assert_close(v64, v32, rtol=1e-3, atol=1e-4)
    v64.backward()
    grads = [p.grad for p in ctx.decoder.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)
    with pytest.raises(ValueError, match="dtype"):
        NHP(dtype="float16")


# ---- per-activation diagnostics --------------------------------------------------------------------------------


def test_nhp_diagnostics_split_the_penalty_by_activation():
    torch.manual_seed(0)
    lat = FSQ(12)(torch.randn(8, 3))
    ctx = _ctx(lat)
    leg = NHP(activations=["cond", "block0"], diagnostics=True)
    value = leg(ctx)["nhp"]
    diag = leg.last_diagnostics
    assert set(diag) == {f"{p}/{a}" for p in ("nhp", "hessian_penalty_rescaled") for a in ("cond", "block0")}
    torch.testing.assert_close(diag["nhp/cond"] + diag["nhp/block0"], value.detach())
    assert all(not v.requires_grad and v.item() >= 0 for v in diag.values())
    quiet = NHP(activations=["cond"])
    quiet(ctx)
    assert quiet.last_diagnostics == {}


def test_hessian_penalty_diagnostics_split_it_by_activation_and_add_nhp():
    torch.manual_seed(0)
    lat = FSQ(12)(torch.randn(8, 3))
    leg = HessianPenalty(activations=["cond", "block0"], diagnostics=True)
    value = leg(_ctx(lat))["hessian_penalty"]
    diag = leg.last_diagnostics
    torch.testing.assert_close(diag["hessian_penalty/cond"] + diag["hessian_penalty/block0"], value.detach())
    assert {"nhp/cond", "nhp/block0"} <= set(diag)


def test_the_nhp_numerator_is_the_hessian_penalty_at_unit_stds():
    # the same seed draws the same Rademacher directions first in both: with s = 1, u = eps r in both
    z = torch.randn(6, 3, dtype=torch.float64)
    f = lambda z: [torch.tanh(z[:, :1] * z[:, 1:2] + z), (z[:, 1:] ** 3).sum(-1, keepdim=True)]  # noqa: E731
    _, _, numerators = LF.nhp_parts(
        f, z, torch.ones(3, dtype=torch.float64), generator=torch.Generator().manual_seed(3)
    )
    _, parts = LF.hessian_penalty_parts(f, z, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(torch.stack(numerators), torch.stack(parts))
