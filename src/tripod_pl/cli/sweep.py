"""``tripod-sweep``: run a sweep of configs x seeds here or on SLURM, and collect its results.

::

    tripod-sweep plan    sweeps/procedural.yaml               # the jobs, and which are done
    tripod-sweep run     sweeps/procedural.yaml --parallel 2  # pending jobs, 2 at a time, on this machine
    tripod-sweep submit  sweeps/procedural.yaml -- --gpus-per-node=1 --ntasks-per-node=1   # one SLURM job array
    tripod-sweep collect sweeps/procedural.yaml --out results # results/<name>.json, .md, .png
    tripod-sweep finish  RUN_DIR                              # evaluate a finished run (what each job ends with)
    tripod-sweep evaluate sweeps/procedural.yaml              # evaluate every finished run again, refresh records

Every command is idempotent: finished jobs (``metrics.json`` in their run folder) are skipped and interrupted
ones resume from their ``last.ckpt``. The sweep file is described in :mod:`tripod_pl.sweep.spec`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tripod-sweep", description="Run and collect sweeps of configs x seeds.")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="list the jobs and which are done")
    plan.add_argument("sweep", help="the sweep YAML file")
    run = sub.add_parser("run", help="run the pending jobs on this machine")
    run.add_argument("sweep")
    run.add_argument("--parallel", type=int, default=1, help="jobs at a time (default 1)")
    run.add_argument("--device", default=None, help="device of the final evaluations (default: cuda if available)")
    run.add_argument("--collect", default=None, metavar="DIR", help="collect the results into DIR afterwards")
    submit = sub.add_parser("submit", help="submit the pending jobs to SLURM as one job array")
    submit.add_argument("sweep")
    submit.add_argument("--script", default="examples/slurm/train.sbatch", help="the sbatch script of a job")
    submit.add_argument("--max-running", type=int, default=None, help="array tasks running at once")
    submit.epilog = "Options after -- go to sbatch (e.g. -- --gpus-per-node=1 --time=24:00:00)."
    collect = sub.add_parser("collect", help="write the results table (JSON, Markdown, figure)")
    collect.add_argument("sweep")
    collect.add_argument("--out", default="results", help="folder of <name>.json, .md, .png (default results)")
    again = sub.add_parser("evaluate", help="evaluate every finished run's checkpoint again and refresh its record")
    again.add_argument("sweep")
    again.add_argument("--device", default=None)
    finish = sub.add_parser("finish", help="evaluate a run's selected checkpoint into its metrics.json")
    finish.add_argument("run_dir")
    finish.add_argument("--device", default=None)
    return parser


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point; user mistakes end with one line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if args is None else args)
    sbatch_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    opts = _parser().parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    from tripod_pl.sweep import SweepError, finish_run, load_sweep, reevaluate, run_local, submit_slurm, write_results

    try:
        if opts.command == "finish":
            raise SystemExit(finish_run(opts.run_dir, device=opts.device))
        spec = load_sweep(opts.sweep)
        if opts.command == "plan":
            for job in spec.jobs():
                print(f"{'done   ' if job.done else 'pending'} {job.name}  {job.run_dir}")
        elif opts.command == "run":
            failed = run_local(spec, parallel=opts.parallel, device=opts.device)
            if opts.collect:
                for path in write_results(spec, opts.collect):
                    print(f"wrote {path}")
            if failed:
                raise SystemExit(1)
        elif opts.command == "evaluate":
            if reevaluate(spec, device=opts.device):
                raise SystemExit(1)
        elif opts.command == "submit":
            submit_slurm(spec, script=opts.script, sbatch_args=sbatch_args, max_running=opts.max_running)
        elif opts.command == "collect":
            paths = write_results(spec, opts.out)
            print("\n".join(f"wrote {p}" for p in paths) or f"{spec.name}: no finished run to collect")
    except SweepError as err:
        print(f"tripod-sweep: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as interrupt:
        left = getattr(interrupt, "not_started", None)  # run's SweepInterrupted says how many
        left = "" if left is None else f"; {left} jobs not started"
        print(f"tripod-sweep: interrupted{left}; the same command resumes the sweep", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":  # pragma: no cover
    main()
