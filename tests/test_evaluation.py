"""tripod_pl.evaluation: metrics of a model and of a checkpoint, the JSON/Markdown report, the evaluate command."""

from __future__ import annotations

import json
import os

import lightning as L
import numpy as np
import pytest
import torch

import tripod_pl.metrics
from tripod_pl import TripodModule
from tripod_pl.data import HDF5DataModule
from tripod_pl.data.transforms import to_float_images
from tripod_pl.evaluation import (
    SCALARS,
    eval_mode,
    evaluate_checkpoint,
    evaluate_main,
    evaluate_model,
    markdown_report,
    report_paths,
)
from tripod_pl.legs import FSQ, KLM, GaussianBottleneck

from .callbacks.conftest import _one_thread  # noqa: F401  (fixture)
from .conftest import TINY

METRIC_KEYS = {
    *SCALARS,
    "checkpoint", "global_step", "epoch", "data", "num_samples", "source_names", "n_z", "discrete", "backend",
    "active", "nmi", "importance", "seconds",
}  # fmt: skip


def data_module(path: str, eval_size: int = 150) -> HDF5DataModule:
    return HDF5DataModule(path, batch_size=16, num_workers=0, eval_size=eval_size)


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_h5, tmp_path_factory) -> str:
    """A checkpoint of a tiny Tripod after two training steps, saved by a trainer fitted with the data module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("run")
    model = TripodModule(FSQ(), [KLM()], n_z=4, **TINY)
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(root),
    )  # fmt: skip
    trainer.fit(model, datamodule=data_module(tiny_h5))
    path = root / "checkpoints" / "tiny.ckpt"
    trainer.save_checkpoint(path)
    torch.set_num_threads(threads)
    return str(path)


def test_evaluate_checkpoint_writes_json_and_markdown_with_every_metric(tiny_ckpt, tiny_h5, tmp_path):
    data = data_module(tiny_h5)
    metrics = evaluate_checkpoint(tiny_ckpt, data, out_dir=str(tmp_path / "out"), device="cpu")
    assert set(metrics) == METRIC_KEYS
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert stored == json.loads(json.dumps(metrics))
    assert metrics["global_step"] == 2 and metrics["num_samples"] == 150 and metrics["n_z"] == 4
    assert metrics["discrete"] is True and metrics["source_names"] == data.source_names
    assert np.asarray(metrics["nmi"]).shape == (data.num_sources, 4)
    assert np.asarray(metrics["importance"]).shape == (4, data.num_sources)
    assert metrics["num_active"] == sum(metrics["active"])
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert f"| InfoM | {metrics['infom']:.3f} |" in table and f"| PSNR (dB) | {metrics['psnr']:.2f} |" in table
    assert all(f"| {name} |" in table for name in data.source_names)
    assert sorted(os.listdir(tmp_path / "out")) == ["metrics.json", "metrics.md"]  # no temporary files left


def test_reports_go_next_to_the_checkpoint_under_its_name(tiny_ckpt, tiny_h5):
    json_path, md_path = report_paths(tiny_ckpt)
    assert (json_path.name, md_path.name) == ("tiny.metrics.json", "tiny.metrics.md")
    assert str(json_path.parent) == os.path.dirname(tiny_ckpt)
    metrics = evaluate_checkpoint(tiny_ckpt, data_module(tiny_h5, 60), device="cpu", dci=False)
    stored = json.loads(json_path.read_text())
    assert stored["infom"] == metrics["infom"] and "d" not in stored and stored["importance"] is None
    assert "| D | – |" in md_path.read_text()


def test_evaluate_model_equals_the_metrics_of_its_latents_and_the_modules_psnr(tiny_h5):
    torch.manual_seed(0)
    model = TripodModule(FSQ(), [KLM()], n_z=4, **TINY)
    images, sources = data_module(tiny_h5, 100).eval_subset()
    result = evaluate_model(model, images, sources, dci=True, batch_size=32)
    x = to_float_images(images)
    model.eval()
    with torch.no_grad():
        z = model.encode(x)
        module_psnr = torch.stack([TripodModule.psnr(model.decoder(z[i : i + 1]), x[i : i + 1]) for i in range(100)])
    torch.testing.assert_close(result.latents, z)
    info, dci = tripod_pl.metrics.infomec(sources, z, discrete=True), tripod_pl.metrics.dci(sources, z)
    for key in ("infom", "infoc", "infoe"):
        assert result.scalars[key] == pytest.approx(float(info[key]), abs=1e-6)
    for key in ("d", "c", "i"):
        assert result.scalars[key] == pytest.approx(float(dci[key]), abs=1e-6)
    np.testing.assert_allclose(result.nmi, np.asarray(info["nmi"]), atol=1e-6)
    assert result.scalars["psnr"] == pytest.approx(float(module_psnr.mean()), rel=1e-4)
    assert list(result.scalars) == list(SCALARS)


def test_gaussian_models_are_evaluated_on_their_means(tiny_h5):
    torch.manual_seed(0)
    model = TripodModule(GaussianBottleneck(), n_z=3, **TINY).train()
    images, sources = data_module(tiny_h5, 40).eval_subset()
    first = evaluate_model(model, images, sources, dci=False).latents
    again = evaluate_model(model, images, sources, dci=False).latents
    torch.testing.assert_close(first, again)  # no sampling: mu, deterministic
    assert model.training


def test_eval_mode_restores_each_submodules_own_mode():
    model = TripodModule(FSQ(), n_z=2, **TINY).train()
    model.decoder.eval()
    with eval_mode(model):
        assert not model.training and not model.encoder.training and not torch.is_grad_enabled()
    assert model.training and model.encoder.training and not model.decoder.training


def test_evaluate_command_reads_the_data_options_from_the_checkpoint(tiny_ckpt, tiny_h5, tmp_path, capsys):
    out = tmp_path / "a"
    metrics = evaluate_main(["--ckpt_path", tiny_ckpt, "--out_dir", str(out), "--device", "cpu", "--dci", "false"])
    printed = capsys.readouterr().out
    assert "| InfoM |" in printed and f"wrote {out / 'metrics.json'}" in printed
    assert metrics["data"] == tiny_h5 and metrics["num_samples"] == 150  # the data options it was trained with
    other = evaluate_main(
        [f"--ckpt_path={tiny_ckpt}", "--data.path", tiny_h5, "--data.eval_size", "50", "--out_dir", str(tmp_path / "b")]
    )
    assert other["num_samples"] == 50 and (tmp_path / "b" / "metrics.md").exists()


def test_markdown_report_of_a_collapsed_model_has_no_best_latents():
    metrics = {
        "checkpoint": "/x/last.ckpt", "global_step": 7, "infom": 0.0, "infoc": 0.0, "infoe": 0.0, "num_active": 0,
        "n_z": 2, "psnr": 12.345, "source_names": ["a", "b"], "nmi": [[0.1, 0.2], [0.0, 0.0]],
        "active": [False, False], "num_samples": 1000, "data": "d.h5", "discrete": False,
    }  # fmt: skip
    text = markdown_report(metrics)
    assert text.startswith("# Evaluation of `last.ckpt` (step 7)")
    assert "| D | – |" in text and "| active latents | 0 / 2 |" in text and "| PSNR (dB) | 12.35 |" in text
    assert "| a | – | – |" in text and "continuous latents" in text
