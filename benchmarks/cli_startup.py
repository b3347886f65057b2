"""How long the command-line tools take to answer ``--help`` and an argument error (a new process each time).

Help and argument errors should answer in about a second: they import no heavy module (Lightning, torch) until a
subcommand needs it. ``tripod-train fit --help`` lists every option of the LightningCLI, which needs Lightning;
it is timed for reference, as is a bare interpreter (``python -c pass``).

    python benchmarks/cli_startup.py                          # -> benchmarks/results/cli_startup.json
    python benchmarks/cli_startup.py --src OLD/src --label before   # another checkout's sources (PYTHONPATH)

Each command runs ``--repeats`` times (after one untimed run, which warms the file cache); the median and the
best wall time are recorded with the load average, since the machine may be shared. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

#: (what a user types, the equivalent command run here, its expected exit status)
COMMANDS: list[tuple[str, list[str], int]] = [
    ("python -c pass", ["-c", "pass"], 0),
    ("tripod-data --help", ["-m", "tripod_pl.data.prepare.cli", "--help"], 0),
    ("tripod-data generate (missing argument)", ["-m", "tripod_pl.data.prepare.cli", "generate"], 2),
    ("python -m tripod_pl --help", ["-m", "tripod_pl", "--help"], 0),
    ("tripod-train --help", ["-c", "from tripod_pl.cli import main; main()", "--help"], 0),
    ("tripod-train fitt (invalid subcommand)", ["-m", "tripod_pl", "fitt"], 2),
    ("tripod-train fit --help (all options, Lightning)", ["-m", "tripod_pl", "fit", "--help"], 0),
]


def time_command(args: list[str], status: int, repeats: int, env: dict[str, str]) -> list[float]:
    """Wall times of ``python args...`` (after one untimed run); checks its exit status."""
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != status:
            raise SystemExit(f"{args}: exit status {done.returncode}, expected {status}\n{done.stderr[-2000:]}")
        if i:
            times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--src", help="run another checkout's sources (prepended to PYTHONPATH)")
    parser.add_argument("--label", default="", help="suffix of the result file: cli_startup_<label>.json")
    args = parser.parse_args()
    env = {**os.environ}
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(args.src).resolve()), env.get("PYTHONPATH")]))
    load_before = os.getloadavg()
    rows = []
    for label, command, status in COMMANDS:
        times = time_command(command, status, args.repeats, env)
        rows.append({"command": label, "median_s": statistics.median(times), "best_s": min(times), "times_s": times})
    result = {
        "label": args.label or "current",
        "src": args.src or "this checkout",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "repeats": args.repeats,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (f"cli_startup_{args.label}.json" if args.label else "cli_startup.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| command ({result['label']}) | median s | best s |\n|---|---:|---:|")
    for row in rows:
        print(f"| `{row['command']}` | {row['median_s']:.2f} | {row['best_s']:.2f} |")
    print(f"\nload average {load_before[0]:.1f} -> {result['load_average_after'][0]:.1f}; saved {out}")


if __name__ == "__main__":
    main()
