"""Collecting a sweep: per-run rows, mean ± std over seeds, captured sources, the files written."""

from __future__ import annotations

import json

import numpy as np

from tripod_pl.sweep import load_sweep, write_results
from tripod_pl.sweep.collect import collect, markdown_table

SOURCES = ["shape", "scale"]


def _finished(job, infom, nmi, active, psnr=30.0, accuracy=None):
    job.run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "checkpoint": str(job.run_dir / "checkpoints" / "best-infom.ckpt"), "global_step": 100,
        "infom": infom, "infoc": 0.5, "infoe": 0.9, "d": 0.4, "c": 0.3, "i": 0.8, "psnr": psnr,
        "nmi": nmi, "active": active, "source_names": SOURCES,
    }  # fmt: skip
    if accuracy is not None:  # evaluations since DCI's per-source accuracies were recorded
        metrics.update(informativeness=accuracy, informativeness_chance=[0.25, 0.34])
    job.result_path.write_text(json.dumps(metrics))


def _spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for method in ("tripod", "ae"):
        (tmp_path / "configs" / "toy").mkdir(parents=True, exist_ok=True)
        (tmp_path / "configs" / "toy" / f"{method}.yaml").write_text("{}\n")
    (tmp_path / "sweep.yaml").write_text("name: toy\nroot: runs\nconfigs: [configs/toy/tripod.yaml, "
                                         "configs/toy/ae.yaml]\nseeds: [0, 1, 2]\n")  # fmt: skip
    return load_sweep(tmp_path / "sweep.yaml")


def test_rows_hold_best_active_nmi_per_source_and_captured_counts(tmp_path, monkeypatch):
    spec = _spec(tmp_path, monkeypatch)
    jobs = {job.name: job for job in spec.jobs()}
    # latent 1 explains scale best (0.9) but is inactive: scale's best active NMI is 0.3
    _finished(jobs["toy/tripod/seed0"], 0.9, [[0.8, 0.1], [0.3, 0.9]], [True, False])
    _finished(jobs["toy/tripod/seed1"], 0.7, [[0.6, 0.0], [0.1, 0.7]], [True, True])
    _finished(jobs["toy/ae/seed0"], 0.2, [[0.2, 0.1], [0.1, 0.2]], [True, True])
    rows = collect(spec)  # unfinished jobs are left out
    assert [(r["method"], r["seed"]) for r in rows] == [("tripod", 0), ("tripod", 1), ("ae", 0)]
    assert rows[0]["source_nmi"] == {"shape": 0.8, "scale": 0.3} and rows[0]["captured"] == 1
    assert rows[1]["captured"] == 2 and rows[2]["captured"] == 0

    table = markdown_table(rows)
    mean, std = np.mean([0.9, 0.7]), np.std([0.9, 0.7], ddof=1)
    assert f"| tripod | 2 | {mean:.2f} ± {std:.2f} |" in table
    assert "| ae | 1 | 0.20 |" in table  # one run: no spread
    assert "| tripod | 0.70 | 0.50 |" in table  # mean best NMI per source: (0.8+0.6)/2, (0.3+0.7)/2


def test_results_are_written_as_json_markdown_and_figure(tmp_path, monkeypatch):
    spec = _spec(tmp_path, monkeypatch)
    for job in spec.jobs():
        _finished(job, 0.5 + 0.1 * job.seed, [[0.8, 0.1], [0.1, 0.6]], [True, True])
    paths = write_results(spec, tmp_path / "results")
    assert [p.name for p in paths] == ["toy.json", "toy.md", "toy.png"]
    runs = json.loads(paths[0].read_text())
    assert len(runs) == 6 and {"method", "seed", "infom", "infoc", "infoe", "d", "c", "i", "psnr"} <= set(runs[0])
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["toy.json", "toy.md", "toy.png"]


def test_collect_records_runs_finished_elsewhere(tmp_path, monkeypatch):
    _spec(tmp_path, monkeypatch)
    (tmp_path / "sweep.yaml").write_text((tmp_path / "sweep.yaml").read_text() + "record: kept\n")
    spec = load_sweep(tmp_path / "sweep.yaml")
    job = spec.jobs()[0]
    _finished(job, 0.9, [[0.8, 0.1], [0.3, 0.9]], [True, True])  # e.g. by a SLURM task: only in its run folder
    assert str(job.record_path) == "kept/toy/tripod/seed0.json" and not job.record_path.exists()
    assert [r["infom"] for r in collect(spec)] == [0.9]
    assert job.record_path.read_text() == (job.run_dir / "metrics.json").read_text()


def test_accuracy_from_all_latents_is_averaged_over_the_runs_that_recorded_it(tmp_path, monkeypatch):
    spec = _spec(tmp_path, monkeypatch)
    jobs = {job.name: job for job in spec.jobs()}
    _finished(jobs["toy/tripod/seed0"], 0.9, [[0.8, 0.1], [0.1, 0.9]], [True, True], accuracy=[0.9, 0.5])
    _finished(jobs["toy/tripod/seed1"], 0.7, [[0.6, 0.0], [0.1, 0.7]], [True, True], accuracy=[0.7, 0.3])
    _finished(jobs["toy/tripod/seed2"], 0.8, [[0.6, 0.0], [0.1, 0.7]], [True, True])  # an older record
    _finished(jobs["toy/ae/seed0"], 0.2, [[0.2, 0.1], [0.1, 0.2]], [True, True])
    rows = collect(spec)
    assert rows[0]["source_accuracy"] == {"shape": 0.9, "scale": 0.5}
    assert rows[0]["source_chance"] == {"shape": 0.25, "scale": 0.34} and "source_accuracy" not in rows[2]
    table = markdown_table(rows)
    assert "| tripod | 2 | 0.80 | 0.40 |" in table  # (0.9+0.7)/2, (0.5+0.3)/2 over the two runs with it
    assert "| chance (most frequent value) | | 0.25 | 0.34 |" in table
    assert "| ae | " not in table.split("Accuracy of predicting")[1]  # no ae run recorded it
    assert "Accuracy of predicting" not in markdown_table(rows[2:])  # none did: no such table
