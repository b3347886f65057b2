"""``tripod-train evaluate --interventions true``: the FactorVAE and BetaVAE scores of a checkpoint on its data
file's grid, in the JSON and the Markdown report."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from tripod_pl import TripodModule
from tripod_pl.cli import main
from tripod_pl.cli.evaluate import evaluate_checkpoint
from tripod_pl.cli.report import markdown_report
from tripod_pl.data import HDF5DataModule
from tripod_pl.legs import FSQ, KLM

from ..helpers import TINY

INTERVENTION_KEYS = {"factorvae", "factorvae_train", "factorvae_active", "betavae", "betavae_train"}


@pytest.fixture(scope="module")
def ckpt(tiny_h5, tmp_path_factory) -> str:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("run")
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(root),
    )  # fmt: skip
    data = HDF5DataModule(tiny_h5, batch_size=16, num_workers=0, eval_size=60)
    trainer.fit(TripodModule(FSQ(), [KLM()], n_z=4, **TINY), datamodule=data)
    path = root / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


def test_interventions_add_the_scores_to_the_json_and_the_table(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["evaluate", "--ckpt_path", ckpt, "--out_dir", str(out), "--device", "cpu", "--dci", "false"]
    main(
        [*args, "--interventions", "true", "--intervention_train", "3", "--intervention_eval", "2"]
        + ["--intervention_batch", "8", "--intervention_variance", "40"]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert INTERVENTION_KEYS <= set(metrics) and metrics["intervention_seconds"] > 0
    assert 0 <= metrics["factorvae"] <= 1 and 0 <= metrics["betavae"] <= 1
    assert 0 <= metrics["factorvae_active"] <= 4
    table = (out / "metrics.md").read_text()
    assert f"| FactorVAE score | {metrics['factorvae']:.3f} |" in table
    assert f"| BetaVAE score | {metrics['betavae']:.3f} |" in table
    assert "| BetaVAE score |" in capsys.readouterr().out


def test_without_the_option_there_are_no_intervention_scores(ckpt, tiny_h5):
    data = HDF5DataModule(tiny_h5, batch_size=16, num_workers=0, eval_size=30)
    metrics = evaluate_checkpoint(ckpt, data, device="cpu", dci=False)
    assert not INTERVENTION_KEYS & set(metrics)
    assert "FactorVAE" not in markdown_report(metrics) and "MIG" not in markdown_report(metrics)


@pytest.mark.parametrize("option", ["--intervention_train=0", "--intervention_batch=1"])
def test_too_few_votes_or_images_is_a_one_line_error(ckpt, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--ckpt_path", ckpt, "--interventions", "true", option])
    assert exit_info.value.code == 2
    assert option.split("=")[0].lstrip("-") in capsys.readouterr().err


def test_the_table_shows_the_older_metrics_when_present():
    metrics = {
        "infom": 0.5, "infoc": 0.25, "infoe": 0.75, "num_active": 1, "n_z": 2, "psnr": 20.0, "num_samples": 10,
        "data": "d.h5", "discrete": True, "mig": 0.4321, "sap": 0.1, "modularity": 0.9, "explicitness": 0.8,
    }  # fmt: skip
    lines = markdown_report(metrics).splitlines()
    at = lines.index("| MIG | 0.432 |")
    assert lines[at + 1 : at + 4] == ["| SAP | 0.100 |", "| Modularity | 0.900 |", "| Explicitness | 0.800 |"]
