"""Ctrl-C during ``tripod-sweep run`` (and a job that cannot start): no further job starts, the running one is
waited for, one line says so."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tripod_pl.cli.sweep import main
from tripod_pl.sweep import load_sweep, runner


@pytest.fixture
def three_jobs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for method in ("a", "b", "c"):
        (tmp_path / "configs" / "toy").mkdir(parents=True, exist_ok=True)
        (tmp_path / "configs" / "toy" / f"{method}.yaml").write_text("seed_everything: 0\n")
    (tmp_path / "sweep.yaml").write_text("name: toy\nroot: runs\nconfigs: [configs/toy/*.yaml]\nseeds: [0]\n")
    return tmp_path / "sweep.yaml"


def ctrl_c_during_the_first_job(monkeypatch) -> list[str]:
    """Replaces the training of a job with one that presses Ctrl-C (SIGINT to this process) and then, as a run
    that saves its checkpoint, takes a moment to finish; returns the names of the jobs started."""
    started = []

    def fake_job(job, threads, device):
        started.append(job.name)
        time.sleep(0.2)  # training
        os.kill(os.getpid(), signal.SIGINT)  # to the process, as from a terminal: the main thread takes it
        time.sleep(0.5)
        return job, 0

    monkeypatch.setattr(runner, "_run_job", fake_job)
    return started


def test_run_local_starts_no_job_after_ctrl_c_and_waits_for_the_running_one(three_jobs, monkeypatch):
    started = ctrl_c_during_the_first_job(monkeypatch)
    with pytest.raises(runner.SweepInterrupted) as err:
        runner.run_local(load_sweep(three_jobs), parallel=1, echo=lambda line: None)
    assert started == ["toy/a/seed0"] and err.value.not_started == 2


def test_the_command_ends_with_one_line_and_status_130(three_jobs, monkeypatch, capsys):
    ctrl_c_during_the_first_job(monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(three_jobs)])
    err = capsys.readouterr().err
    assert exit_.value.code == 130
    assert err == "tripod-sweep: interrupted; 2 jobs not started; the same command resumes the sweep\n"


def test_a_job_that_cannot_start_stops_the_sweep_without_starting_the_rest(three_jobs, monkeypatch):
    started = []

    def broken_job(job, threads, device):
        started.append(job.name)
        time.sleep(0.2)
        raise OSError(f"cannot write {job.run_dir}")

    monkeypatch.setattr(runner, "_run_job", broken_job)
    with pytest.raises(OSError, match="cannot write runs"):
        runner.run_local(load_sweep(three_jobs), parallel=1, echo=lambda line: None)
    time.sleep(0.7)  # long enough for a pool left running to start the third job
    # the worker may take the next job as the first fails; none after it starts
    assert started[0] == "toy/a/seed0" and "toy/c/seed0" not in started
