"""What a run records about its model: ``hparams.yaml`` holds the resolved ``n_z`` and the legs it trained."""

from __future__ import annotations

import yaml

from ..helpers import TINY, cli_fit, quickstart_config


def test_hparams_initial_hold_the_resolved_n_z_and_the_legs():
    from tripod_pl import TripodModule
    from tripod_pl.legs import FSQ, KLM

    module = TripodModule(FSQ(n_q=12), [KLM(weight=1e-4)], num_sources=7, **TINY)
    hp = module.hparams_initial  # what Lightning's loggers write to hparams.yaml
    assert hp["n_z"] == 14
    assert hp["bottleneck"] == {"class_path": "tripod_pl.legs.bottlenecks.FSQ", "init_args": {"n_q": 12}}
    assert [r["init_args"]["weight"] for r in hp["regularizers"]] == [1e-4]


def test_cli_run_writes_n_z_and_legs_to_hparams_yaml(tmp_path, tiny_h5):
    cfg = quickstart_config(tmp_path, tiny_h5, every=100)
    doc = yaml.safe_load(cfg.read_text())
    doc["trainer"]["logger"] = {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "."},
    }
    cfg.write_text(yaml.safe_dump(doc))
    cli_fit(cfg, tmp_path / "run", 1)
    hp = yaml.safe_load((tmp_path / "run" / "lightning_logs" / "version_0" / "hparams.yaml").read_text())
    assert hp["n_z"] == 14  # 2 x the 7 sources of the data file
    assert hp["bottleneck"]["class_path"].endswith("FSQ") and hp["bottleneck"]["init_args"]["n_q"] == 12
    assert [r["class_path"].rsplit(".", 1)[1] for r in hp["regularizers"]] == ["KLM", "NHP"]
    assert hp["regularizers"][1]["init_args"]["activations"] == ["cond"]
