"""Configs with OmegaConf interpolation (``${model.n_z}``): resolved by ``fit``, ``evaluate`` and ``traverse``."""

from __future__ import annotations

import pytest
import yaml

from tripod_pl.callbacks import EvaluationCallback
from tripod_pl.cli import main, run

from ..helpers import TINY


def write(tmp_path, config: dict | str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return str(path)


def interpolating_config(tmp_path, data: str) -> str:
    """A tiny run whose values refer to one another: the evaluation and validation follow ``max_steps``, the
    conditioning width follows ``n_z``, the data's eval size is built from a string."""
    text = f"""
seed_everything: 0
trainer:
  max_steps: 2
  val_check_interval: ${{trainer.max_steps}}
  check_val_every_n_epoch: null
  limit_val_batches: 1
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {tmp_path}
  callbacks:
  - class_path: tripod_pl.callbacks.EvaluationCallback
    init_args: {{every_n_steps: "${{trainer.max_steps}}", dci: false, figures: false}}
model:
  bottleneck: {{class_path: tripod_pl.legs.FSQ, init_args: {{n_q: 12}}}}
  n_z: 5
  cond_dim: ${{model.n_z}}
  encoder_widths: {TINY["encoder_widths"]}
  decoder_widths: {TINY["decoder_widths"]}
data: {{path: {data}, batch_size: 16, num_workers: 0, eval_size: 100}}
"""
    return write(tmp_path, text)


def test_fit_resolves_interpolation_across_sections(tmp_path, tiny_h5):
    cli = run(["fit", "--config", interpolating_config(tmp_path, tiny_h5)])
    assert cli.model.hparams.n_z == 5 and cli.model.hparams.cond_dim == 5
    assert cli.trainer.val_check_interval == 2
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, EvaluationCallback)]
    assert callback.every_n_steps == 2 and callback.evaluated_steps == [2]


def test_interpolation_is_resolved_when_the_file_is_read(tmp_path, tiny_h5, capsys):
    path = interpolating_config(tmp_path, tiny_h5)
    with pytest.raises(SystemExit):
        main(["fit", "--config", path, "--model.n_z=7", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["n_z"] == 7 and printed["model"]["cond_dim"] == 5  # the override changes n_z only
    assert printed["trainer"]["callbacks"][0]["init_args"]["every_n_steps"] == 2


def test_a_missing_interpolation_key_is_one_line(tmp_path, tiny_h5, capsys):
    path = write(tmp_path, open(interpolating_config(tmp_path, tiny_h5)).read().replace("${model.n_z}", "${model.nz}"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", path, "--print_config"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "tripod-train: error: a config file's interpolation: Interpolation key 'model.nz' not found (in model.cond_dim)"
    )


@pytest.mark.parametrize(("command", "folder"), [("evaluate", "out_dir"), ("traverse", "out")])
def test_checkpoint_commands_resolve_interpolation_in_their_configs(tmp_path, capsys, command, folder):
    # the checkpoint path is built from the folder option: the error names the resolved path
    path = write(tmp_path, {folder: str(tmp_path / "run"), "ckpt_path": "${" + folder + "}/missing.ckpt"})
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--config", path])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err.strip() == f"tripod-train: error: {tmp_path}/run/missing.ckpt: no such checkpoint file"
    )
