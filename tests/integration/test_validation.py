"""Bad options end before any work: one line on stderr naming the option, exit status 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ..helpers import cli_fit, quickstart_config


def _fails(capsys, cfg: Path, root: Path, *extra: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli_fit(cfg, root, 2, *extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("tripod-train: error: "), err
    assert not root.exists(), sorted(root.rglob("*"))  # no empty version_0, no checkpoints folder
    return err.removeprefix("tripod-train: error: ")


@pytest.mark.parametrize(
    "option, message",
    [
        ("--model.n_z=0", "model.n_z must be a positive number of latents, got 0"),
        ("--model.n_z=-3", "model.n_z must be a positive number of latents, got -3"),
        ("--model.image_size=60", "model.image_size 60 cannot be taken by the networks: it must be a positive "
         "multiple of 16 (one 2x per stage of model.encoder_widths / model.decoder_widths)"),
    ],
)  # fmt: skip
def test_bad_model_options(tmp_path, tiny_h5, capsys, option, message):
    cfg = quickstart_config(tmp_path, tiny_h5, every=100)
    assert _fails(capsys, cfg, tmp_path / "run", option) == message


def test_image_size_that_does_not_match_the_data(tmp_path, tiny_h5, capsys):
    cfg = quickstart_config(tmp_path, tiny_h5, every=100)
    err = _fails(capsys, cfg, tmp_path / "run", "--model.image_size=32")
    assert err == f"model.image_size is 32, but the images of {tiny_h5} are 64 x 64 (set --model.image_size 64)"


def test_negative_leg_weight(tmp_path, tiny_h5, capsys):
    cfg = quickstart_config(tmp_path, tiny_h5, every=100)
    doc = yaml.safe_load(cfg.read_text())
    doc["model"]["regularizers"][1]["init_args"]["weight"] = -0.01
    cfg.write_text(yaml.safe_dump(doc))
    err = _fails(capsys, cfg, tmp_path / "run")
    assert err == "model.regularizers[1] (NHP): the weight of term 'nhp' is -0.01; weights must be >= 0"


def test_generate_if_missing_does_not_write_procedural_scenes_under_a_benchmark_name(tmp_path, tiny_h5, capsys):
    """The quickstart config with a mistyped ``--data.path``: an error naming the file, nothing generated."""
    cfg = quickstart_config(tmp_path, tiny_h5, every=100)
    data = tmp_path / "data" / "shapes3d.h5"
    err = _fails(capsys, cfg, tmp_path / "run", f"--data.path={data}", "--data.generate_if_missing=true")
    assert err.startswith(f"{data}: no such file; generate_if_missing writes the procedural dataset only")
    assert not data.parent.exists()
