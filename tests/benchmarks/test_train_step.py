"""Smoke tests of benchmarks/train_step.py at a tiny size: its summary line, its record, its profile, its
compile fallback and its option checks (speed itself is measured by the benchmark, never asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ..helpers import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/train_step.py")


def _tiny(tmp_path: Path, *extra: str) -> list[str]:
    return ["--size", "tiny", "--batch-size", "2", "--steps", "2", "--warmup", "0", "--out", str(tmp_path / "r.json"),
            *extra]  # fmt: skip


def test_every_method_timed_counted_and_profiled(bench, tmp_path, capsys, one_thread):
    result = bench.main(_tiny(tmp_path, "--profile-steps", "1"))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    methods = ["ae", "qlae", "betatcvae", "tripod_no_nhp", "tripod", "tripod_jvp"]
    assert set(summary) == {*methods, "device", "precision", "tflops"}
    assert summary["device"] == "cpu" and summary["precision"] == "32"
    assert all(summary[m] > 0 and summary["tflops"][m] > 0 for m in methods)
    rows = {r["method"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    assert rows == {r["method"]: r for r in result["results"]}
    # NHP's perturbed decoder passes add arithmetic and saved activations on top of FSQ + KLM
    assert rows["tripod"]["flops"] > rows["tripod_no_nhp"]["flops"] > 0
    # exact second derivatives (nested jvp) carry tangents through every layer: more arithmetic than differences
    assert rows["tripod_jvp"]["flops"] > rows["tripod"]["flops"]
    assert rows["tripod"]["peak_memory_estimate_mib"] > rows["tripod_no_nhp"]["peak_memory_estimate_mib"] > 0
    profile = Path(rows["tripod"]["profile"]["path"]).read_text()
    assert "aten::" in profile
    # 2 x 2k = 8 perturbed copies of the batch of 2 through the decoder up to block2, beside the main pass
    assert set(rows["tripod"]["profile"]["ranges_cpu_ms_per_step"]) == {
        "train step",
        "decoder forward, batch 2, to x_logits",
        "decoder forward, batch 16, to block2",
    }


def test_compile_failure_falls_back_to_eager_and_says_why(bench, tmp_path, capsys, monkeypatch, one_thread):
    def broken(model):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(bench, "compile_networks", broken)
    monkeypatch.setattr(bench, "_model_has_option", lambda name: False)
    result = bench.main(_tiny(tmp_path, "--methods", "ae", "--profile-steps", "0", "--compile"))
    (row,) = result["results"]
    assert row["compiled"] is False and row["compile_error"] == "RuntimeError: no compiler here"
    assert "torch.compile failed (RuntimeError: no compiler here)" in capsys.readouterr().err
    assert row["median_s"] > 0


@pytest.mark.parametrize(
    "argv",
    [["--steps", "0"], ["--size", "huge"], ["--precision", "fp16"], ["--batch-size", "0"], ["--methods", "vae"]],
)
def test_bad_options_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal without CUDA")
def test_cuda_without_cuda_is_refused_by_name(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "cuda"])
    assert "--device cuda" in capsys.readouterr().err
