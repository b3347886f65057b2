"""The README's commands, as written, work on what the quickstart config writes (run from a fresh folder)."""

from __future__ import annotations

import json
import re
import shlex

import yaml

from tripod_pl import load_model
from tripod_pl.cli import main

from ..helpers import ROOT, TINY

README = (ROOT / "README.md").read_text()


def readme_checkpoints() -> list[str]:
    """Every checkpoint path the README names under the quickstart's run folder."""
    return sorted(set(re.findall(r"runs/quickstart/[\w/.-]+\.ckpt", README)))


def readme_evaluate_command() -> list[str]:
    line = next(ln for ln in README.splitlines() if ln.startswith("tripod-train evaluate "))
    return shlex.split(line)[1:]


def quickstart_in(folder, tiny_h5) -> str:
    """configs/quickstart.yaml with its run folder and callbacks as they are, made tiny and quick: 2 steps,
    evaluated and validated at step 2, and any PSNR good enough for best-infom.ckpt."""
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["trainer"].update(max_steps=2, val_check_interval=2, limit_val_batches=1, enable_progress_bar=False)
    for callback in cfg["trainer"]["callbacks"]:
        if callback["class_path"].endswith("BestInfoMCheckpoint"):
            callback["init_args"]["psnr_threshold"] = -1000.0
        if callback["class_path"].endswith("EvaluationCallback"):
            callback["init_args"].update(every_n_steps=2, traversal_steps=2, num_traversal_samples=1)
    cfg["model"].update(TINY)
    cfg["data"].update(path=tiny_h5, num_workers=0, batch_size=16, eval_size=60)
    path = folder / "quickstart.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_the_readmes_checkpoints_and_evaluate_command_work_after_the_quickstart(tmp_path, tiny_h5, monkeypatch):
    assert readme_checkpoints(), "the README names no quickstart checkpoint"
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", quickstart_in(tmp_path, tiny_h5)])
    for ckpt in readme_checkpoints():
        assert (tmp_path / ckpt).is_file(), (
            f"README names {ckpt}; the quickstart wrote {sorted(tmp_path.rglob('*.ckpt'))}"
        )
    assert load_model("runs/quickstart/checkpoints/last.ckpt").model.n_z == 14  # the README's Python line

    args = readme_evaluate_command()
    main(args + ["--device", "cpu", "--dci", "false"])
    ckpt = tmp_path / args[args.index("--ckpt_path") + 1]
    report = json.loads(ckpt.with_name(f"{ckpt.stem}.metrics.json").read_text())
    assert report["global_step"] == 2 and report["num_samples"] == 60
    assert f"`{ckpt.stem}.metrics.json`" in README  # the README names the report the command writes


def test_the_notebook_opens_the_checkpoint_the_readme_names():
    notebook = (ROOT / "notebooks" / "explore_checkpoint.ipynb").read_text()
    default = re.search(r'TRIPOD_CKPT\\", \\"([^\\]+)\\"', notebook).group(1)
    assert default in readme_checkpoints()
