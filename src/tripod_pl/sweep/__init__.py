"""Sweeps of configs x seeds: run here or on SLURM, resume, and collect the results (``tripod-sweep``)."""

from tripod_pl.sweep.collect import collect, write_results
from tripod_pl.sweep.runner import finish_run, reevaluate, run_local, submit_slurm
from tripod_pl.sweep.spec import Job, SweepError, SweepSpec, load_sweep

__all__ = [
    "Job",
    "SweepError",
    "SweepSpec",
    "collect",
    "finish_run",
    "load_sweep",
    "reevaluate",
    "run_local",
    "submit_slurm",
    "write_results",
]
