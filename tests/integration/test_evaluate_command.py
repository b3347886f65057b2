"""``tripod-train evaluate`` on a trained checkpoint: the model and the data restored from it, the report."""

from __future__ import annotations

import json
import os

import lightning as L
import numpy as np
import pytest
import torch

from tripod_pl import TripodModule
from tripod_pl.cli import main
from tripod_pl.cli.evaluate import CheckpointError, evaluate_checkpoint
from tripod_pl.cli.report import report_paths
from tripod_pl.data import HDF5DataModule
from tripod_pl.evaluation import SCALARS
from tripod_pl.legs import FSQ, KLM

from ..helpers import TINY, pinned_threads

METRIC_KEYS = {
    *SCALARS,
    "checkpoint", "global_step", "epoch", "data", "num_samples", "source_names", "n_z", "discrete", "backend",
    "active", "nmi", "importance", "informativeness", "informativeness_chance", "seconds",
}  # fmt: skip


def data_module(path: str, eval_size: int = 150) -> HDF5DataModule:
    return HDF5DataModule(path, batch_size=16, num_workers=0, eval_size=eval_size)


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_h5, tmp_path_factory) -> str:
    """A checkpoint of a tiny Tripod after two training steps, saved by a trainer fitted with the data module."""
    with pinned_threads(1):
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
    acc, chance = np.asarray(metrics["informativeness"]), np.asarray(metrics["informativeness_chance"])
    assert acc.shape == chance.shape == (data.num_sources,) and acc.mean() == pytest.approx(metrics["i"])
    assert ((chance > 0) & (chance <= 1)).all()
    assert metrics["num_active"] == sum(metrics["active"])
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert f"| InfoM | {metrics['infom']:.3f} |" in table and f"| PSNR (dB) | {metrics['psnr']:.2f} |" in table
    assert all(f"| {name} |" in table for name in data.source_names)
    first = next(line for line in table.splitlines() if line.startswith(f"| {data.source_names[0]} |"))
    assert first.endswith(f"| {acc[0]:.2f} ({chance[0]:.2f}) |")  # the source's accuracy from all latents
    assert sorted(os.listdir(tmp_path / "out")) == ["metrics.json", "metrics.md"]  # no temporary files left


def test_by_default_the_report_goes_next_to_the_checkpoint(tiny_ckpt, tiny_h5):
    json_path, md_path = report_paths(tiny_ckpt)
    assert (json_path.name, md_path.name) == ("tiny.metrics.json", "tiny.metrics.md")
    assert str(json_path.parent) == os.path.dirname(tiny_ckpt)
    metrics = evaluate_checkpoint(tiny_ckpt, data_module(tiny_h5, 60), device="cpu", dci=False)
    stored = json.loads(json_path.read_text())
    assert stored["infom"] == metrics["infom"] and "d" not in stored and stored["importance"] is None
    assert "| D | – |" in md_path.read_text()


def test_evaluate_command_restores_the_data_options_from_the_checkpoint(tiny_ckpt, tiny_h5, tmp_path, capsys):
    out = tmp_path / "a"
    main(["evaluate", "--ckpt_path", tiny_ckpt, "--out_dir", str(out), "--device", "cpu", "--dci", "false"])
    printed = capsys.readouterr().out
    assert "| InfoM |" in printed and f"wrote {out / 'metrics.json'}" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == tiny_h5 and metrics["num_samples"] == 150  # the data options it was trained with
    main(["evaluate", f"--ckpt_path={tiny_ckpt}", "--data.eval_size", "50", "--out_dir", str(tmp_path / "b")])
    other = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert other["num_samples"] == 50 and other["data"] == tiny_h5  # one option overridden, the rest restored


def test_evaluate_command_is_listed_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "evaluate" in capsys.readouterr().out


def test_a_missing_checkpoint_is_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--ckpt_path", str(missing)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tripod-train: error: {missing}: no such checkpoint file"]
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        evaluate_checkpoint(str(missing))
