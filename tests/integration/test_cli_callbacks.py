"""The callbacks through the real CLI: configured from YAML, their events in TensorBoard, the selected checkpoint
evaluated by the evaluate command."""

from __future__ import annotations

import json

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tripod_pl.cli import main
from tripod_pl.cli.evaluate import evaluate_checkpoint

from ..helpers import TINY


def callbacks(every: int, threshold: float, **eval_args) -> list[dict]:
    return [
        {"class_path": "tripod_pl.callbacks.EvaluationCallback", "init_args": {"every_n_steps": every, **eval_args}},
        {"class_path": "tripod_pl.callbacks.BestInfoMCheckpoint", "init_args": {"psnr_threshold": threshold}},
    ]


def test_cli_run_logs_evaluations_to_tensorboard_and_keeps_the_best_checkpoint(tmp_path, tiny_h5):
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": 4,
            "val_check_interval": 2,
            "check_val_every_n_epoch": None,
            "limit_val_batches": 1,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp_path),
            "callbacks": callbacks(2, 0.0, traversal_steps=3, num_traversal_samples=2),
        },
        "model": {
            "bottleneck": {"class_path": "tripod_pl.legs.FSQ", "init_args": {"n_q": 12}},
            "regularizers": [{"class_path": "tripod_pl.legs.KLM", "init_args": {"weight": 1e-4}}],
            **TINY,
        },
        "data": {"path": tiny_h5, "batch_size": 16, "num_workers": 0, "eval_size": 120},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])

    run_dir = tmp_path / "lightning_logs" / "version_0"
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for name in ("infom", "infoc", "infoe", "d", "c", "i", "num_active", "psnr"):
        assert [e.step for e in events.Scalars(f"eval/{name}")] == [2, 4], name
    assert {"eval/nmi", "eval/reconstructions", "eval/traversals", "eval/latent_histograms"} <= set(tags["images"])
    assert "eval/best_infom" in tags["scalars"]

    best = tmp_path / "checkpoints" / "best-infom.ckpt"
    assert best.exists()
    metrics = evaluate_checkpoint(str(best), device="cpu")
    stored = json.loads((tmp_path / "checkpoints" / "best-infom.metrics.json").read_text())
    assert stored["infom"] == metrics["infom"] and stored["num_samples"] == 120
    logged = {e.step: e.value for e in events.Scalars("eval/infom")}
    assert metrics["infom"] == pytest.approx(logged[metrics["global_step"]], abs=1e-6)
    assert max(logged.values()) == pytest.approx(events.Scalars("eval/best_infom")[-1].value)
