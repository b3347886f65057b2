"""Per-image PSNR against its definition, 10 log10(1 / MSE) on images in [0, 1], and the paper's uint8 PSNR against
a NumPy transcription of the Tripod authors' code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripod_pl.metrics.reconstruction import MAX_PSNR, psnr, psnr_paper, to_uint8_paper


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


# ---- the paper's PSNR --------------------------------------------------------------------------------------


def _reference_psnr(x_pred: np.ndarray, x_true: np.ndarray) -> np.ndarray:
    """NumPy transcription of kylehkhsu/tripod: batched_x_to_image (scripts/train_autoencoder.py) then
    peak_signal_to_noise_ratio (disentangle/metrics/image.py) per image; uint8 arithmetic wraps as in JAX."""

    def to_image(x):
        x = (x.astype(np.float32) + np.float32(1)) / np.float32(2)
        x = np.moveaxis(x, -3, -1)  # ... c h w -> ... h w c
        x = np.clip(x, np.float32(0), np.float32(1))
        return (np.float32(255) * x).astype(np.uint8)

    out = []
    for p, t in zip(to_image(x_pred), to_image(x_true)):
        assert p.dtype == t.dtype == np.uint8
        mse = np.mean(np.square(p - t), dtype=np.float32)  # uint8 - uint8 and its square wrap modulo 256
        with np.errstate(divide="ignore"):
            out.append(np.float32(20) * np.log10(np.float32(255)) - np.float32(10) * np.log10(mse))
    return np.array(out, dtype=np.float32)


def test_psnr_paper_equals_the_numpy_transcription_of_the_reference():
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, size=(6, 3, 16, 16))
    target = (levels / 127.5 - 1).astype(np.float32)  # the network input of stored uint8 pixels
    noise = np.array([0.0, 0.003, 0.02, 0.1, 0.5, 1.5], dtype=np.float32)[:, None, None, None]
    recon = np.clip(target + noise * rng.standard_normal(target.shape).astype(np.float32), -1.2, 1.2)
    expected = _reference_psnr(recon, target)
    out = psnr_paper(torch.from_numpy(recon), torch.from_numpy(target))
    assert out.dtype == torch.float32 and out.shape == (6,)
    np.testing.assert_allclose(out.numpy()[1:], expected[1:], rtol=1e-6)
    assert np.isinf(expected[0]) and torch.isinf(out[0])  # no error at all: infinite in both


def test_uint8_conversion_truncates_and_drops_63_levels_of_the_network_input_by_one():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999 * 2 - 1, 1.0, 2.0])
    assert to_uint8_paper(x).tolist() == [0, 0, 127, 254, 255, 255]
    levels = torch.arange(256)
    back = to_uint8_paper(levels.float() / 127.5 - 1).long()
    assert int((back != levels).sum()) == 63 and bool(((levels - back) <= 1).all())


def test_errors_wrap_modulo_256():
    target = torch.full((4, 3, 8, 8), 100 / 127.5 - 1)  # level 100 or 99 after the round trip
    base = to_uint8_paper(target)[0, 0, 0, 0].item()
    recon = torch.zeros_like(target)
    for i, d in enumerate([1, 15, 16, 17]):
        recon[i] = (base + d + 0.5) / 255 * 2 - 1  # midway between levels: truncates to base + d
    assert (to_uint8_paper(recon).flatten(1) - base).float().mean(1).tolist() == [1, 15, 16, 17]
    out = psnr_paper(recon, target)
    expected = 20 * np.log10(255) - 10 * np.log10([1, 225, 1e-300, 33])
    np.testing.assert_allclose(out[[0, 1, 3]].numpy(), expected[[0, 1, 3]], rtol=1e-6)  # 17^2 = 289 -> 33
    assert torch.isinf(out[2])  # 16^2 = 256 -> 0
    assert out[1] < out[3] < out[0]  # an error of 17 levels scores above one of 15
    # the correct PSNR orders them by size of the error
    correct = psnr((recon + 1) / 2, (target + 1) / 2)
    assert correct[0] > correct[1] > correct[2] > correct[3]


def test_psnr_paper_is_never_below_24_db_for_nonzero_errors_but_psnr_is():
    torch.manual_seed(0)
    target = torch.rand(8, 3, 16, 16) * 2 - 1
    recon = -target  # large errors everywhere
    paper = psnr_paper(recon, target)
    assert (paper >= 10 * np.log10(255) - 1e-4).all()
    assert (psnr((recon + 1) / 2, (target + 1) / 2) < 10).all()
