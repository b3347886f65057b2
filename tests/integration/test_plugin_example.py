"""The plugin example, installed as a package (its entry points resolved from its dist-info), trains through
``python -m tripod_pl``, logs its leg's ``train/decorrelation`` term and its metric's
``eval/latent_correlation``."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import yaml

from ..helpers import ROOT, TINY_CLI

# in the default suite: the issue requires this to run in CI


def test_installed_plugin_leg_trains_and_logs_its_term_and_its_metric(tmp_path, tiny_h5):
    target = tmp_path / "site"
    # a private target directory on PYTHONPATH: nothing is installed into the venv, nothing to uninstall
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(ROOT / "examples" / "plugin"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
    )
    assert pip.returncode == 0, pip.stdout[-3000:]
    assert list(target.glob("tripod_decorrelation-*.dist-info/entry_points.txt"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    # the example's config, its evaluation cut to what this test checks (no forests, no figures)
    config = yaml.safe_load((ROOT / "examples" / "plugin" / "config.yaml").read_text())
    (evaluation,) = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("EvaluationCallback")]
    assert "latent_correlation" in evaluation["init_args"]["metrics"]
    evaluation["init_args"].update(metrics=["infomec", "latent_correlation"], figures=False)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "tripod_pl",
        "fit",
        "--config",
        str(tmp_path / "config.yaml"),
        *TINY_CLI,
        f"--data.path={tiny_h5}",
        "--data.num_workers=0",
        "--data.batch_size=16",
        "--data.generate_if_missing=false",
        "--trainer.max_steps=3",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={tmp_path}",
    ]
    done = subprocess.run(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-4000:]
    with (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").open() as f:
        table = list(csv.DictReader(f))
    rows = [r for r in table if r.get("train/decorrelation")]
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    assert all(float(r["train/decorrelation"]) >= 0 for r in rows)
    evaluated = [r for r in table if r.get("eval/latent_correlation")]  # the evaluation at the end of training
    assert [int(r["step"]) for r in evaluated] == [3]
    assert 0.0 <= float(evaluated[0]["eval/latent_correlation"]) <= 1.0
