"""Reconstruction quality: the peak signal-to-noise ratio of each image (docs/evaluation.md, "PSNR").

``PSNR = 10 log10(1 / MSE)`` for images in [0, 1], one value per image (mean squared error over its pixels and
channels), computed by torchmetrics and capped at 100 dB (an exact reconstruction would be infinite).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio

__all__ = ["MAX_PSNR", "psnr"]

#: the cap of :func:`psnr`, dB (a mean squared error of 1e-10)
MAX_PSNR = 100.0


def psnr(reconstruction: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR (dB, float32, shape N) of ``reconstruction`` against ``target``, both N x ... in [0, 1]."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ")
    dims = tuple(range(1, target.ndim))
    values = peak_signal_noise_ratio(reconstruction.float(), target.float(), data_range=1.0, reduction="none", dim=dims)
    return torch.clamp(values, max=MAX_PSNR)
