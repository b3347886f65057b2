"""Running a sweep's jobs: here, several at a time, or on a SLURM cluster as one job array.

- :func:`run_local` runs the pending jobs ``parallel`` at a time on this machine, each as ``tripod-train fit``
  (the same Python) followed by :func:`finish_run`, with ``OMP_NUM_THREADS`` splitting the cores between them;
  each job's output goes to ``<run dir>/sweep.log``.
- :func:`submit_slurm` writes the pending jobs to ``<root>/<name>.jobs`` (one line per job, tab-separated:
  run folder, config, options) and submits ``examples/slurm/train.sbatch`` once as a job array over them; each
  array task reads its own line (``JOBS_FILE``), trains, and with ``EVALUATE=1`` finishes its run the same way.
- :func:`record_result` copies a finished run's ``metrics.json`` to the sweep's ``record`` folder, if it has one
  (local runs do it as each job ends, ``tripod-sweep collect`` for runs finished elsewhere).
- :func:`finish_run` evaluates the run's selected checkpoint (``best-infom.ckpt``, the best InfoM above the
  PSNR threshold; ``last.ckpt`` when no evaluation qualified) into ``<run dir>/metrics.json`` and ``.md``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tripod_pl.io import atomic_write_text
from tripod_pl.sweep.spec import RESULT, Job, SweepError, SweepSpec

__all__ = [
    "SweepInterrupted",
    "finish_run",
    "jobs_file_lines",
    "record_result",
    "run_local",
    "selected_checkpoint",
    "submit_slurm",
]

TRIPOD_TRAIN = [sys.executable, "-m", "tripod_pl"]


def selected_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """``best-infom.ckpt`` if the run kept one, else ``last.ckpt``, else ``None``."""
    folder = Path(run_dir) / "checkpoints"
    for name in ("best-infom.ckpt", "last.ckpt"):
        if (folder / name).is_file():
            return folder / name
    return None


def finish_run(run_dir: str | os.PathLike[str], device: str | None = None, log=None) -> int:
    """Evaluates the run's selected checkpoint into ``<run_dir>/metrics.json``; returns the exit status."""
    ckpt = selected_checkpoint(run_dir)
    if ckpt is None:
        print(f"{run_dir}: no checkpoint to evaluate", file=log or sys.stderr)
        return 1
    cmd = [*TRIPOD_TRAIN, "evaluate", "--ckpt_path", str(ckpt), "--out_dir", str(run_dir)]
    if device:
        cmd += ["--device", device]
    return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT if log else None).returncode


def record_result(job: Job) -> bool:
    """Copies the run folder's ``metrics.json`` to the job's record (atomically); whether there was one to copy."""
    produced = job.run_dir / RESULT
    if job.record_path is None or not produced.is_file():
        return False
    atomic_write_text(job.record_path, produced.read_text())
    return True


def _evaluate_and_record(job: Job, device: str | None, log) -> int:
    """:func:`finish_run` for the job's run folder, then its record when that succeeded; the exit status."""
    code = finish_run(job.run_dir, device=device, log=log)
    if code == 0:
        record_result(job)
    return code


def reevaluate(spec: SweepSpec, device: str | None = None, echo=print) -> list[Job]:
    """Evaluates every finished job's selected checkpoint again, refreshing its ``metrics.json`` and record (after
    the evaluation gained a metric, say); jobs whose checkpoints are gone are left as they are. Returns the
    jobs whose evaluation failed."""
    failed = []
    for job in spec.jobs():
        if not job.done:
            continue
        if selected_checkpoint(job.run_dir) is None:
            echo(f"{job.name}: kept as recorded (no checkpoint in {job.run_dir})")
            continue
        with open(job.run_dir / "sweep.log", "a") as log:
            code = _evaluate_and_record(job, device, log)
        if code != 0:
            failed.append(job)
        echo(f"{job.name}: " + ("evaluated again" if code == 0 else f"FAILED (see {job.run_dir / 'sweep.log'})"))
    return failed


