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
    cfg["model"].pop("weight_schedules", None)  # they name the quickstart legs' terms
    cfg["data"].update(path=tiny_h5, num_workers=0, batch_size=16, eval_size=60)
    path = folder / "configs" / "tiny" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))


def test_a_local_sweep_runs_evaluates_collects_and_is_idempotent(tmp_path, tiny_h5, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    tiny_method(tmp_path, tiny_h5, "tripod", {"class_path": "FSQ"}, [{"class_path": "KLM"}])
    tiny_method(tmp_path, tiny_h5, "ae", {"class_path": "IdentityBottleneck"}, [])
    (tmp_path / "sweep.yaml").write_text(
        "name: tiny\nroot: runs\nconfigs: [configs/tiny/*.yaml]\nseeds: [0]\nrecord: records\n"
    )
    main(["run", "sweep.yaml", "--parallel", "2", "--collect", "results", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "tiny: 2 jobs to run, 0 already done" in out and "tiny/tripod/seed0: done" in out, out
    runs = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert sorted((r["method"], r["seed"], r["global_step"], r["checkpoint"]) for r in runs) == [
        ("ae", 0, 2, "best-infom.ckpt"), ("tripod", 0, 2, "best-infom.ckpt")
    ]  # fmt: skip
    assert "| tripod | 1 |" in (tmp_path / "results" / "tiny.md").read_text()

    result = tmp_path / "runs" / "tiny" / "tripod" / "seed0" / "metrics.json"
    record = tmp_path / "records" / "tiny" / "tripod" / "seed0.json"
    assert record.read_text() == result.read_text()  # each finished run's result is kept in the record
    before = result.stat().st_mtime_ns
    main(["run", "sweep.yaml"])
    assert "tiny: 0 jobs to run, 2 already done" in capsys.readouterr().out
    assert result.stat().st_mtime_ns == before

    # evaluating again (after the evaluation gained a metric, say) refreshes the run's result and its record
    first = json.loads(result.read_text())
    record.write_text(json.dumps({**first, "infom": -1.0}))
    main(["evaluate", "sweep.yaml", "--device", "cpu"])
    assert "tiny/tripod/seed0: evaluated again" in capsys.readouterr().out
    again = json.loads(record.read_text())
    assert again == json.loads(result.read_text()) and again["infom"] == first["infom"]  # same checkpoint, same score
    assert len(again["informativeness"]) == len(again["source_names"])
    import shutil

    shutil.rmtree(tmp_path / "runs")  # another clone: only the records travelled (e.g. in git)
    main(["run", "sweep.yaml"])
    assert "tiny: 0 jobs to run, 2 already done" in capsys.readouterr().out
    main(["evaluate", "sweep.yaml"])  # no checkpoints here: the records stay as they are
    assert "tiny/tripod/seed0: kept as recorded" in capsys.readouterr().out
    assert json.loads(record.read_text()) == again


FAKE_SBATCH = """#!/usr/bin/env bash
# stand-in sbatch: records its arguments, then runs the script once per array task in dry-run mode
echo "$@" > "$FAKE_SBATCH_LOG.args"
array=""; exports=""
for arg in "$@"; do
  case "$arg" in --array=*) array=${arg#--array=}; array=${array%%%*};; --export=*) exports=${arg#--export=};; esac
done
script="${@: -1}"
IFS=, read -r -a pairs <<< "$exports"
for pair in "${pairs[@]}"; do [[ "$pair" == *=* ]] && export "$pair"; done
for ((task=${array%-*}; task<=${array#*-}; task++)); do
  SLURM_ARRAY_TASK_ID=$task DRY_RUN=1 bash "$script" >> "$FAKE_SBATCH_LOG.tasks"
done
"""


def test_submit_sends_the_pending_jobs_through_the_sbatch_script_as_one_array(tmp_path, monkeypatch, capsys):
    import os
    import shlex
    import sys

    monkeypatch.chdir(tmp_path)
    for method in ("tripod", "ae"):
        (tmp_path / "configs" / "toy").mkdir(parents=True, exist_ok=True)
        (tmp_path / "configs" / "toy" / f"{method}.yaml").write_text("{}\n")
    (tmp_path / "sweep.yaml").write_text(
        "name: toy\nroot: runs\nconfigs: [configs/toy/tripod.yaml, configs/toy/ae.yaml]\nseeds: [0, 1]\n"
        "overrides: ['--trainer.max_steps=7']\n"
    )
    done = tmp_path / "runs" / "toy" / "ae" / "seed1"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")  # finished: not submitted again
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    log = tmp_path / "sbatch"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_LOG", str(log))
    monkeypatch.setenv("TRIPOD_VENV", str(ROOT / ".venv") if (ROOT / ".venv").is_dir() else sys.prefix)

    main(["submit", "sweep.yaml", "--script", str(ROOT / "examples" / "slurm" / "train.sbatch"), "--",
          "--gpus-per-node=1"])  # fmt: skip
    args = log.with_suffix(".args").read_text().split()
    assert args[:3] == [
        "--array=0-2",
        "--job-name=toy",
        f"--export=ALL,JOBS_FILE={tmp_path / 'runs' / 'toy.jobs'},EVALUATE=1",
    ]
    assert args[3] == "--gpus-per-node=1" and args[-1].endswith("train.sbatch")

    lines = [shlex.split(line) for line in log.with_suffix(".tasks").read_text().splitlines()]
    trains, finishes = lines[0::2], lines[1::2]
    assert len(trains) == 3 and all(f[1:] == ["finish", t[t.index("--trainer.default_root_dir") + 1]]
                                    for t, f in zip(trains, finishes))  # fmt: skip
    tasks = [(t[t.index("--config") + 1], t[t.index("--trainer.default_root_dir") + 1]) for t in trains]
    assert tasks == [
        ("configs/toy/tripod.yaml", "runs/toy/tripod/seed0"),
        ("configs/toy/tripod.yaml", "runs/toy/tripod/seed1"),
        ("configs/toy/ae.yaml", "runs/toy/ae/seed0"),
    ]
    assert all(t[0] == "srun" and "--seed_everything=" + r[-1] in t and "--trainer.max_steps=7" in t
               for t, (_, r) in zip(trains, tasks))  # fmt: skip
