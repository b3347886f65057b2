"""``tripod-sweep`` end to end: two tiny methods trained here two at a time, evaluated and collected; a rerun
does nothing; SLURM submission through the sbatch script with a stand-in ``sbatch`` on PATH."""

from __future__ import annotations

import json

import yaml

from tripod_pl.cli.sweep import main

from ..helpers import ROOT, TINY


def tiny_method(folder, tiny_h5, name, bottleneck, regularizers):
    """The quickstart config at tiny widths on the tiny file, 2 steps, evaluated and selectable at step 2."""
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["trainer"].update(max_steps=2, val_check_interval=2, limit_val_batches=1, enable_progress_bar=False,
                          enable_model_summary=False)  # fmt: skip
    for callback in cfg["trainer"]["callbacks"]:
        if callback["class_path"].endswith("BestInfoMCheckpoint"):
            callback["init_args"]["psnr_threshold"] = -1000.0
        if callback["class_path"].endswith("EvaluationCallback"):
            callback["init_args"].update(every_n_steps=2, dci=False, figures=False)
    cfg["model"].update(TINY, bottleneck=bottleneck, regularizers=regularizers)
    cfg["data"].update(path=tiny_h5, num_workers=0, batch_size=16, eval_size=60)
    path = folder / "configs" / "tiny" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))


def test_a_local_sweep_runs_evaluates_collects_and_is_idempotent(tmp_path, tiny_h5, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny_method(tmp_path, tiny_h5, "tripod", {"class_path": "FSQ"}, [{"class_path": "KLM"}])
    tiny_method(tmp_path, tiny_h5, "ae", {"class_path": "IdentityBottleneck"}, [])
    (tmp_path / "sweep.yaml").write_text("name: tiny\nroot: runs\nconfigs: [configs/tiny/*.yaml]\nseeds: [0]\n")
    main(["run", "sweep.yaml", "--parallel", "2", "--collect", "results", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "tiny: 2 jobs to run, 0 already done" in out and "tiny/tripod/seed0: done" in out, out
    runs = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert sorted((r["method"], r["seed"], r["global_step"], r["checkpoint"]) for r in runs) == [
        ("ae", 0, 2, "best-infom.ckpt"), ("tripod", 0, 2, "best-infom.ckpt")
    ]  # fmt: skip
    assert "| tripod | 1 |" in (tmp_path / "results" / "tiny.md").read_text()

    result = tmp_path / "runs" / "tiny" / "tripod" / "seed0" / "metrics.json"
    before = result.stat().st_mtime_ns
    main(["run", "sweep.yaml"])
    assert "tiny: 0 jobs to run, 2 already done" in capsys.readouterr().out
    assert result.stat().st_mtime_ns == before
