"""A sweep: configs x seeds, each job a ``tripod-train fit`` in its own run folder, described by a small YAML.

::

    name: procedural                     # names the collected table (results/<name>.json, .md, .png)
    root: runs/sweeps/procedural         # every job writes <root>/<dataset>/<method>/seed<k>/
    configs: [configs/procedural/*.yaml] # files or glob patterns, relative to the working directory
    seeds: [0, 1, 2]
    overrides: ["--trainer.max_steps=3000"]   # tripod-train options added to every job (optional)
    record: results/procedural/runs      # keep each finished run's metrics here, e.g. in git (optional)

A job's *dataset* is its config's folder name and its *method* the config's file stem, so
``configs/shapes3d/tripod.yaml`` with seed 1 runs in ``<root>/shapes3d/tripod/seed1``. A job is done when its
run folder holds ``metrics.json`` (the evaluation of its selected checkpoint), or, with ``record``, when its
copy ``<record>/<dataset>/<method>/seed<k>.json`` exists. That makes every sweep command idempotent: rerunning it
skips finished jobs and resumes interrupted ones from their ``last.ckpt``; and with ``record`` in a repository,
a sweep too long for one sitting is finished over several, from any clone.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Job", "SweepError", "SweepSpec", "load_sweep"]

RESULT = "metrics.json"


class SweepError(Exception):
    """A sweep file that cannot be used; the message is one line naming the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")


@dataclass(frozen=True)
class Job:
    """One training run of a sweep."""

    config: str
    seed: int
    run_dir: Path
    overrides: tuple[str, ...] = ()
    record_path: Path | None = None

    @property
    def dataset(self) -> str:
        return Path(self.config).parent.name

    @property
    def method(self) -> str:
        return Path(self.config).stem

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.method}/seed{self.seed}"

    @property
    def result_path(self) -> Path:
        """The evaluation of the run's selected checkpoint: its record when there is one, else in the run folder."""
        if self.record_path is not None and self.record_path.is_file():
            return self.record_path
        return self.run_dir / RESULT

    @property
    def done(self) -> bool:
        return self.result_path.is_file()

    def fit_args(self) -> list[str]:
        """``tripod-train`` arguments of the training run (resuming from ``last.ckpt`` when there is one)."""
        args = [
            "fit",
            "--config",
            self.config,
            f"--seed_everything={self.seed}",
            f"--trainer.default_root_dir={self.run_dir}",
            *self.overrides,
        ]
        if (self.run_dir / "checkpoints" / "last.ckpt").is_file():
            args.append("--ckpt_path=last")
        return args


@dataclass(frozen=True)
class SweepSpec:
    """The parsed sweep file."""

    path: Path
    name: str
    root: Path
    configs: tuple[str, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = field(default_factory=tuple)
    record: Path | None = None

    def jobs(self) -> list[Job]:
        """Every (config, seed) pair, configs in the file's order, seeds innermost."""
        jobs = []
        for config in self.configs:
            where = Path(Path(config).parent.name) / Path(config).stem
            for seed in self.seeds:
                record = None if self.record is None else self.record / where / f"seed{seed}.json"
                jobs.append(Job(config, seed, self.root / where / f"seed{seed}", self.overrides, record))
        return jobs


def _expand(patterns: list[Any], path: Path) -> tuple[str, ...]:
    configs: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(pattern))) if glob.has_magic(str(pattern)) else [str(pattern)]
        if not matches:
            raise SweepError(path, f"configs: {pattern!r} matches no file")
        for match in matches:
            if not Path(match).is_file():
                raise SweepError(path, f"configs: {match!r} does not exist")
            if match not in configs:
                configs.append(match)
    return tuple(configs)


def load_sweep(path: str | os.PathLike[str]) -> SweepSpec:
    """Reads and checks a sweep file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(path, "no such sweep file")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepError(path, f"not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(doc, dict):
        raise SweepError(path, "expected a mapping with name, root, configs, seeds")
    unknown = set(doc) - {"name", "root", "configs", "seeds", "overrides", "record"}
    if unknown:
        raise SweepError(path, f"unknown keys {sorted(unknown)} (known: name, root, configs, seeds, overrides, record)")
    for key in ("name", "root", "configs", "seeds"):
        if key not in doc:
            raise SweepError(path, f"{key} is missing")
    configs, seeds, overrides = doc["configs"], doc["seeds"], doc.get("overrides") or []
    if not isinstance(configs, list) or not configs:
        raise SweepError(path, "configs must be a non-empty list of files or glob patterns")
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise SweepError(path, "seeds must be a non-empty list of integers")
    if not isinstance(overrides, list) or not all(isinstance(o, str) and o.startswith("--") for o in overrides):
        raise SweepError(path, "overrides must be a list of tripod-train options such as '--trainer.max_steps=100'")
    return SweepSpec(
        path=path,
        name=str(doc["name"]),
        root=Path(str(doc["root"])),
        configs=_expand(configs, path),
        seeds=tuple(dict.fromkeys(int(s) for s in seeds)),
        overrides=tuple(overrides),
        record=None if doc.get("record") is None else Path(str(doc["record"])),
    )