def _run_job(job: Job, threads: int, device: str | None) -> tuple[Job, int]:
    job.run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    with open(job.run_dir / "sweep.log", "a") as log:
        cmd = [*TRIPOD_TRAIN, *job.fit_args()]
        print("$ " + shlex.join(cmd), file=log, flush=True)
        code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if code == 0:
            code = _evaluate_and_record(job, device, log)
    return job, code


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during :func:`run_local`: no job was started after it; ``not_started`` jobs remain."""

    def __init__(self, not_started: int) -> None:
        super().__init__(not_started)
        self.not_started = not_started


def run_local(spec: SweepSpec, parallel: int = 1, device: str | None = None, echo=print) -> list[Job]:
    """Runs the sweep's pending jobs, ``parallel`` at a time; returns the jobs that failed.

    On Ctrl-C it starts no further job and waits for the running ones, which got the same signal from the terminal
    and save their ``last.ckpt`` (a second Ctrl-C stops waiting); then it raises :class:`SweepInterrupted`.
    Running the sweep again resumes it.
    """
    pending = [job for job in spec.jobs() if not job.done]
    done = len(spec.jobs()) - len(pending)
    echo(f"{spec.name}: {len(pending)} jobs to run, {done} already done")
    threads = max(1, (os.cpu_count() or 1) // max(1, parallel))
    failed = []
    pool = ThreadPoolExecutor(max_workers=max(1, parallel))
    futures = []
    try:
        for job in pending:
            futures.append(pool.submit(_run_job, job, threads, device))
        for future in futures:
            job, code = future.result()
            status = "done" if code == 0 else f"FAILED (exit {code}, see {job.run_dir / 'sweep.log'})"
            echo(f"{job.name}: {status}")
            if code != 0:
                failed.append(job)
    except BaseException as err:  # Ctrl-C, or a job that could not even start (its folder, its log)
        # the queued jobs no worker has taken, and those not yet queued
        not_started = sum(future.cancel() for future in futures) + len(pending) - len(futures)
        try:
            pool.shutdown(wait=True)  # the running jobs end (on Ctrl-C they got the signal too)
        except KeyboardInterrupt:
            pass  # Ctrl-C again: stop waiting
        if isinstance(err, KeyboardInterrupt):
            raise SweepInterrupted(not_started) from None
        raise
    pool.shutdown(wait=True)
    return failed


def jobs_file_lines(jobs: Sequence[Job]) -> list[str]:
    """One line per job for the SLURM array: run folder, config and options, tab-separated."""
    lines = []
    for job in jobs:
        fields = [str(job.run_dir), job.config, *job.fit_args()[3:]]
        fields = [f for f in fields if not f.startswith("--trainer.default_root_dir=")]  # the script sets it
        if any("\t" in f or "\n" in f for f in fields):
            raise SweepError(job.config, "options may not contain tabs or newlines")
        lines.append("\t".join(fields))
    return lines


def submit_slurm(
    spec: SweepSpec,
    script: str | os.PathLike[str] = "examples/slurm/train.sbatch",
    sbatch_args: Sequence[str] = (),
    max_running: int | None = None,
    echo=print,
) -> list[str] | None:
    """Submits the pending jobs as one SLURM job array through ``script``; returns the sbatch command run
    (``None`` when nothing is pending)."""
    pending = [job for job in spec.jobs() if not job.done]
    if not pending:
        echo(f"{spec.name}: every job is done")
        return None
    if not Path(script).is_file():
        raise SweepError(script, "no such sbatch script (pass --script)")
    spec.root.mkdir(parents=True, exist_ok=True)
    jobs_file = (spec.root / f"{spec.name}.jobs").resolve()
    jobs_file.write_text("\n".join(jobs_file_lines(pending)) + "\n")
    array = f"0-{len(pending) - 1}" + (f"%{max_running}" if max_running else "")
    cmd = [
        "sbatch",
        f"--array={array}",
        f"--job-name={spec.name}",
        f"--export=ALL,JOBS_FILE={jobs_file},EVALUATE=1",
        *sbatch_args,
        str(script),
    ]
    echo(f"{spec.name}: submitting {len(pending)} jobs ({jobs_file})\n$ {shlex.join(cmd)}")
    subprocess.run(cmd, check=True)
    return cmd
