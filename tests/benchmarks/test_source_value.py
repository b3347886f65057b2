"""benchmarks/source_value.py scores the best reconstruction from a set of sources: checked on small factorial
grids against the definitions written out in float64."""

from __future__ import annotations

import numpy as np
import pytest

from ..helpers import load_script


def _reference(images: np.ndarray, recon: np.ndarray) -> dict[str, float]:
    p, q = images.astype(np.float64) / 255, np.clip(recon, 1e-6, 1 - 1e-6)
    mse = ((p - recon) ** 2).reshape(len(p), -1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.nan_to_num(p * np.log(p / q)) + np.nan_to_num((1 - p) * np.log((1 - p) / (1 - q)))
    return {"psnr": float(np.mean(-10 * np.log10(mse))), "excess_bce": float(kl.mean())}


def test_scores_equal_the_definitions() -> None:
    bench = load_script("benchmarks/source_value.py")
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 256, size=(2, 3, 4, 5), dtype=np.uint8)  # sources of 2, 3 and 4 values, 5 pixels
    flat = grid.reshape(-1, 5)
    for known in ({0}, {1, 2}, set()):
        unknown = tuple(a for a in range(3) if a not in known)
        recon = np.broadcast_to(grid.mean(axis=unknown, keepdims=True) / 255, grid.shape).reshape(-1, 5)
        expected = _reference(flat, recon)
        scores = bench._scores(grid, known)
        assert scores["psnr"] == pytest.approx(expected["psnr"], rel=1e-5)
        assert scores["excess_bce"] == pytest.approx(expected["excess_bce"], rel=1e-4)


def test_a_source_the_images_do_not_depend_on_is_worth_nothing() -> None:
    bench = load_script("benchmarks/source_value.py")
    grid = np.repeat(np.random.default_rng(1).integers(0, 256, size=(3, 1, 6), dtype=np.uint8), 4, axis=1)
    exact = bench._scores(grid, {0})  # the mean over source 1 is the images themselves
    assert exact["psnr"] == pytest.approx(120.0) and exact["excess_bce"] == pytest.approx(0, abs=1e-6)  # (capped)
    assert bench._scores(grid, {0, 1}) == {"psnr": float("inf"), "excess_bce": 0.0}
    assert bench._scores(grid, {1})["excess_bce"] > 0.01
