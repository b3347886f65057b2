"""The ``tripod-train`` entry point: answers the top-level ``--help`` and a mistyped subcommand without Lightning.

Importing Lightning takes seconds; the full LightningCLI (every subcommand's options, configs) needs it, the
list of subcommands does not. ``tripod-train``, ``tripod-train --help`` and ``tripod-train fitt`` are answered
here; anything else goes to :func:`tripod_pl.cli.lightning_cli.main`. ``SUBCOMMANDS`` is checked against the
LightningCLI's by the tests.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["SUBCOMMANDS", "main", "quick_answer"]

PROG = "tripod-train"

#: the LightningCLI's subcommands and their one-line descriptions
SUBCOMMANDS: dict[str, str] = {
    "fit": "Runs the full optimization routine.",
    "validate": "Perform one evaluation epoch over the validation set.",
    "test": "Perform one evaluation epoch over the test set.",
    "predict": "Run inference on your data.",
    "evaluate": "Compute InfoMEC, DCI and PSNR of a checkpoint on its evaluation subset; write them as JSON + Markdown",
    "traverse": "Animate a checkpoint's latent traversals: one looping GIF per active latent and one of all of them",
}

USAGE = f"usage: {PROG} [-h] [-c CONFIG] [--print_config[=flags]] {{{','.join(SUBCOMMANDS)}}} ..."


def _help() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [
        USAGE,
        "",
        "Train and evaluate tripod_pl models: a LightningCLI over TripodModule and HDF5DataModule.",
        "",
        "options:",
        "  -h, --help            Show this help message and exit.",
        "  -c CONFIG, --config CONFIG",
        "                        Path to a configuration file in json or yaml format.",
        "  --print_config[=flags]",
        "                        Print the configuration after applying all other arguments and exit.",
        "",
        f"subcommands ({PROG} SUBCOMMAND --help lists its options):",
        *(f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items()),
        "",
        f"example: {PROG} fit --config configs/quickstart.yaml --trainer.max_steps 100",
    ]
    return "\n".join(lines) + "\n"


def quick_answer(argv: Sequence[str]) -> int | None:
    """The exit status of a command line answered without Lightning (printing the answer), or None."""
    if not argv:
        sys.stderr.write(f"{USAGE}\n{PROG}: error: a subcommand is required: {', '.join(SUBCOMMANDS)}\n")
        return 2
    first = argv[0]
    if first in ("-h", "--help"):
        sys.stdout.write(_help())
        return 0
    if not first.startswith("-") and first not in SUBCOMMANDS:
        sys.stderr.write(
            f"{USAGE}\n{PROG}: error: invalid subcommand {first!r} (choose from {', '.join(SUBCOMMANDS)})\n"
        )
        return 2
    return None


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point of ``tripod-train`` (and ``python -m tripod_pl``)."""
    status = quick_answer(sys.argv[1:] if args is None else list(args))
    if status is not None:
        raise SystemExit(status)
    from tripod_pl.cli.lightning_cli import main as lightning_main

    lightning_main(args)
