"""``tripod-data``: write, convert and inspect dataset files.

::

    tripod-data generate toy.h5 [--factor-sizes 2 2 2 2 2 2 2 | --factor-sizes shape=3 scale=2] [--seed 0] [--force]
    tripod-data convert {shapes3d,mpi3d,falcor3d,isaac3d,dsprites,smallnorb,cars3d} SRC OUT.h5
                        [--factor-sizes N1 N2 ...] [--workers N] [--force]
    tripod-data info FILE.h5
    tripod-data download NAME DIR [--convert] [--out OUT.h5] [--quiet] [--force]

A problem with the input (missing or malformed file, wrong layout, out-of-range sources, missing or
unreadable images) is one line on stderr, ``tripod-data: error: ...``, and exit status 2; no traceback.
``generate``, ``convert`` and ``download --convert`` do not replace an existing output file unless given
``--force`` (checked before any work, so a long conversion never ends in a refusal).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tripod_pl.data.layout import DatasetError, read_info
from tripod_pl.data.prepare.converters import PUBLISHED, convert
from tripod_pl.data.prepare.download import NAMES, convert_downloaded, download
from tripod_pl.data.prepare.procedural import DEFAULT_FACTORS, generate_procedural

PROG = "tripod-data"


class UsageError(Exception):
    """A command-line argument that parses but makes no sense."""


def _procedural_sizes(tokens: list[str] | None) -> dict[str, int] | None:
    """``N1 N2 ...`` (every factor, in order) or ``name=N ...`` (any factors) to a size dict."""
    if not tokens:
        return None
    names = list(DEFAULT_FACTORS)
    try:
        if all("=" in t for t in tokens):
            return {name: int(n) for name, n in (t.split("=", 1) for t in tokens)}
        if any("=" in t for t in tokens):
            raise UsageError("--factor-sizes takes either N1 N2 ... or name=N ..., not both")
        sizes = [int(t) for t in tokens]
    except ValueError:
        raise UsageError(f"--factor-sizes expects integers, got {' '.join(tokens)}") from None
    if len(sizes) != len(names):
        raise UsageError(f"--factor-sizes needs {len(names)} sizes ({' '.join(names)}), got {len(sizes)}")
    return dict(zip(names, sizes))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Write, convert and inspect tripod_pl dataset files.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write the procedural dataset")
    gen.add_argument("out", help="output HDF5 file")
    gen.add_argument(
        "--factor-sizes",
        nargs="+",
        metavar="SIZE",
        help=f"sizes of {' '.join(DEFAULT_FACTORS)} (all, in order), or name=N for some",
    )
    gen.add_argument("--seed", type=int, default=0, help="rotates the object hues (default 0)")
    gen.add_argument("--force", action="store_true", help="replace the output file if it exists")

    conv = sub.add_parser(
        "convert",
        help="convert a published dataset",
        description="Convert a published dataset to the training layout (docs/data.md). Grayscale datasets "
        "(dsprites, smallnorb) get their channel replicated to RGB: the layout and the networks have 3 channels.",
    )
    conv.add_argument("dataset", choices=list(PUBLISHED))
    conv.add_argument(
        "src",
        help="the published file (shapes3d, mpi3d, dsprites; cars3d: nips2015-analogy-data.tar.gz) or folder "
        "(falcor3d, isaac3d; smallnorb: the six .mat or .mat.gz files; cars3d: its cars folder)",
    )
    conv.add_argument("out", help="output HDF5 file")
    conv.add_argument("--factor-sizes", nargs="+", type=int, metavar="N", help="replace the documented factor sizes")
    conv.add_argument("--workers", type=int, default=1, help="processes decoding PNGs (default 1)")
    conv.add_argument("--quiet", action="store_true", help="no progress bar")
    conv.add_argument("--force", action="store_true", help="replace the output file if it exists")

    info = sub.add_parser("info", help="check a dataset file and print its layout")
    info.add_argument("file")

    dl = sub.add_parser("download", help="download a published dataset, checksum-verified, resumable")
    dl.add_argument("name", choices=list(NAMES))
    dl.add_argument("dir", help="folder for the published files")
    dl.add_argument("--convert", action="store_true", help="then convert them (to DIR/NAME.h5 unless --out)")
    dl.add_argument("--out", help="output HDF5 file of --convert")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.add_argument("--force", action="store_true", help="with --convert: replace the output file if it exists")
    return parser


def _refuse_to_replace(out: str | os.PathLike[str], force: bool) -> None:
    if os.path.lexists(out) and not force:
        raise UsageError(f"{out} exists; pass --force to replace it")


def _run(args: argparse.Namespace) -> None:
    if args.command == "generate":
        sizes = _procedural_sizes(args.factor_sizes)
        _refuse_to_replace(args.out, args.force)
        try:
            info = generate_procedural(args.out, sizes, seed=args.seed)
        except ValueError as e:
            raise UsageError(str(e)) from None
        print(info.describe())
    elif args.command == "convert":
        _refuse_to_replace(args.out, args.force)
        info = convert(
            args.dataset, args.src, args.out, args.factor_sizes, workers=args.workers, progress=not args.quiet
        )
        print(info.describe())
    elif args.command == "download":
        if args.convert:
            _refuse_to_replace(args.out or os.path.join(args.dir, f"{args.name}.h5"), args.force)
        for fetched in download(args.name, args.dir, progress=not args.quiet):
            print(fetched.describe(), file=sys.stdout if fetched.verified else sys.stderr)
        if args.convert:
            print(convert_downloaded(args.name, args.dir, args.out, progress=not args.quiet).describe())
    else:
        print(read_info(args.file).describe())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tripod-data``; returns 0, or exits with status 2 on bad input (130 if interrupted)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _run(args)
    except (DatasetError, UsageError) as e:
        parser.exit(2, f"{PROG}: error: {e}\n")
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        parser.exit(2, f"{PROG}: error: {where}{e.strerror or e}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{PROG}: interrupted; no output file was written\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
