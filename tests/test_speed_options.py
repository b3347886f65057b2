"""Speed options (docs/architecture.md, "Speed options"): bf16 autocast for every method, channels_last,
torch.compile with its eager fallback, the training step without host-device synchronisation, uint8 batches to
the device."""

from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from tripod_pl.data import HDF5DataModule
from tripod_pl.legs import (
    DIPVAE,
    FSQ,
    KL,
    KLM,
    MMD,
    NHP,
    BetaTC,
    FactorTC,
    GaussianBottleneck,
    HessianPenalty,
    IdentityBottleneck,
    ScalarCodebook,
)
from tripod_pl.legs import functional as LF
from tripod_pl.legs.base import StepContext
from tripod_pl.model import TripodAutoencoder
from tripod_pl.module import TripodModule
from tripod_pl.nets import CompiledCall

from .helpers import TINY, tiny_data, tiny_trainer

SMALL = dict(n_z=4, encoder_widths=(4, 8), decoder_widths=(8, 4), cond_dim=8, image_size=16, dataset_size=100)

METHODS = {
    "ae": lambda: (IdentityBottleneck(), []),
    "qlae": lambda: (ScalarCodebook(n_v=6), []),
    "beta_tcvae": lambda: (GaussianBottleneck(), [BetaTC(beta=4.0)]),
    "tripod": lambda: (FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2, activations=["cond", "block0"])]),
    "tripod_jvp": lambda: (FSQ(n_q=12), [KLM(weight=1e-4), NHP(activations=["cond", "block0"], method="jvp")]),
    "tripod_naive": lambda: (FSQ(n_q=12), [KLM(fixed_std=0.5), HessianPenalty(activations=["cond", "block0"])]),
    "betavae": lambda: (GaussianBottleneck(), [KL(beta=4.0)]),
    "dipvae": lambda: (GaussianBottleneck(), [KL(), DIPVAE()]),
    "infovae": lambda: (GaussianBottleneck(), [KL(), MMD()]),
    "factorvae": lambda: (GaussianBottleneck(), [KL(), FactorTC(hidden=16)]),
}


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 16, 16), generator=gen, dtype=torch.uint8).float() / 127.5 - 1


def _model(method: str, **options) -> TripodAutoencoder:
    torch.manual_seed(0)
    bottleneck, regularizers = METHODS[method]()
    return TripodAutoencoder(bottleneck, regularizers, **SMALL, **options)


