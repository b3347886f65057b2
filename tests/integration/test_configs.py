"""Every config in configs/ is current, parses, and trains a few steps of a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tripod_pl.cli import run
from tripod_pl.data.prepare.writer import write_dataset

from ..helpers import ROOT, TINY_CLI, load_script

CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
METHODS = ["tripod", "tripod_no_klm", "tripod_no_nhp", "tripod_finer", "tripod_naive", "qlae", "betatcvae", "ae"]
BASELINES = ["betavae", "dipvae1", "dipvae2", "infovae", "factorvae"]


def test_there_is_a_config_for_every_method_and_dataset():
    names = {str(p.relative_to(ROOT / "configs")) for p in CONFIGS}
    for dataset in ("shapes3d", "mpi3d", "falcor3d", "isaac3d", "procedural"):
        for method in METHODS + BASELINES:
            assert f"{dataset}/{method}.yaml" in names
    assert "quickstart.yaml" in names


def test_the_quickstart_is_procedural_tripod_cut_short():
    quick = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    tripod = yaml.safe_load((ROOT / "configs" / "procedural" / "tripod.yaml").read_text())
    assert quick["model"] == tripod["model"] and quick["data"] == tripod["data"]
    assert quick["trainer"]["max_steps"] < tripod["trainer"]["max_steps"]
    budget = {"max_steps", "val_check_interval", "default_root_dir", "callbacks"}
    assert {k: v for k, v in quick["trainer"].items() if k not in budget} == {
        k: v for k, v in tripod["trainer"].items() if k not in budget
    }


def test_configs_are_generated_from_the_tables():
    make_configs = load_script("scripts/make_configs.py")
    assert make_configs.main(check=True) == 0, "configs/ is stale: run python scripts/make_configs.py"


def test_dataset_configs_carry_the_tuned_weights():
    def regs(dataset, method):
        cfg = yaml.safe_load((ROOT / "configs" / dataset / f"{method}.yaml").read_text())
        return {r["class_path"].rsplit(".", 1)[1]: r["init_args"] for r in cfg["model"]["regularizers"]}, cfg

    tripod, _ = regs("mpi3d", "tripod")
    assert tripod == {"KLM": {"weight": 1e-8}, "NHP": {"weight": 1e-4, "method": "jvp", "diagnostics": True}}
    assert regs("falcor3d", "betatcvae")[0] == {"BetaTC": {"beta": 3.0}}
    assert regs("mpi3d", "qlae")[1]["model"]["weight_decay"] == 0.001
    assert regs("isaac3d", "tripod_no_klm")[0] == {"NHP": {"weight": 1e-8, "method": "jvp", "diagnostics": True}}


def test_nhp_takes_exact_second_derivatives_wherever_it_is_configured():
    # float32 differences are rounding noise once the latents' batch stds shrink (docs/legs.md); the naive Hessian
    # penalty's perturbation is not scaled by the stds, so it keeps the differences
    for config in CONFIGS:
        model = yaml.safe_load(config.read_text())["model"]
        for reg in model.get("regularizers", []):
            method = reg.get("init_args", {}).get("method", "finite_difference")
            if reg["class_path"].endswith(".NHP"):
                assert method == "jvp", config
            if reg["class_path"].endswith(".HessianPenalty") and "procedural" not in str(config):
                assert method == "finite_difference", config


def test_every_config_clips_gradients_element_wise_as_the_reference():
    # the reference's optax.clip(1.): each gradient element clamped to [-1, 1], not the global norm
    for config in CONFIGS:
        trainer = yaml.safe_load(config.read_text())["trainer"]
        assert trainer["gradient_clip_algorithm"] == "value", config
        assert trainer["gradient_clip_val"] == 1.0, config


def _evaluation_args(config: Path) -> dict:
    callbacks = yaml.safe_load(config.read_text())["trainer"]["callbacks"]
    return next(c["init_args"] for c in callbacks if c["class_path"].endswith("EvaluationCallback"))


def test_dataset_configs_log_the_references_diagnostics_and_the_cpu_configs_do_not():
    # the reference's evaluation: exact decoder Hessians at 100 samples, pairwise latent histograms; the
    # quickstart shows the same panels at a few Hessians, the procedural sweep's configs skip them
    for config in CONFIGS:
        args = _evaluation_args(config)
        if config.name == "quickstart.yaml":
            expected = (4, True)
        elif config.parent.name.startswith("procedural"):
            expected = (0, False)
        else:
            expected = (100, True)
        assert (args.get("hessian_samples", 0), args.get("pairwise_histograms", False)) == expected, config


def _without_hessians(config: Path, tmp_path: Path) -> Path:
    """The config with the evaluation's costly parts off: exact Hessians (100 samples take minutes on a CPU),
    DCI's forests and the figures (the evaluation itself is tested in tests/callbacks and tests/metrics)."""
    data = yaml.safe_load(config.read_text())
    for callback in data["trainer"]["callbacks"]:
        if callback["class_path"].endswith("EvaluationCallback"):
            callback["init_args"].update(hessian_samples=0, pairwise_histograms=False, dci=False, figures=False)
    out = tmp_path / config.name
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _name(config: Path) -> str:
    return str(config.relative_to(ROOT / "configs"))


