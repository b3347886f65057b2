"""Per-image PSNR against its definition, 10 log10(1 / MSE) on images in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripod_pl.metrics.reconstruction import MAX_PSNR, psnr


def test_psnr_is_ten_log10_of_one_over_each_images_mse():
    rng = np.random.default_rng(0)
    target = rng.random((5, 3, 8, 8))
    recon = np.clip(
        target + rng.normal(scale=[[[[0.01]]], [[[0.05]]], [[[0.1]]], [[[0.2]]], [[[0.3]]]], size=target.shape), 0, 1
    )
    expected = [10 * np.log10(1 / np.mean((recon[i] - target[i]) ** 2)) for i in range(5)]
    out = psnr(torch.from_numpy(recon), torch.from_numpy(target))
    assert out.shape == (5,) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5)


def test_a_uniform_error_of_a_tenth_is_20_db_and_an_exact_copy_is_capped():
    x = torch.full((2, 3, 4, 4), 0.5)
    r = x.clone()
    r[0] += 0.1
    assert psnr(r, x).tolist() == pytest.approx([20.0, MAX_PSNR], abs=1e-4)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="differ"):
        psnr(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5))