# ---- bf16 autocast ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
def test_training_step_under_bf16_autocast_is_finite_for_every_method(method):
    model = _model(method)
    x = _images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, terms, logits = model(x)
    assert logits.dtype == torch.bfloat16  # autocast did lower the networks
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in terms.values())
    assert all(v.dtype == torch.float32 for v in terms.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.decoder.input.grad.abs().sum() > 0


def test_fsq_codes_under_bf16_autocast_equal_the_float32_ones():
    model = _model("tripod")
    x = _images(64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = model.encoder(x)
        latents = model.bottleneck(h)
        latents_f32_input = model.bottleneck(h.float())
    assert h.dtype == torch.bfloat16
    assert latents.z.dtype == latents.z_c.dtype == torch.float32
    # the quantizer itself does not lose precision under autocast: the same codes as outside it
    z_c, z = LF.fsq(h.float(), 12)
    torch.testing.assert_close(latents.z, z, rtol=0, atol=0)
    torch.testing.assert_close(latents_f32_input.z, z, rtol=0, atol=0)
    torch.testing.assert_close(latents.z_c, z_c, rtol=0, atol=0)
    # codes of the whole bf16 model against the float32 model: only features within bf16 rounding
    # (~0.4 %) of a cell boundary may move, and by one grid step at most
    z32 = model.bottleneck(model.encoder(x)).z
    assert (latents.z - z32).abs().max() <= 2 / 11 + 1e-6
    assert (latents.z == z32).float().mean() > 0.9


@pytest.mark.parametrize("leg", ["klm", "beta_tc"])
def test_batch_estimates_run_in_float32_under_autocast(leg):
    torch.manual_seed(1)
    z = (torch.randn(32, 4) * 0.3).bfloat16()
    if leg == "klm":
        from tripod_pl.legs.base import Latents

        latents = Latents(z=z, z_c=z, z_eval=z)
        reg = KLM()
        expected = LF.klm(z.float(), LF.latent_std(z.float()))
    else:
        bottleneck = GaussianBottleneck()
        latents = bottleneck(torch.randn(32, 8))
        latents.z, latents.mu, latents.sigma = latents.z.bfloat16(), latents.mu.bfloat16(), latents.sigma.bfloat16()
        reg = BetaTC()
        reg.build(4, dataset_size=100)
        expected = LF.beta_tc(latents.z.float(), latents.mu.float(), latents.sigma.float(), 100)["tc"] / 3
    ctx = StepContext(x=torch.zeros(32, 3, 1, 1), latents=latents, decoder=torch.nn.Identity())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = reg(ctx)
    value = terms["klm"] if leg == "klm" else terms["tc"]
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)


# ---- channels_last ------------------------------------------------------------------------------------


def test_channels_last_gives_the_same_loss_and_gradients():
    x = _images()
    # NHP by jvp: float32 finite differences would amplify the different summation order of the convolutions
    plain, fast = _model("tripod_jvp"), _model("tripod_jvp", channels_last=True)
    fast.load_state_dict(plain.state_dict())
    conv = fast.encoder.stages[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    torch.manual_seed(5)
    loss_a, _, logits_a = plain(x)
    torch.manual_seed(5)
    loss_b, _, logits_b = fast(x)
    assert logits_b.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    loss_a.backward(), loss_b.backward()
    for (name, a), b in zip(plain.named_parameters(), fast.parameters(), strict=True):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert set(plain.state_dict()) == set(fast.state_dict())
    torch.testing.assert_close(fast.encode(x), plain.encode(x))


# ---- torch.compile ------------------------------------------------------------------------------------


def test_compile_falls_back_to_eager_with_a_warning_saying_why(monkeypatch):
    model = _model("tripod", compile=True)
    assert set(model.state_dict()) == set(_model("tripod").state_dict())  # the wrappers are no submodules

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\ndetails")

    for call in model._compiled.values():
        monkeypatch.setattr(call, "compiled", broken)
    x = _images()
    with pytest.warns(RuntimeWarning, match=r"torch.compile of the encoder failed, running it eagerly.*no C\+\+"):
        loss, _, _ = model(x)
    assert model._compiled["encoder"].reason == "RuntimeError: no C++ compiler found"
    torch.manual_seed(0)
    eager = _model("tripod")
    eager.load_state_dict(model.state_dict())
    torch.testing.assert_close(loss, eager(x).loss)  # same draws: both seeded by _model's manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: later calls are eager and quiet
        model(x)


def test_compile_fallback_lets_the_callers_own_errors_through():
    call = CompiledCall(torch.nn.Linear(3, 2), "linear")
    call.compiled = call.module  # stands in for a working compiled module
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        call(torch.zeros(4, 5))
    assert call.reason is None
    copied = copy.deepcopy(call)
    assert copied.module is not call.module and isinstance(copied.compiled, torch.nn.Module)


@pytest.mark.slow
def test_compiled_training_step_matches_eager_on_cpu():
    # compiling takes minutes on a shared 2-core CPU (inductor's C++ code generation). NHP by jvp: float32
    # finite differences would amplify the compiler's different rounding (0.2 % of the loss at this size)
    x = _images()
    eager, compiled = _model("tripod_jvp"), _model("tripod_jvp", compile=True)
    compiled.load_state_dict(eager.state_dict())
    torch.manual_seed(3)
    ref = eager(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        torch.manual_seed(3)
        out = compiled(x)
    assert all(call.reason is None for call in compiled._compiled.values())
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-4, atol=1e-5)
    out.loss.backward(), ref.loss.backward()
    torch.testing.assert_close(compiled.decoder.input.grad, eager.decoder.input.grad, rtol=1e-3, atol=1e-5)


# ---- no host-device synchronisation, uint8 to the device -------------------------------------------------


def _module(**options) -> TripodModule:
    torch.manual_seed(0)
    bottleneck, regularizers = METHODS["tripod"]()
    return TripodModule(bottleneck, regularizers, **SMALL, **options)


def test_non_finite_loss_is_reported_at_the_logging_interval():
    module = _module()
    module._trainer = SimpleNamespace(log_every_n_steps=3, global_step=7)
    module._check_finite(torch.tensor(1.0))
    module._check_finite(torch.tensor(float("nan")))  # not read yet: no wait for the device
    with pytest.raises(FloatingPointError, match="within the 3 steps up to step 7"):
        module._check_finite(torch.tensor(2.0))
    for _ in range(3):  # the flag starts afresh after a check
        module._check_finite(torch.tensor(1.0))
    module._trainer = None  # without a trainer: every step
    with pytest.raises(FloatingPointError):
        module._check_finite(torch.tensor(float("inf")))


def test_batches_travel_as_uint8_and_the_module_leaves_the_transfer_hooks_alone(tiny_h5):
    for hook in ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer"):
        assert getattr(TripodModule, hook) is getattr(L.LightningModule, hook), hook  # the DataModule counts batches
    dm = HDF5DataModule(tiny_h5, batch_size=4, num_workers=0, eval_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape[-1] == 3
    moved = dm.on_after_batch_transfer(batch, 0)
    assert moved["image"].dtype == torch.float32 and moved["image"].shape[1] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_step_does_not_synchronise_with_the_device():
    module = _module().cuda()
    optimizer = module.configure_optimizers()
    batch = {"image": _images(16).cuda()}

    def step() -> None:
        loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # no logging (that is the Trainer's business): self.log returns at once with barebones
    module._trainer = SimpleNamespace(log_every_n_steps=1000, global_step=0, barebones=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer loop
        step()  # warm-up: lazy initialisations may synchronise once
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(3):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_fit_with_bf16_mixed_channels_last_and_exact_nhp(tiny_h5, tmp_path, one_thread):
    torch.manual_seed(0)
    nhp = NHP(activations=["cond", "block0"], method="jvp", diagnostics=True)
    module = TripodModule(FSQ(n_q=12), [KLM(), nhp], n_z=4, channels_last=True, **TINY)
    trainer = tiny_trainer(tmp_path, [], precision="bf16-mixed", log_every_n_steps=2)
    trainer.fit(module, datamodule=tiny_data(tiny_h5))
    assert trainer.global_step == 4
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and metrics["train/nhp"] > 0
    assert module.hparams["channels_last"] and module.hparams["compile"] is False
    assert module._unchecked_steps == 0  # checked at steps 2 and 4
