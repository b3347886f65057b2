"""Sweep files: jobs as configs x seeds in their own run folders, resume flags, one-line errors."""

from __future__ import annotations

import pytest

from tripod_pl.sweep import SweepError, load_sweep


def _configs(tmp_path, *names):
    for name in names:
        path = tmp_path / "configs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("model: {}\n")


def _sweep(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_jobs_are_configs_times_seeds_each_in_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _configs(tmp_path, "toy/tripod.yaml", "toy/ae.yaml", "other/qlae.yaml")
    spec = load_sweep(_sweep(tmp_path, "name: s\nroot: runs/s\nconfigs: [configs/toy/*.yaml, configs/other/qlae.yaml]\n"
                                       "seeds: [0, 2, 0]\noverrides: ['--trainer.max_steps=5']\n"))  # fmt: skip
    names = [job.name for job in spec.jobs()]
    assert names == ["toy/ae/seed0", "toy/ae/seed2", "toy/tripod/seed0", "toy/tripod/seed2",
                     "other/qlae/seed0", "other/qlae/seed2"]  # fmt: skip
    job = spec.jobs()[3]
    assert str(job.run_dir) == "runs/s/toy/tripod/seed2" and not job.done
    assert job.fit_args() == [
        "fit", "--config", "configs/toy/tripod.yaml", "--seed_everything=2",
        "--trainer.default_root_dir=runs/s/toy/tripod/seed2", "--trainer.max_steps=5",
    ]  # fmt: skip


def test_an_interrupted_job_resumes_and_a_finished_one_is_done(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _configs(tmp_path, "toy/tripod.yaml")
    job = load_sweep(_sweep(tmp_path, "name: s\nroot: r\nconfigs: [configs/toy/tripod.yaml]\nseeds: [1]\n")).jobs()[0]
    (job.run_dir / "checkpoints").mkdir(parents=True)
    (job.run_dir / "checkpoints" / "last.ckpt").write_text("")
    assert job.fit_args()[-1] == "--ckpt_path=last" and not job.done
    job.result_path.write_text("{}")
    assert job.done


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: s\nroot: r\nseeds: [0]\n", "configs is missing"),
        ("name: s\nroot: r\nconfigs: [configs/nope/*.yaml]\nseeds: [0]\n", "matches no file"),
        ("name: s\nroot: r\nconfigs: [configs/toy/missing.yaml]\nseeds: [0]\n", "does not exist"),
        ("name: s\nroot: r\nconfigs: [configs/toy/tripod.yaml]\nseeds: 3\n", "seeds must be"),
        ("name: s\nroot: r\nconfigs: [configs/toy/tripod.yaml]\nseeds: [0.5]\n", "seeds must be"),
        ("name: s\nroot: r\nconfigs: [configs/toy/tripod.yaml]\nseeds: [0]\noverrides: [max_steps=3]\n", "overrides"),
        ("name: s\nroot: r\nconfigs: [configs/toy/tripod.yaml]\nseeds: [0]\nseed: [1]\n", "unknown keys ['seed']"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_sweep_files_are_one_line_naming_the_file(tmp_path, monkeypatch, text, problem):
    monkeypatch.chdir(tmp_path)
    _configs(tmp_path, "toy/tripod.yaml")
    path = _sweep(tmp_path, text)
    with pytest.raises(SweepError, match="sweep.yaml: ") as err:
        load_sweep(path)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_the_papers_grid_is_one_sweep_file(monkeypatch):
    from ..helpers import ROOT

    monkeypatch.chdir(ROOT)
    jobs = load_sweep(ROOT / "sweeps" / "paper.yaml").jobs()
    assert len(jobs) == 4 * 8 * 3
    assert {j.dataset for j in jobs} == {"shapes3d", "mpi3d", "falcor3d", "isaac3d"}
    assert {j.method for j in jobs} == {
        "tripod", "tripod_no_klm", "tripod_no_nhp", "tripod_finer", "tripod_naive", "qlae", "betatcvae", "ae"
    }  # fmt: skip


def test_the_gpu_procedural_sweep_is_the_cpu_sweeps_grid_on_the_gpu_configs(monkeypatch):
    from ..helpers import ROOT

    monkeypatch.chdir(ROOT)
    cpu = load_sweep(ROOT / "sweeps" / "procedural.yaml").jobs()
    gpu = load_sweep(ROOT / "sweeps" / "procedural_gpu.yaml").jobs()
    assert {(j.method, j.seed) for j in gpu} == {(j.method, j.seed) for j in cpu} and len(gpu) == 8 * 3
    assert {j.dataset for j in gpu} == {"procedural_gpu"}
    assert {j.record_path.parent.parent for j in gpu}.isdisjoint({j.record_path.parent.parent for j in cpu})
    assert [j.method for j in gpu[:12]] == [m for m in ("tripod", "qlae", "betatcvae", "ae") for _ in range(3)]


def test_the_rehearsal_runs_two_of_the_gpu_sweeps_configs_briefly_and_records_nothing_it_keeps(monkeypatch):
    from ..helpers import ROOT

    monkeypatch.chdir(ROOT)
    gpu = load_sweep(ROOT / "sweeps" / "procedural_gpu.yaml").jobs()
    rehearsal = load_sweep(ROOT / "sweeps" / "procedural_gpu_rehearsal.yaml").jobs()
    assert [(j.method, j.seed) for j in rehearsal] == [("tripod", 0), ("ae", 0)]
    assert {j.config for j in rehearsal} <= {j.config for j in gpu}
    assert all("--trainer.max_steps=40" in j.overrides for j in rehearsal)
    assert all((ROOT / j.record_path).resolve().is_relative_to(ROOT / "runs") for j in rehearsal)  # git-ignored
