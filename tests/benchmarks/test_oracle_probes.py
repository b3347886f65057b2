"""benchmarks/oracle_probes.py: the decoder's inputs, its scores against the definitions written out in float64, and
a short end-to-end run on a small procedural file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tripod_pl.data.prepare.procedural import generate_procedural

from ..helpers import load_script


def test_source_codes_spread_each_source_evenly_on_minus_one_to_one() -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    sources = torch.tensor([[0, 0, 0], [1, 2, 0], [2, 4, 0]])
    codes = bench.source_codes(sources, [3, 5, 1])
    expected = torch.tensor([[-1, -1, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.float32)  # one value: the midpoint
    torch.testing.assert_close(codes, expected)


class _Fixed(torch.nn.Module):
    """A stand-in decoder returning fixed logits for the codes' rows (the codes hold row numbers)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.logits[codes[:, 0].long()]


def _reference(pixels: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    p = pixels.astype(np.float64) / 255
    mse = ((p - q) ** 2).reshape(len(p), -1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.nan_to_num(p * np.log(p / q)) + np.nan_to_num((1 - p) * np.log((1 - p) / (1 - q)))
    return float(np.mean(-10 * np.log10(mse))), float(kl.mean())


def test_scores_equal_the_definitions() -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 4, 4, 3), dtype=np.uint8)  # more than one chunk of 250
    q = rng.uniform(0.05, 0.95, size=(300, 3, 4, 4))
    logits = torch.logit(torch.tensor(q, dtype=torch.float32))
    codes = torch.arange(300, dtype=torch.float32)[:, None]
    psnr, excess = bench._scores(_Fixed(logits), codes, torch.from_numpy(images))
    ref_psnr, ref_excess = _reference(images.transpose(0, 3, 1, 2), q)
    assert psnr == pytest.approx(ref_psnr, rel=1e-4)
    assert excess == pytest.approx(ref_excess, rel=1e-3)
    exact = torch.logit(torch.from_numpy(images.transpose(0, 3, 1, 2)).float() / 255, eps=1e-6)
    assert bench._scores(_Fixed(exact), codes, torch.from_numpy(images))[1] == pytest.approx(0, abs=1e-4)


def test_the_probes_run_end_to_end(tmp_path, monkeypatch) -> None:
    bench = load_script("benchmarks/oracle_probes.py")
    data, out = tmp_path / "toy.h5", tmp_path / "oracle.json"
    sizes = {"background_color": 2, "object_color": 2, "shape": 2, "scale": 2, "position_x": 3, "position_y": 3}
    generate_procedural(data, {**sizes, "rotation": 1})  # one value: its input is constant, always found
    monkeypatch.setattr(bench, "EVAL_IMAGES", 20)
    argv = ["oracle_probes.py", "--path", str(data), "--steps", "2", "--eval-every", "1", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    bench.main()
    result = json.loads(out.read_text())
    assert [h["step"] for h in result["encoder"]["history"]] == [1, 2]
    accuracy = result["encoder"]["history"][-1]["accuracy"]
    assert set(accuracy) == set(result["sources"]) and all(0 <= a <= 1 for a in accuracy.values())
    last = result["decoder"]["history"][-1]
    assert set(last["psnr_shuffled"]) == set(result["sources"])
    assert 0 < last["psnr"] < 60 and last["excess_bce"] > 0
    through = result["through"]["history"][-1]
    assert set(through["accuracy"]) == set(result["sources"]) and 0 < through["psnr"] < 60
    assert through["accuracy"]["rotation"] == 1.0
