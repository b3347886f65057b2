"""The quickstart run (configs/quickstart.yaml, unchanged but for where it writes) shows the evaluation in
TensorBoard, and the evaluate command works on its checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tripod_pl.cli import main
from tripod_pl.cli.evaluate import evaluate_checkpoint

QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


@pytest.mark.slow
def test_quickstart_run_shows_the_evaluation_in_tensorboard(tmp_path):
    config = yaml.safe_load(QUICKSTART.read_text())
    by_class = {c["class_path"]: c.get("init_args", {}) for c in config["trainer"]["callbacks"]}
    for name in ("EvaluationCallback", "BestInfoMCheckpoint"):
        assert f"tripod_pl.callbacks.{name}" in by_class, f"quickstart.yaml lacks {name} (scripts/make_configs.py)"
    every = by_class["tripod_pl.callbacks.EvaluationCallback"]["every_n_steps"]
    main(["fit", "--config", str(QUICKSTART), f"--trainer.default_root_dir={tmp_path}",
          f"--data.path={tmp_path / 'procedural.h5'}"])  # fmt: skip

    run_dir = tmp_path / "lightning_logs" / "version_0"
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    last_step = config["trainer"]["max_steps"]
    steps = list(range(every, last_step + 1, every))
    steps += [] if steps[-1] == last_step else [last_step]  # evaluate_at_end: the final weights too
    for name in ("infom", "infoc", "infoe", "d", "c", "i", "num_active", "psnr"):
        assert [e.step for e in events.Scalars(f"eval/{name}")] == steps, name
    for name in ("eval/nmi", "eval/reconstructions", "eval/traversals", "eval/latent_histograms"):
        assert [e.step for e in events.Images(name)] == steps, name
    assert "eval/latents/z0" in tags["histograms"]

    last = tmp_path / "checkpoints" / "last.ckpt"
    metrics = evaluate_checkpoint(str(last))
    assert metrics["global_step"] == steps[-1] and metrics["num_samples"] == config["data"].get("eval_size", 10_000)
    logged = events.Scalars("eval/infom")[-1].value
    assert metrics["infom"] == pytest.approx(logged, abs=1e-4)  # same weights, same subset, same metric
    stored = json.loads((tmp_path / "checkpoints" / "last.metrics.json").read_text())
    assert stored["infom"] == metrics["infom"]
    assert (tmp_path / "checkpoints" / "last.metrics.md").read_text().startswith("# Evaluation of `last.ckpt`")
