"""examples/slurm/train.sbatch: valid bash, SLURM directives for requeue on preemption, and the srun it runs."""

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
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    argv = shlex.split(out)
    assert argv[:3] == ["srun", "tripod-train", "fit"]
    opts = dict(zip(argv[3::2], argv[4::2]))
    assert opts["--config"] == "configs/mpi3d/tripod.yaml"
    assert opts["--trainer.default_root_dir"] == "runs/slurm/tripod-4242"  # same id after a requeue
    assert opts["--trainer.strategy"] == "ddp"
    assert opts["--trainer.num_nodes"] == "2" and opts["--trainer.devices"] == "4"
    assert opts["--trainer.max_steps"] == "10"
