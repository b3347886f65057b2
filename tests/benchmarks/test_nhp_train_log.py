"""Tests of ``benchmarks/nhp_numerics.py --train-log`` at a tiny size: its record, the finite-difference check it
runs (agreement at large latent stds, breakdown at small ones), the split backward that isolates NHP's gradient,
and its one-line errors (speed is never asserted here)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from tripod_pl.legs import functional as LF
from tripod_pl.nets import Decoder

from ..helpers import ROOT, load_script

SCRIPT = ROOT / "benchmarks" / "nhp_numerics.py"
NAMES = ["cond", "block0", "block1", "block2"]


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/nhp_numerics.py")


def _finite(x) -> bool:
    return all(map(_finite, x.values())) if isinstance(x, dict) else not isinstance(x, float) or math.isfinite(x)


def test_the_record_of_three_tiny_steps(bench, tiny_h5, tmp_path, capsys, one_thread):
    out = tmp_path / "log.json"
    argv = ["--train-log", "--size", "tiny", "--steps", "3", "--check-every", "2", "--batch-size", "8"]
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    bench.main([*argv, "--data", tiny_h5, "--out", str(out)])
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # the caller's, back
    record = json.loads(out.read_text())
    assert {"date", "device", "device_name", "torch", "model", "steps", "check_every"} <= set(record)
    assert record["model"]["n_z"] == 14  # twice the 7 sources of the procedural file
    legs = [leg["class_path"].rsplit(".", 1)[-1] for leg in record["model"]["legs"]["regularizers"]]
    assert legs == ["KLM", "NHP"]
    assert record["model"]["legs"]["regularizers"][1]["init_args"]["activations"] == NAMES
    rows = record["steps"]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert ["check" in r for r in rows] == [True, False, True]
    for r in rows:
        assert {"s", "nhp", "nhp_grad_norm", "decoder_grad_norm", "decoder_clipped_fraction", "loss"} <= set(r)
        assert 0 < r["s"]["min"] <= r["s"]["median"] <= r["s"]["max"] < 1  # stds of tanh outputs
        assert r["nhp"] > 0 and r["nhp_grad_norm"] > 0 and 0 <= r["decoder_clipped_fraction"] <= 1
        assert _finite(r)
    for r in rows[::2]:
        check = r["check"]
        assert set(check["grad_rel_err"]) == {"fd32_vs_fd64", "fd32_vs_jvp32", "jvp32_vs_fd64"}
        assert all(v >= 0 for v in check["grad_rel_err"].values())
        # the value survives float32 rounding at these stds (about 0.1), long after the gradient stops doing so
        assert check["nhp_rel_err_fd32_vs_fd64"] < 1e-3
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step")]
    assert len(lines) == 3 and "fd32/fd64" in lines[0] and "fd32/fd64" not in lines[1]


def test_the_log_with_exact_second_derivatives(bench, tiny_h5, tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(bench, "RESULTS", tmp_path)  # the default output name, next to the differences' log
    bench.main(["--train-log", "--size", "tiny", "--steps", "2", "--check-every", "0", "--batch-size", "8",
                "--data", tiny_h5, "--method", "jvp"])  # fmt: skip
    record = json.loads((tmp_path / "nhp_train_log_cpu_tiny_jvp.json").read_text())
    assert record["model"]["legs"]["regularizers"][1]["init_args"]["method"] == "jvp"
    assert [r["step"] for r in record["steps"]] == [0, 1] and all(_finite(r) for r in record["steps"])


def test_a_terminated_log_keeps_the_steps_it_made(tiny_h5, tmp_path):
    # as a time limit ends it: SIGTERM, to a process started in the background (where SIGINT would be ignored)
    out = tmp_path / "log.json"
    argv = ["--train-log", "--size", "tiny", "--steps", "1000000", "--check-every", "0", "--batch-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *argv, "--data", tiny_h5, "--out", str(out)],
        stdout=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    for line in proc.stdout:
        if line.startswith("step    1"):  # so step 0 is complete
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "interrupted at step" in rest
    record = json.loads(out.read_text())
    assert record["interrupted_at_step"] >= 1 and len(record["steps"]) == record["interrupted_at_step"]


@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_the_check_agrees_at_large_stds_and_exposes_rounding_at_small_ones(bench, scale, one_thread):
    torch.manual_seed(0)
    decoder = Decoder(6, widths=(8, 8, 4, 4), cond_dim=16, image_size=64)
    g = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    z = 0.2 + scale * g
    check = bench.fd_check(decoder, NAMES, z, LF.latent_std(z), seed=3)
    err = check["grad_rel_err"]
    assert all(p.grad is None for p in decoder.parameters())  # the check leaves no gradients behind
    if scale == 1.0:
        assert err["fd32_vs_fd64"] < 1e-2
    else:  # the truncation vanishes (fd64 ~ jvp) while float32 differences are swamped by rounding
        assert err["jvp32_vs_fd64"] < 1e-3
        assert err["fd32_vs_fd64"] > 0.1


def test_the_split_backward_gives_the_whole_gradient_and_the_part_alone(bench):
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)
    x = torch.randn(5, 3)

    def terms():
        h = torch.tanh(a(x))
        return b(h).square().mean(), 0.3 * (b(h) ** 3).mean()

    loss, part = terms()
    expected_part = torch.autograd.grad(part, list(b.parameters()), retain_graph=True)
    loss = loss + part
    loss.backward()
    whole = [p.grad.clone() for p in (*a.parameters(), *b.parameters())]
    for p in (*a.parameters(), *b.parameters()):
        p.grad = None
    loss, part = terms()
    norm = bench.backward_with_part(loss + part, part, list(b.parameters()))
    torch.testing.assert_close([p.grad for p in (*a.parameters(), *b.parameters())], whole)
    assert norm.item() == pytest.approx(torch.cat([g.flatten() for g in expected_part]).norm().item(), rel=1e-6)


def test_a_bad_data_path_is_one_line(bench, tmp_path):
    for path, message in [(tmp_path / "missing.h5", "no such file"), (tmp_path / "x.h5", "not a dataset file")]:
        if path.name == "x.h5":
            path.write_text("not hdf5")
        with pytest.raises(SystemExit) as err:
            bench.main(["--train-log", "--size", "tiny", "--steps", "1", "--data", str(path)])
        text = str(err.value)
        assert "\n" not in text and f"--data {path}" in text and message in text
