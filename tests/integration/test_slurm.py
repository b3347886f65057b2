"""examples/slurm/train.sbatch: valid bash, SLURM directives for requeue on preemption, the srun it runs, the
config checked up front, and the environment it takes tripod-train from."""

from __future__ import annotations

import os
import shlex
import subprocess

from ..helpers import ROOT

SCRIPT = ROOT / "examples" / "slurm" / "train.sbatch"


def test_sbatch_script_is_valid_bash_with_requeue_directives():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    for directive in ("#SBATCH --signal=SIGUSR1@120", "#SBATCH --requeue"):
        assert directive in text


def test_dry_run_renders_the_srun_command_with_a_stable_run_directory():
    env = {**os.environ, "DRY_RUN": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "tripod", "SLURM_JOB_NUM_NODES": "2",
           "SLURM_NTASKS_PER_NODE": "4"}  # fmt: skip
    out = subprocess.run(
        ["bash", str(SCRIPT), "configs/mpi3d/tripod.yaml", "--trainer.max_steps", "10"],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    argv = shlex.split(out)
    assert argv[0] == "srun" and argv[1].endswith("tripod-train") and argv[2] == "fit"
    opts = dict(zip(argv[3::2], argv[4::2]))
    assert opts["--config"] == "configs/mpi3d/tripod.yaml"
    assert opts["--trainer.default_root_dir"] == "runs/slurm/tripod-4242"  # same id after a requeue
    assert opts["--trainer.strategy"] == "ddp"
    assert opts["--trainer.num_nodes"] == "2" and opts["--trainer.devices"] == "4"
    assert opts["--trainer.max_steps"] == "10"


def _dry_run(tmp_path, config: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), config],
        env={**os.environ, "DRY_RUN": "1", **env}, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip


def test_a_missing_config_is_an_error_before_srun(tmp_path):
    done = _dry_run(tmp_path, "configs/mpi3d/tripodd.yaml")
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr == f"train.sbatch: error: config configs/mpi3d/tripodd.yaml does not exist (relative to {ROOT})\n"
    )


def test_tripod_train_comes_from_the_project_environment(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    train = venv / "bin" / "tripod-train"
    train.write_text("#!/bin/sh\n")
    train.chmod(0o755)
    done = _dry_run(tmp_path, "configs/mpi3d/tripod.yaml", TRIPOD_VENV=str(venv))
    assert shlex.split(done.stdout)[:3] == ["srun", str(train), "fit"], done.stderr
    # no such environment and none on PATH: one line saying where it looked
    done = _dry_run(tmp_path, "configs/mpi3d/tripod.yaml", TRIPOD_VENV=str(tmp_path / "none"), PATH="/usr/bin:/bin")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"train.sbatch: error: no tripod-train in {tmp_path / 'none'}/bin or on PATH")
