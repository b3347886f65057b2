"""Reconstruction quality: the peak signal-to-noise ratio of each image (docs/evaluation.md, "PSNR").

Two scales:

- :func:`psnr` -- ``PSNR = 10 log10(1 / MSE)`` for images in [0, 1], one value per image (mean squared error
  over its pixels and channels), computed by torchmetrics and capped at 100 dB (an exact reconstruction would
  be infinite). The correct value.
- :func:`psnr_paper` -- the Tripod authors' computation, reproduced exactly, on whose scale the paper's model
  selection thresholds (38 / 42 / 34 / 40 dB) were set (docs/reference.md, "PSNR"). Images in [-1, 1] become
  ``uint8 = trunc(255 * clip((x + 1) / 2, 0, 1))`` in float32, and the per-image mean squared error is taken
  in uint8 arithmetic: a signed error of ``d`` levels contributes ``d^2 mod 256``. Then
  ``PSNR = 20 log10(255) - 10 log10(MSE)`` (``inf`` when every contribution wraps to 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio

__all__ = ["MAX_PSNR", "PSNR_METRICS", "psnr", "psnr_paper", "to_uint8_paper"]

#: the cap of :func:`psnr`, dB (a mean squared error of 1e-10)
MAX_PSNR = 100.0

#: the names under which the two PSNRs are logged (``<stage>/psnr``, ``<stage>/psnr_paper``)
PSNR_METRICS = ("psnr", "psnr_paper")


def _check_shapes(reconstruction: Tensor, target: Tensor) -> None:
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ")


def psnr(reconstruction: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR (dB, float32, shape N) of ``reconstruction`` against ``target``, both N x ... in [0, 1]."""
    _check_shapes(reconstruction, target)
    dims = tuple(range(1, target.ndim))
    values = peak_signal_noise_ratio(reconstruction.float(), target.float(), data_range=1.0, reduction="none", dim=dims)
    return torch.clamp(values, max=MAX_PSNR)


def to_uint8_paper(x: Tensor) -> Tensor:
    """The reference's ``batched_x_to_image`` without the channel move: images in [-1, 1] to uint8 levels,
    ``trunc(255 * clip((x + 1) / 2, 0, 1))`` computed in float32 (truncation, not rounding: the network
    input ``u / 127.5 - 1`` of 63 of the 256 levels ``u`` comes back as ``u - 1``, as in the reference)."""
    x = torch.clamp((x.float() + 1) / 2, 0, 1)
    return (255 * x).to(torch.uint8)


def psnr_paper(reconstruction: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR (dB, float32, shape N) as the Tripod authors compute it, of images in [-1, 1] (N x ...).

    ``mse = mean((a - b)^2)`` over the uint8 images ``a, b`` (:func:`to_uint8_paper`) with the difference and
    its square wrapping modulo 256, as ``jnp.square(x_pred - x_true)`` on uint8 arrays does; the mean is in
    float32. ``20 log10(255) - 10 log10(mse)``, in float32; ``inf`` where ``mse`` is 0.
    """
    _check_shapes(reconstruction, target)
    a, b = to_uint8_paper(reconstruction).int(), to_uint8_paper(target).int()
    wrapped = ((a - b) % 256) ** 2 % 256  # uint8 subtraction, then uint8 squaring
    count = wrapped[0].numel()
    mse = wrapped.flatten(1).sum(1).float() / count  # integer sum (exact, as float32's below 2^24), float32 division
    return (20 * math.log10(255.0) - 10 * torch.log10(mse)).float()
