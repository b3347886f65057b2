"""Exact resume through the real CLI: 2n steps in one go equal n steps + ``fit --ckpt_path last.ckpt`` to 2n.

The quickstart (Tripod: FSQ + KLM + NHP with its random perturbations) at tiny widths on the tiny procedural
file. Equality of the per-step training losses after the restart needs the weights, the optimizer state, the
data order position and the random-number-generator states to all come back.
"""

from __future__ import annotations

import csv
import signal
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from ..helpers import InterruptAt, cli_fit, quickstart_config


class BarTotals(L.Callback):
    """Records the progress bar's total after every training batch."""

    totals: list = []

    def on_train_batch_end(self, trainer, *args) -> None:
        BarTotals.totals.append(trainer.progress_bar_callback.train_progress_bar.total)


def losses(root: Path) -> dict[int, float]:
    """``step -> train/loss`` from every CSV log under ``root`` (a resumed run writes a second version)."""
    out: dict[int, float] = {}
    for path in sorted(root.glob("lightning_logs/version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    out[int(row["step"])] = float(row["train/loss"])
    return out


@pytest.mark.parametrize(
    "n, batch_size, schedule",
    [
        (4, 16, "constant"),
        pytest.param(4, 16, "cosine", id="cosine-lr"),  # the scheduler's position comes back too
        pytest.param(8, 64, "constant", id="across-epoch", marks=pytest.mark.slow),
    ],  # 432 * 0.95 images / 64 -> 6 batches an epoch
)
def test_resumed_run_continues_exactly(tmp_path, tiny_h5, n, batch_size, schedule):
    cfg = quickstart_config(tmp_path, tiny_h5, every=n, batch_size=batch_size)
    full, part = tmp_path / "full", tmp_path / "part"
    # a cosine decay over both parts, at a rate high enough that its steps show in the losses
    lr = (
        [f"--model.lr_schedule={schedule}", f"--model.lr_decay_steps={2 * n}", "--model.lr=0.01"]
        if schedule == "cosine"
        else []
    )

    cli = cli_fit(cfg, full, 2 * n, *lr)
    assert cli.trainer.global_step == 2 * n
    cli_fit(cfg, part, n, *lr)
    last = part / "checkpoints" / "last.ckpt"  # outside the logger's version folder: "last" finds it
    assert last.exists()
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == n  # portable RNG states
    cli = cli_fit(cfg, part, 2 * n, *lr, "--ckpt_path=last")
    assert cli.trainer.global_step == 2 * n

    a, b = losses(full), losses(part)
    assert sorted(a) == list(range(2 * n)), a
    assert sorted(b) == list(range(2 * n)), b
    steps = range(n, 2 * n)  # the logged steps n .. 2n-1 are training steps n+1 .. 2n
    got = torch.tensor([b[s] for s in steps], dtype=torch.float64)
    want = torch.tensor([a[s] for s in steps], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=0)
    # the steps before the restart agree too (same seed), and the losses vary (the comparison means something)
    torch.testing.assert_close(torch.tensor([b[s] for s in range(n)]), torch.tensor([a[s] for s in range(n)]))
    assert len(set(a.values())) > 1


@pytest.mark.slow  # two subprocess runs: ~30-60 s on the shared 2-core machine
def test_sigterm_saves_last_checkpoint_and_fit_resumes_from_it(tmp_path, tiny_h5):
    """``python -m tripod_pl fit`` SIGTERMed mid-run leaves a complete last.ckpt; ``--ckpt_path last`` resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = quickstart_config(tmp_path, tiny_h5, every=2)
    ckpts = tmp_path / "ckpts"
    doc = yaml.safe_load(cfg.read_text())
    doc["trainer"]["callbacks"][0]["init_args"].update(save_last=False, dirpath=str(ckpts))
    doc["trainer"]["logger"] = False
    cfg.write_text(yaml.safe_dump(doc))
    base = [sys.executable, "-m", "tripod_pl", "fit", "--config", str(cfg), f"--trainer.default_root_dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    proc = subprocess.Popen(
        [*base, "--trainer.max_steps=100000"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not list(ckpts.glob("*step=4.ckpt")):  # a few steps done
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no step checkpoint in time"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    last = ckpts / "last.ckpt"
    assert last.exists(), out
    assert not list(ckpts.glob(".*.tmp")), "temporary checkpoint left behind"
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 4 <= step < 1000, out

    before = {p.name: p.stat().st_mtime_ns for p in ckpts.glob("epoch=*-step=*.ckpt")}
    done = subprocess.run(
        [*base, f"--trainer.max_steps={step + 3}", "--ckpt_path=last"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"max_steps={step + 3}" in done.stdout, done.stdout[-3000:]
    # the resumed run started at ``step``: the step checkpoints up to it are untouched (a run from scratch would
    # rewrite them), the ones after it are new and hold their step
    after = {p.name: p.stat().st_mtime_ns for p in ckpts.glob("epoch=*-step=*.ckpt")}
    for name, mtime in before.items():
        assert after[name] == mtime, name
    new = sorted(int(p.split("step=")[1].split(".")[0]) for p in set(after) - set(before))
    assert new and new[0] > step and new[-1] <= step + 3, (step, new)
    final = next(ckpts.glob(f"epoch=*-step={new[-1]}.ckpt"))
    assert torch.load(final, map_location="cpu", weights_only=False)["global_step"] == new[-1]


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """Lightning 2.6's TorchCheckpointIO (used by ModelCheckpoint and trainer.save_checkpoint) writes through an
    fsspec transaction: a write that dies halfway leaves the previous file intact, never a truncated one."""
    from fsspec.implementations.local import LocalFileOpener
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    path = tmp_path / "last.ckpt"
    io = TorchCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.zeros(1000)}, path)
    real_write = LocalFileOpener.write

    def dies_halfway(self, data):
        real_write(self, bytes(data)[: len(data) // 2])
        raise OSError("killed while writing")

    monkeypatch.setattr(LocalFileOpener, "write", dies_halfway)
    with pytest.raises(OSError, match="killed"):
        io.save_checkpoint({"global_step": 2, "w": torch.ones(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_resume_after_ctrl_c_continues_the_same_run(tmp_path, tiny_h5):
    """Ctrl-C before any step checkpoint, then ``fit --ckpt_path last``: ``last.ckpt`` ends up holding the final
    state (not a stale one beside ``last-v1.ckpt``), Lightning knows the loader resumes, the progress bar keeps its
    total, and TensorBoard gets one run (one ``version_0`` folder)."""
    cfg = quickstart_config(tmp_path, tiny_h5, every=100)  # no step checkpoint: last.ckpt is the interrupt's
    doc = yaml.safe_load(cfg.read_text())
    doc["trainer"].update(
        enable_progress_bar=True,
        logger={"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "."}},
    )
    interrupt = {"class_path": f"{InterruptAt.__module__}.InterruptAt", "init_args": {"step": 3}}
    doc["trainer"]["callbacks"].append(interrupt)
    cfg.write_text(yaml.safe_dump(doc))
    root = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning ends the process after a graceful Ctrl-C
            cli_fit(cfg, root, 10)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C during its shutdown
    last = root / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3

    doc["trainer"]["callbacks"][-1] = {"class_path": f"{__name__}.BarTotals"}
    cfg.write_text(yaml.safe_dump(doc))
    BarTotals.totals = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = cli_fit(cfg, root, 6, "--ckpt_path=last")
    assert cli.trainer.global_step == 6
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "not resumable" in m or "exists and is not empty" in m], messages
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["last.ckpt"]
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6
    assert BarTotals.totals == [min(cli.trainer.num_training_batches, 6)] * 3  # as an uninterrupted run's
    versions = sorted(p.name for p in (root / "lightning_logs").iterdir())
    assert versions == ["version_0"]
    assert len(list((root / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))) == 2
