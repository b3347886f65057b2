"""A leg with its own optimizer group (FactorVAE's discriminator) and weight schedules through the real CLI:
the discriminator trains with its own Adam hyper-parameters, its optimizer state is checkpointed, and 2n steps in
one go equal n steps + ``fit --ckpt_path last`` to 2n (the scheduled weights included)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from tripod_pl.legs.schedules import Cyclic, LinearWarmup
from tripod_pl.module import load_model

from ..helpers import cli_fit, quickstart_config

KL_WARMUP = {"class_path": "tripod_pl.legs.schedules.LinearWarmup", "init_args": {"steps": 5}}
TC_CYCLES = {"class_path": "Cyclic", "init_args": {"period": 3, "ratio": 0.5}}


def factorvae_config(tmp_path: Path, data: str, every: int) -> Path:
    cfg = quickstart_config(tmp_path, data, every=every)
    doc = yaml.safe_load(cfg.read_text())
    doc["model"].update(
        bottleneck={"class_path": "tripod_pl.legs.GaussianBottleneck"},
        regularizers=[
            {"class_path": "tripod_pl.legs.KL", "init_args": {"beta": 2.0}},
            {"class_path": "tripod_pl.legs.FactorTC", "init_args": {"gamma": 30.0, "hidden": 16, "layers": 3}},
        ],
        weight_schedules={"kl": KL_WARMUP, "tc": TC_CYCLES},
    )
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def logged(root: Path, key: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for path in sorted(root.glob("lightning_logs/version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get(key):
                    out[int(row["step"])] = float(row[key])
    return out


def test_factorvae_with_schedules_resumes_exactly(tmp_path, tiny_h5):
    n = 4
    cfg = factorvae_config(tmp_path, tiny_h5, every=n)
    full, part = tmp_path / "full", tmp_path / "part"

    cli = cli_fit(cfg, full, 2 * n)
    module = cli.model
    # the discriminator is its own optimizer group with the paper's Adam settings, and it trained
    group = next(g for g in cli.trainer.optimizers[0].param_groups if g["name"] == "factor_tc_discriminator")
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"]) == (1e-4, (0.5, 0.9), 0.0)
    disc = {id(p) for p in module.model.regularizers[1].discriminator.parameters()}
    assert {id(p) for p in group["params"]} == disc
    assert all(id(p) not in disc for g in cli.trainer.optimizers[0].param_groups[:2] for p in g["params"])

    cli_fit(cfg, part, n)
    last = part / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    saved = ckpt["optimizer_states"][0]
    assert [g["name"] for g in saved["param_groups"]] == ["decay", "no_decay", "factor_tc_discriminator"]
    disc_state = [saved["state"][i] for i in saved["param_groups"][2]["params"]]
    assert disc_state and all(int(s["step"]) == n and s["exp_avg"].abs().sum() > 0 for s in disc_state)
    assert ckpt["hyper_parameters"]["weight_schedules"]["kl"]["class_path"].endswith("LinearWarmup")
    restored = load_model(str(last))  # rebuilt from the checkpoint's plain-data hyper-parameters
    assert restored.model.scheduled_weights(3) == pytest.approx({"kl": 2.0 * 3 / 5, "tc": 0.0})
    weights = restored.model.regularizers[1].discriminator.state_dict()
    for name, value in weights.items():
        torch.testing.assert_close(value, ckpt["state_dict"][f"model.regularizers.1.discriminator.{name}"])
    cli = cli_fit(cfg, part, 2 * n, "--ckpt_path=last")
    assert cli.trainer.global_step == 2 * n

    for key in ("train/loss", "train/discriminator", "train/tc", "weights/kl", "weights/tc"):
        a, b = logged(full, key), logged(part, key)
        assert sorted(a) == sorted(b) == list(range(2 * n)), (key, a, b)
        got = torch.tensor([b[s] for s in range(2 * n)], dtype=torch.float64)
        want = torch.tensor([a[s] for s in range(2 * n)], dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=0, msg=key)
    assert len(set(logged(full, "train/loss").values())) > 1
    # the logged weights are the legs' weights times the schedules at each global step
    kl, tc = logged(full, "weights/kl"), logged(full, "weights/tc")
    warmup, cycles = LinearWarmup(steps=5), Cyclic(period=3, ratio=0.5)
    steps = range(2 * n)  # logged as float32
    torch.testing.assert_close(torch.tensor([kl[s] for s in steps]), torch.tensor([2.0 * warmup(s) for s in steps]))
    torch.testing.assert_close(torch.tensor([tc[s] for s in steps]), torch.tensor([30.0 * cycles(s) for s in steps]))
    assert kl[0] == 0.0 and kl[5] == 2.0 and tc[0] == 0.0 and tc[1] == 20.0 and tc[3] == 0.0


@pytest.mark.slow  # a two-process gloo run through the console script: ~30-60 s on the shared 2-core machine
def test_two_process_ddp_trains_the_discriminator_group_and_the_batch_statistic_legs(tmp_path, tiny_h5):
    """Under DDP the discriminator's parameters get gradients on every rank from the one backward pass (DDP
    would stop on parameters without one), the global batch statistics of DIP-VAE and MMD gather across ranks,
    and the checkpoint holds the discriminator's optimizer state."""
    import os
    import shutil
    import subprocess
    import sys

    cfg = factorvae_config(tmp_path, tiny_h5, every=2)
    doc = yaml.safe_load(cfg.read_text())
    doc["model"]["regularizers"] += [
        {"class_path": "tripod_pl.legs.DIPVAE", "init_args": {"kind": "ii"}},
        {"class_path": "tripod_pl.legs.MMD", "init_args": {"weight": 100.0}},
    ]
    cfg.write_text(yaml.safe_dump(doc))
    exe = shutil.which("tripod-train", path=str(Path(sys.executable).parent))
    cmd = [exe, "fit", "--config", str(cfg), "--trainer.strategy=ddp", "--trainer.devices=2",
           "--trainer.accelerator=cpu", "--trainer.max_steps=4", f"--trainer.default_root_dir={tmp_path}",
           f"--trainer.logger.init_args.save_dir={tmp_path}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=540
    )
    assert done.returncode == 0, done.stdout[-4000:]
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    saved = ckpt["optimizer_states"][0]
    disc = saved["param_groups"][2]
    assert disc["name"] == "factor_tc_discriminator" and disc["lr"] == 1e-4
    assert all(int(saved["state"][i]["step"]) == 4 for i in disc["params"])
    header = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    for key in ("train/dip_offdiag", "train/mmd", "train/tc", "train/discriminator", "weights/kl"):
        assert key in header, header