#: trained for two steps: every method once with the paper's networks and evaluation schedule (shapes3d), once
#: with the CPU sizes and warm-ups (procedural), the quickstart, and the GPU profile's cosine decay once
TRAINED = [
    c
    for c in CONFIGS
    if c.parent.name in ("shapes3d", "procedural") or _name(c) in ("quickstart.yaml", "procedural_gpu/tripod.yaml")
]
#: built only (options parsed, model, data and Trainer built and checked): the same classes and options as a
#: trained sibling, with other values (test_other_datasets_configs_differ_from_shapes3d_only_in_values and the
#: GPU profile's test below)
BUILT = [c for c in CONFIGS if c not in TRAINED]


def _tiny_args(config: Path, tiny_h5: str, tmp_path: Path) -> list[str]:
    return [
        f"--config={_without_hessians(config, tmp_path)}",
        f"--data.path={tiny_h5}",
        "--data.batch_size=16",
        "--data.num_workers=0",
        "--data.eval_size=100",
        f"--trainer.default_root_dir={tmp_path}",
        *TINY_CLI,
    ]


@pytest.mark.parametrize("config", TRAINED, ids=_name)
def test_configs_train_a_few_steps(config, tiny_h5, tmp_path):
    cli = run(
        [
            "fit",
            *_tiny_args(config, tiny_h5, tmp_path),
            "--trainer.max_steps=2",
            "--trainer.val_check_interval=2",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert cli.trainer.global_step == 2
    assert cli.model.n_z == 2 * 7
    assert (Path(cli.trainer.log_dir) / "config.yaml").exists()
    assert "val/loss" in cli.trainer.callback_metrics


@pytest.mark.parametrize("config", BUILT, ids=_name)
def test_the_other_configs_build(config, tiny_h5, tmp_path):
    cli = run(_tiny_args(config, tiny_h5, tmp_path), build_only=True)
    data = yaml.safe_load(config.read_text())
    assert cli.model.n_z == 2 * 7
    assert cli.trainer.max_steps == data["trainer"]["max_steps"]
    regularizers = [r["class_path"].rsplit(".", 1)[1] for r in data["model"].get("regularizers", [])]
    assert [type(leg).__name__ for leg in cli.model.model.regularizers] == regularizers
    assert not any(tmp_path.glob("lightning_logs")), "building wrote a run folder"


def _shape(node):
    """A config with its values blanked: the keys, the classes and the lengths of lists."""
    if isinstance(node, dict):
        return {k: (v if k == "class_path" else _shape(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return None


def test_other_datasets_configs_differ_from_shapes3d_only_in_values():
    for config in CONFIGS:
        if config.parent.name in ("mpi3d", "falcor3d", "isaac3d"):
            sibling = ROOT / "configs" / "shapes3d" / config.name
            assert _shape(yaml.safe_load(config.read_text())) == _shape(yaml.safe_load(sibling.read_text())), config
    # every config that is only built has a trained sibling of the same shape
    others = {c for c in CONFIGS if c.parent.name in ("mpi3d", "falcor3d", "isaac3d", "procedural_gpu")}
    assert set(BUILT) == others - {ROOT / "configs" / "procedural_gpu" / "tripod.yaml"}


def test_the_gpu_procedural_configs_change_only_the_steps_and_the_learning_rate_schedule():
    cpu_dir, gpu_dir = ROOT / "configs" / "procedural", ROOT / "configs" / "procedural_gpu"
    assert sorted(p.name for p in gpu_dir.glob("*.yaml")) == sorted(p.name for p in cpu_dir.glob("*.yaml"))
    budget = {"max_steps", "val_check_interval", "default_root_dir", "callbacks"}
    for path in sorted(cpu_dir.glob("*.yaml")):
        cpu, gpu = (yaml.safe_load(p.read_text()) for p in (path, gpu_dir / path.name))
        assert {k: v for k, v in gpu["model"].items() if k != "lr_schedule"} == cpu["model"], path.name
        # the same networks, legs, weights, warm-up and peak learning rate; decayed over more steps
        assert gpu["model"]["lr_schedule"] == "cosine" and "lr_schedule" not in cpu["model"]
        assert gpu["trainer"]["max_steps"] > cpu["trainer"]["max_steps"]
        assert gpu["data"] == cpu["data"]
        assert {k: v for k, v in gpu["trainer"].items() if k not in budget} == {
            k: v for k, v in cpu["trainer"].items() if k not in budget
        }
        assert [c["class_path"] for c in gpu["trainer"]["callbacks"]] == [
            c["class_path"] for c in cpu["trainer"]["callbacks"]
        ]


def test_a_benchmark_config_trains_a_file_of_another_layout(tmp_path):
    # the README's dSprites line: the number of latents follows the data file (5 sources: 10 latents)
    names, sizes = ["shape", "scale", "orientation", "position_x", "position_y"], [2, 2, 2, 2, 2]
    path = tmp_path / "dsprites.h5"
    images = np.random.default_rng(0).integers(0, 256, size=(32, 64, 64, 3), dtype=np.uint8)
    write_dataset(path, images, np.stack(np.unravel_index(np.arange(32), sizes), axis=1), names, sizes)
    config = ROOT / "configs" / "shapes3d" / "tripod.yaml"
    args = _tiny_args(config, str(path), tmp_path) + ["--data.eval_size=16"]
    cli = run(args, build_only=True)
    assert cli.model.n_z == 10 and cli.model.model.regularizers[0].weight == 1e-4
