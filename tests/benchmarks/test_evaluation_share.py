"""Smoke test of benchmarks/evaluation_share.py on the quickstart config at tiny widths: its record's stages and
shares fit together (speed itself is measured by the benchmark, never asserted here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ..helpers import ROOT, TINY, load_script


@pytest.mark.slow
def test_the_record_of_a_tiny_quickstart(tmp_path: Path, tiny_h5: str) -> None:
    bench = load_script("benchmarks/evaluation_share.py")
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["model"].update(TINY)
    config["data"].update(path=tiny_h5, num_workers=0, batch_size=8, generate_if_missing=False, eval_size=64)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = bench.measure(str(tmp_path / "config.yaml"), "cpu", steps=2, repeats=1, ckpt=None)
    evaluation = run["evaluation"]
    assert set(evaluation["stages_wall"]) == {"encode", "infomec", "dci", "hessian"}  # the config's options
    assert sum(evaluation["stages_wall"].values()) <= evaluation["evaluate_wall"]
    assert evaluation["total_wall"] == pytest.approx(evaluation["evaluate_wall"] + evaluation["figures_wall"])
    (evaluation_args,) = [c["init_args"] for c in config["trainer"]["callbacks"] if "Evaluation" in c["class_path"]]
    every = evaluation_args["every_n_steps"]
    assert run["every_n_steps"] == every and run["eval_images"] == 64
    train_seconds = every * run["seconds_per_step"]
    assert run["share_sync"] == pytest.approx(evaluation["total_wall"] / train_seconds)
    assert run["async_saves_checkpoint"]  # the quickstart selects with BestInfoMCheckpoint
    blocking = evaluation["snapshot_wall"] + run["checkpoint_wall"]
    assert run["share_async_blocking"] == pytest.approx(blocking / train_seconds)
