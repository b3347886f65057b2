"""Two-process CPU DDP (gloo) through the real console script: the quickstart config at tiny widths with the
EvaluationCallback and checkpointing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from ..helpers import quickstart_config

# in the default suite: the issue requires this to run in CI


def test_two_process_cpu_ddp_fit(tmp_path, tiny_h5):
    cfg = quickstart_config(tmp_path, tiny_h5, every=2)
    doc = yaml.safe_load(cfg.read_text())
    doc["trainer"]["callbacks"].append(
        {
            "class_path": "tripod_pl.callbacks.EvaluationCallback",
            "init_args": {"every_n_steps": 4, "traversal_steps": 3, "num_traversal_samples": 2},
        }
    )
    doc["data"]["eval_size"] = 120
    cfg.write_text(yaml.safe_dump(doc))
    exe = shutil.which("tripod-train", path=str(Path(sys.executable).parent))
    assert exe, "tripod-train console script not installed next to the interpreter"
    cmd = [
        exe,
        "fit",
        "--config",
        str(cfg),
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.accelerator=cpu",
        "--trainer.max_steps=4",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=540
    )
    assert done.returncode == 0, done.stdout[-4000:]
    ckpt_dir = tmp_path / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    assert last.exists(), sorted(p.name for p in tmp_path.rglob("*"))
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 4
    assert len(ckpt["rng_states_per_rank"]) == 2  # both ranks' generator states gathered
    assert (ckpt_dir / "epoch=0-step=2.ckpt").exists()
    metrics = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "eval/infom" in metrics.splitlines()[0], metrics.splitlines()[0]
