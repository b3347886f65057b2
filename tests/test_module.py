"""TripodModule, the Lightning glue: logging, optimizer, the model's API, checkpoint round trip."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tripod_pl import TripodModule, load_model
from tripod_pl.legs import FSQ, KLM, NHP, ScalarCodebook
from tripod_pl.metrics.reconstruction import psnr_paper
from tripod_pl.model import TripodAutoencoder

from .helpers import TINY, images, tiny_trainer


def tripod(**kw) -> TripodModule:
    return TripodModule(FSQ(n_q=12), [KLM(weight=1e-2), NHP(weight=1e-1)], n_z=4, **TINY, **kw)


def test_the_module_wraps_a_plain_model_and_records_its_legs_as_data():
    module = tripod()
    assert isinstance(module.model, TripodAutoencoder) and module.n_z == 4 and module.discrete_latents
    assert module.hparams["bottleneck"]["class_path"] == "tripod_pl.legs.bottlenecks.FSQ"
    assert [r["init_args"]["weight"] for r in module.hparams["regularizers"]] == [1e-2, 1e-1]
    x = images(3)
    torch.testing.assert_close(module.encode(x), module.model.encode(x))


def test_the_module_takes_the_model_arguments_in_the_same_order_and_passes_them_on():
    import inspect

    model_args = list(inspect.signature(TripodAutoencoder).parameters)
    module_args = list(inspect.signature(TripodModule).parameters)
    assert module_args[: len(model_args)] == model_args
    assert inspect.signature(TripodModule).parameters["gelu_approximate"].default == "tanh"
    module = tripod(gelu_approximate="none")
    assert module.model.decoder.gelu_approximate == "none" and module.hparams["gelu_approximate"] == "none"
    assert tripod().model.decoder.gelu_approximate == "tanh"
    assert type(tripod(encoder_type="mlp").model.encoder).__name__ == "MLPEncoder"
    assert tripod(encoder_type="mlp").hparams["encoder_type"] == "mlp"
    dssim = tripod(reconstruction_loss="dssim")
    assert dssim.model.reconstruction_loss == "dssim" and dssim.hparams["reconstruction_loss"] == "dssim"
    assert tripod().model.reconstruction_loss == "bce"


def test_adamw_with_weight_decay_on_the_networks_only():
    module = TripodModule(ScalarCodebook(), n_z=3, weight_decay=0.1, lr=1e-3, betas=(0.8, 0.9), **TINY)
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert no_decay["params"][-1] is module.model.bottleneck.codebook
    assert decay["lr"] == 1e-3 and decay["betas"] == (0.8, 0.9)


def _loader(n=16, batch=8):
    data = [{"image": x, "sources": torch.zeros(2, dtype=torch.long)} for x in images(n)]
    return DataLoader(data, batch_size=batch)


def test_fit_logs_every_term_and_checkpoint_restores_the_same_latents(tmp_path):
    model = tripod()
    trainer = L.Trainer(
        max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=1, gradient_clip_val=1.0,
    )  # fmt: skip
    trainer.fit(model, _loader(), _loader())
    logged = set(trainer.logged_metrics)
    for stage in ("train", "val"):
        assert {f"{stage}/{t}" for t in ("reconstruction", "klm", "nhp", "loss", "psnr", "psnr_paper")} <= logged
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = load_model(str(path))
    assert not restored.training
    x = images(6, seed=3)
    torch.testing.assert_close(restored.encode(x), model.eval().encode(x))
    assert restored.hparams["regularizers"][1]["init_args"]["weight"] == 1e-1


@pytest.mark.parametrize("diagnostics", [True, False])
def test_regularizer_diagnostics_are_logged_per_activation_when_asked_for(tmp_path, diagnostics):
    nhp = NHP(weight=1e-1, activations=["cond", "block0"], diagnostics=diagnostics)
    model = TripodModule(FSQ(n_q=12), [KLM(weight=1e-2), nhp], n_z=4, **TINY)
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=1,
    )  # fmt: skip
    trainer.fit(model, _loader(), _loader())  # one epoch of two steps, then a validation
    logged = trainer.logged_metrics
    names = {f"{stage}/{p}/{a}" for stage in ("train", "val") for p in ("nhp", "hessian_penalty_rescaled")
             for a in ("cond", "block0")}  # fmt: skip
    if not diagnostics:
        assert not names & set(logged) and "val/nhp" in logged
        return
    assert names <= set(logged)
    parts = float(logged["val/nhp/cond"] + logged["val/nhp/block0"])
    assert parts == pytest.approx(float(logged["val/nhp"]), rel=1e-4)


def test_logged_psnr_is_that_of_the_reconstruction(tmp_path):
    model = tripod()
    x = images(8)
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_train_batches=0, limit_val_batches=1,
    )  # fmt: skip
    trainer.validate(model, DataLoader([{"image": xi} for xi in x], batch_size=8), verbose=False)
    model.eval()
    with torch.no_grad():
        r = (model(x) + 1) / 2
    mse = ((r - (x + 1) / 2) ** 2).flatten(1).mean(1)
    expected = (10 * torch.log10(1 / mse)).mean()
    assert float(trainer.logged_metrics["val/psnr"]) == pytest.approx(float(expected), rel=1e-4)
    paper = psnr_paper(model(x), x).mean()  # the reference's uint8 PSNR of the same reconstruction
    assert float(trainer.logged_metrics["val/psnr_paper"]) == pytest.approx(float(paper), rel=1e-5)
    assert float(paper) != pytest.approx(float(expected), rel=1e-3)


def test_training_steps_compute_their_metrics_only_when_the_loggers_write_them(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger

    import tripod_pl.module as module_file

    calls = []

    def counting_psnr(*args):
        calls.append(1)
        return module_file.psnr.__wrapped__(*args)

    counting_psnr.__wrapped__ = module_file.psnr
    monkeypatch.setattr(module_file, "psnr", counting_psnr)
    trainer = L.Trainer(
        max_steps=7, log_every_n_steps=3, logger=CSVLogger(tmp_path), enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(tripod(), _loader(n=64))
    assert len(calls) == 3  # steps 3 and 6 (every third), and 7, the last: nothing else reaches the loggers
    rows = [r.split(",") for r in (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()]
    step, psnr = rows[0].index("step"), rows[0].index("train/psnr")
    logged_steps = [int(r[step]) for r in rows[1:] if r[psnr]]
    assert logged_steps == [2, 5]  # 0-based global steps of the logging steps
    assert "loss" in trainer.progress_bar_metrics  # the progress bar's loss is still updated every step


class LearningRates(L.Callback):
    """Every parameter group's learning rate at the start of every training batch."""

    def __init__(self) -> None:
        self.seen: list[list[float]] = []

    def on_train_batch_start(self, trainer, *args) -> None:
        self.seen.append([group["lr"] for group in trainer.optimizers[0].param_groups])


