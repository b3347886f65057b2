"""scripts/wheelhouse.py: which requirements a python lacks, the offline install of a wheel folder, and the
download command (its pip call is not run: no package index here)."""

from __future__ import annotations

import importlib
import sys
import zipfile
from pathlib import Path

import pytest

from ..helpers import load_script

wheelhouse = load_script("scripts/wheelhouse.py")


def _pyproject(tmp_path: Path, *deps: str) -> Path:
    path = tmp_path / "pyproject.toml"
    listed = ", ".join(f'"{d}"' for d in deps)
    path.write_text(
        f'[build-system]\nrequires = ["flit_core"]\n[project]\nname = "x"\nversion = "0"\ndependencies = [{listed}]\n'
    )
    return path


def _dist_info(folder: Path, name: str, version: str, *requires: str) -> None:
    """An installed-looking distribution (what importlib.metadata reads) on a folder put on sys.path."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        *(f"Requires-Dist: {r}" for r in requires),
    ]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def _wheel(folder: Path, name: str, version: str = "0.1") -> Path:
    """A minimal pure-Python wheel holding a module ``name`` with ``VALUE = 42``."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for p, text in {**files, f"{info}/RECORD": record}.items():
            z.writestr(p, text)
    return path


def test_missing_names_what_is_absent_or_too_old_and_nothing_that_is_met(tmp_path):
    version = importlib.metadata.version("pytest")
    pyproject = _pyproject(
        tmp_path, "pytest>=1", "pytest>=999", "surely-absent-dist-xyz>=1", "absent-on-win; sys_platform == 'nope'"
    )
    assert wheelhouse.missing(pyproject) == [
        f"pytest>=999: {version} installed",
        "surely-absent-dist-xyz>=1: not installed",
    ]


def test_missing_follows_the_extras_named(tmp_path, monkeypatch):
    _dist_info(tmp_path / "site", "fakepkg", "1.0", 'surely-absent-xyz>=2; extra == "fancy"', "pytest>=999")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    # the extra's requirement is checked; the package's own requirements are pip's business, not an extra's
    assert wheelhouse.missing(_pyproject(tmp_path, "fakepkg[fancy]>=1")) == ["surely-absent-xyz>=2: not installed"]
    assert wheelhouse.missing(_pyproject(tmp_path, "fakepkg>=1")) == []


def test_this_projects_requirements_are_met_in_its_own_environment():
    assert wheelhouse.missing(wheelhouse.ROOT / "pyproject.toml") == []


def test_install_puts_only_the_absent_distributions_into_the_target(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "tripod_fake_dep")
    _wheel(wheels, "pytest", "0.0.1")  # installed already: must not be installed (nor shadow the real one)
    target = tmp_path / "site"
    assert [w.name for w in wheelhouse.installable(wheels)] == ["tripod_fake_dep-0.1-py3-none-any.whl"]
    assert wheelhouse.main(["install", "--wheels", str(wheels), "--target", str(target)]) == 0
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("__")) == [
        "tripod_fake_dep-0.1.dist-info",
        "tripod_fake_dep.py",
    ]
    monkeypatch.syspath_prepend(str(target))
    assert importlib.import_module("tripod_fake_dep").VALUE == 42
    sys.modules.pop("tripod_fake_dep", None)


def test_install_without_the_folder_says_so_in_one_line(tmp_path, capsys):
    assert wheelhouse.main(["install", "--wheels", str(tmp_path / "none"), "--target", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path / "none") in err and "download" in err


def test_download_asks_pip_for_the_named_requirements_as_pinned_for_the_target_python(tmp_path, capsys):
    pyproject = _pyproject(tmp_path, "torch>=2.3", "jsonargparse[signatures]>=4.30", "omegaconf>=2.3", "h5py>=3")
    args = ["--pyproject", str(pyproject), "download", "--python", "3.12", "--dest", str(tmp_path / "w"), "--dry-run"]
    assert wheelhouse.main([*args, "--only", "jsonargparse", "OmegaConf"]) == 0
    command = capsys.readouterr().out.split()
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[-2:] == ["jsonargparse[signatures]>=4.30", "omegaconf>=2.3"]
    assert wheelhouse.main(args) == 0  # everything but torch, and the build backend for `pip install -e .`
    assert capsys.readouterr().out.split()[-4:] == [
        "jsonargparse[signatures]>=4.30",
        "omegaconf>=2.3",
        "h5py>=3",
        "flit_core",
    ]
    with pytest.raises(SystemExit, match="no requirement named torch"):
        wheelhouse.main([*args, "--only", "torch"])


def test_a_full_download_leaves_torch_to_the_machine(tmp_path, capsys):
    for name in ("torch-2.9.0-cp312-cp312-manylinux_2_28_x86_64", "triton-3.5.0-cp312-cp312-manylinux_2_28_x86_64",
                 "nvidia_cublas_cu12-12.8.4.1-py3-none-manylinux_2_27_x86_64", "torchmetrics-1.8.0-py3-none-any",
                 "lightning-2.5.0-py3-none-any"):  # fmt: skip
        (tmp_path / f"{name}.whl").touch()
    wheelhouse.drop_torch(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lightning-2.5.0-py3-none-any.whl",
        "torchmetrics-1.8.0-py3-none-any.whl",
    ]
    assert capsys.readouterr().out.count("removed") == 3
