"""The one conversion from stored pixels to network input (docs/data.md): uint8 ``..HWC`` to float ``..CHW``.

Done on the accelerator, after the batch is transferred (uint8 is a quarter of the bytes to move), by
``HDF5DataModule.on_after_batch_transfer``; exposed for anyone else feeding images to the networks::

    x = to_float_images(batch["image"])  # B x 64 x 64 x 3 uint8 -> B x 3 x 64 x 64 float32 in [-1, 1]

:func:`as_model_input` is what the model's ``encode`` / ``reconstruct`` apply to what they are given, so they
take the dataset's uint8 images as they are (``N x H x W x 3``), channels first, or float images in [-1, 1].
"""

from __future__ import annotations

import torch

__all__ = ["as_model_input", "to_float_images"]

#: slack on the [-1, 1] range of float images (rounding in a user's own conversion)
_RANGE_TOLERANCE = 1e-3


def to_float_images(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``x / 127.5 - 1`` with channels moved first: uint8 ``(..., H, W, C)`` -> ``(..., C, H, W)`` in [-1, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.ndim < 3:
        raise ValueError(f"expected (..., H, W, C) images, got shape {tuple(images.shape)}")
    out = images.movedim(-1, -3).to(dtype, memory_format=torch.contiguous_format)
    return out.div_(127.5).sub_(1.0)


def as_model_input(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A batch of RGB images as the networks take them: ``dtype``, ``N x 3 x H x W``, in [-1, 1].

    - uint8 (pixels 0..255, as the dataset files hold them), ``N x H x W x 3`` or ``N x 3 x H x W``:
      ``x / 127.5 - 1`` (:func:`to_float_images`);
    - floating point, ``N x 3 x H x W`` or ``N x H x W x 3``: taken as already in [-1, 1] and only cast to
      ``dtype`` (channels moved first). Values outside [-1, 1] (pixels 0..255 as floats) are an error; images
      in [0, 1] cannot be told apart and must be mapped by the caller (``2 * x - 1``).

    Channels are the dimension of size 3 (dimension 1 when both are). Anything else raises a ``TypeError`` or
    ``ValueError`` saying what is expected; no device transfer is made.
    """
    expected = "expected a batch of RGB images, N x 3 x H x W or N x H x W x 3 (uint8 0..255 or float in [-1, 1])"
    if images.ndim != 4 or 3 not in (images.shape[1], images.shape[-1]):
        raise ValueError(f"{expected}; got shape {tuple(images.shape)}")
    channels_last = images.shape[1] != 3
    if images.dtype == torch.uint8:
        nhwc = images if channels_last else images.movedim(1, -1)
        return to_float_images(nhwc, dtype)
    if not images.is_floating_point():
        raise TypeError(f"{expected}; got {images.dtype}")
    out = images.movedim(-1, 1) if channels_last else images
    if out.numel():
        low, high = torch.aminmax(out.detach())
        if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"float images must be in [-1, 1], got values in [{low.item():.3g}, {high.item():.3g}] "
                "(pass uint8 pixels as they are, or x / 127.5 - 1)"
            )
    return out.to(dtype)
