"""tripod_pl's dependencies on a machine with no package index (a cluster node, an air-gapped GPU box).

Many such machines hold a CUDA build of torch and most of the scientific stack, but not all of this package's
requirements (a CUDA image often lacks ``jsonargparse`` and ``omegaconf``, which ``tripod-train`` needs). Three
steps, the first where pip can reach an index, the others on the offline machine::

    python scripts/wheelhouse.py missing                      # offline: the requirements this python lacks
    python scripts/wheelhouse.py download --python 3.12 --only jsonargparse omegaconf   # online: into wheelhouse/
    python scripts/wheelhouse.py install --target /tmp/site   # offline: the wheels of what is missing, no index
    export PYTHONPATH=/tmp/site:$PWD/src

``download`` fetches binary wheels of the requirements (every one but torch, and the build backend; or those
named by ``--only``) and of their own requirements, for CPython ``--python`` on x86-64 Linux (manylinux); pip
fetches torch as lightning's requirement, and the wheels of torch, triton and nvidia-* are then removed.
``install`` installs, without dependencies, each wheel of the folder whose distribution this python does not
have; ``--target`` keeps it out of the system's site-packages. The requirements are read from ``pyproject.toml``
(``[project] dependencies``, extras such as ``jsonargparse[signatures]`` included); only the standard library
and pip are needed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ModuleNotFoundError:  # the copy pip carries
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the TOML reader pip carries
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def requirements(pyproject: Path, build: bool = False) -> list[Requirement]:
    """``[project] dependencies`` of ``pyproject``; with ``build``, ``[build-system] requires`` after them."""
    with open(pyproject, "rb") as f:
        toml = tomllib.load(f)
    listed = toml["project"]["dependencies"] + (toml.get("build-system", {}).get("requires", []) if build else [])
    return [Requirement(r) for r in listed]


def unmet(requirement: Requirement, seen: set[str] | None = None) -> list[str]:
    """Why this python does not satisfy ``requirement`` (with its extras' requirements), one line each."""
    seen = set() if seen is None else seen
    key = str(requirement)
    if key in seen or (requirement.marker and not requirement.marker.evaluate()):
        return []
    seen.add(key)
    try:
        dist = metadata.distribution(requirement.name)
    except metadata.PackageNotFoundError:
        return [f"{requirement}: not installed"]
    if not requirement.specifier.contains(dist.version, prereleases=True):
        return [f"{requirement}: {dist.version} installed"]
    out = []
    for extra in sorted(requirement.extras):
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker and sub.marker.evaluate({"extra": extra}) and not sub.marker.evaluate({"extra": ""}):
                sub.marker = None
                out += unmet(sub, seen)
    return out


def missing(pyproject: Path) -> list[str]:
    """Every requirement of ``pyproject`` this python does not satisfy."""
    seen: set[str] = set()
    return [line for r in requirements(pyproject) for line in unmet(r, seen)]


def download_command(pyproject: Path, dest: Path, python: str, only: list[str] | None) -> list[str]:
    """The ``pip download`` that fetches the wheels for CPython ``python`` (``"3.12"``) on x86-64 Linux: of the
    requirements named in ``only``, or of all but torch and of the build backend (``pip install -e .`` offline)."""
    reqs = [r for r in requirements(pyproject, build=not only) if canonicalize_name(r.name) != "torch"]
    if only:
        wanted = {canonicalize_name(n) for n in only}
        unknown = wanted - {canonicalize_name(r.name) for r in reqs}
        if unknown:
            raise SystemExit(f"{pyproject}: no requirement named {', '.join(sorted(unknown))} (torch is never fetched)")
        reqs = [r for r in reqs if canonicalize_name(r.name) in wanted]
    platforms = [arg for p in MANYLINUX for arg in ("--platform", p)]
    return [
        sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--implementation", "cp",
        "--python-version", python, *platforms, "--dest", str(dest), *map(str, reqs),
    ]  # fmt: skip


def drop_torch(folder: Path) -> None:
    """Removes torch's wheels (torch, triton, nvidia-*) from ``folder``: pip fetches torch as lightning's
    requirement, but the machine's own torch build (CUDA or CPU) is the one to use."""
    for wheel in sorted(folder.glob("*.whl")):
        name = wheel_name(wheel)
        if name in ("torch", "triton") or name.startswith("nvidia-"):
            wheel.unlink()
            print(f"removed {wheel.name} (install the torch build of your choice on the machine)")


def wheel_name(wheel: Path) -> str:
    """The canonical distribution name of a ``.whl`` file (``PyYAML-6.0-...whl`` -> ``pyyaml``)."""
    return canonicalize_name(wheel.name.split("-", 1)[0])


def installable(folder: Path) -> list[Path]:
    """The wheels of ``folder`` whose distribution this python does not have."""
    out = []
    for wheel in sorted(folder.glob("*.whl")):
        try:
            metadata.distribution(wheel_name(wheel))
        except metadata.PackageNotFoundError:
            out.append(wheel)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("missing", help="print the requirements this python does not satisfy, one per line")
    down = sub.add_parser("download", help="fetch the wheels (needs a package index)")
    down.add_argument("--dest", type=Path, default=ROOT / "wheelhouse")
    down.add_argument("--python", default=f"{sys.version_info.major}.{sys.version_info.minor}")
    down.add_argument("--only", nargs="+", metavar="NAME", help="these requirements only (default: all but torch)")
    down.add_argument("--dry-run", action="store_true", help="print the pip command instead of running it")
    inst = sub.add_parser("install", help="install the folder's wheels of what this python lacks (no index)")
    inst.add_argument("--wheels", type=Path, default=ROOT / "wheelhouse")
    inst.add_argument("--target", type=Path, required=True, help="the folder to install into (add it to PYTHONPATH)")
    args = parser.parse_args(argv)

    if args.command == "missing":
        for line in missing(args.pyproject):
            print(line)
        return 0
    if args.command == "download":
        command = download_command(args.pyproject, args.dest, args.python, args.only)
        if args.dry_run:
            print(" ".join(command))
            return 0
        rc = subprocess.call(command)
        if rc == 0 and not args.only:
            drop_torch(args.dest)
        return rc
    if not args.wheels.is_dir():
        print(f"{args.wheels}: no such folder (make it with: python scripts/wheelhouse.py download)", file=sys.stderr)
        return 1
    wheels = installable(args.wheels)
    if not wheels:
        print(f"{args.wheels}: nothing to install, this python has every distribution there")
        return 0
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    rc = subprocess.call([*command, "--upgrade", "--target", str(args.target), *map(str, wheels)])
    if rc == 0:
        print(f"installed {', '.join(w.name for w in wheels)} into {args.target}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