def _fit_lrs(module: TripodModule, tmp_path, steps: int) -> list[list[float]]:
    lrs = LearningRates()
    tiny_trainer(tmp_path, [lrs], max_steps=steps).fit(module, _loader(n=16, batch=4))
    return lrs.seen


@pytest.mark.parametrize("decay_steps", [None, 4])
def test_cosine_schedule_steps_every_group_every_optimizer_step(tmp_path, decay_steps):
    module = TripodModule(
        ScalarCodebook(), n_z=3, weight_decay=0.1, lr=1e-3, lr_schedule="cosine", lr_decay_steps=decay_steps,
        lr_final_ratio=0.2, **TINY,
    )  # fmt: skip
    seen = _fit_lrs(module, tmp_path, steps=6)
    T = decay_steps or 6  # default: the trainer's max_steps
    want = [1e-3 * (0.2 + 0.8 * (1 + np.cos(np.pi * min(t, T) / T)) / 2) for t in range(6)]
    assert len(seen) == 6 and all(len(groups) == 2 for groups in seen)
    for groups, lr in zip(seen, want, strict=True):
        assert groups == pytest.approx([lr, lr], rel=1e-12)


def test_a_resumed_run_keeps_the_saved_curve_even_with_more_steps(tmp_path):
    def module():
        return TripodModule(ScalarCodebook(), n_z=3, lr=1e-3, lr_schedule="cosine", lr_final_ratio=0.2, **TINY)

    first = tiny_trainer(tmp_path, [], max_steps=4)
    first.fit(module(), _loader(n=16, batch=4))  # T = 4 steps, the trainer's
    first.save_checkpoint(tmp_path / "four.ckpt")
    lrs = LearningRates()
    resumed = tiny_trainer(tmp_path, [lrs], max_steps=6)
    resumed.fit(module(), _loader(n=16, batch=4), ckpt_path=tmp_path / "four.ckpt")
    # steps 4 and 5 on the saved 4-step curve: its end, 0.2 lr (a new 6-step curve would give 0.4 and 0.27 lr)
    assert lrs.seen == [pytest.approx([0.2e-3, 0.2e-3], rel=1e-12)] * 2


def test_constant_schedule_keeps_the_learning_rate(tmp_path):
    module = TripodModule(ScalarCodebook(), n_z=3, lr=1e-3, **TINY)
    assert isinstance(module.configure_optimizers(), torch.optim.AdamW)  # no scheduler at all
    assert _fit_lrs(module, tmp_path, steps=3) == [[1e-3, 1e-3]] * 3


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"lr_schedule": "linear"}, "lr_schedule must be 'constant' or 'cosine'"),
        ({"lr_decay_steps": 0}, "lr_decay_steps must be a positive"),
        ({"lr_final_ratio": 1.5}, r"lr_final_ratio must lie in \[0, 1\]"),
    ],
)
def test_bad_schedule_arguments_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        TripodModule(ScalarCodebook(), n_z=3, **TINY, **kw)


def test_a_cosine_schedule_without_a_length_outside_a_trainer_says_what_it_needs():
    module = TripodModule(ScalarCodebook(), n_z=3, lr_schedule="cosine", **TINY)
    with pytest.raises(ValueError, match="needs lr_decay_steps"):
        module.configure_optimizers()
    stated = TripodModule(ScalarCodebook(), n_z=3, lr=1e-3, lr_schedule="cosine", lr_decay_steps=4, **TINY)
    config = stated.configure_optimizers()
    scheduler = config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step" and scheduler.optimizer is config["optimizer"]
    for _ in range(2):
        config["optimizer"].step()
        scheduler.step()
    assert config["optimizer"].param_groups[0]["lr"] == pytest.approx(0.5e-3)  # half way down a cosine to 0
