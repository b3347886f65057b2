"""The one conversion from stored pixels to network input (docs/data.md): uint8 ``..HWC`` to float ``..CHW``.

Done on the accelerator, after the batch is transferred (uint8 is a quarter of the bytes to move), by
``HDF5DataModule.on_after_batch_transfer``; exposed for anyone else feeding images to the networks::

    x = to_float_images(batch["image"])  # B x 64 x 64 x 3 uint8 -> B x 3 x 64 x 64 float32 in [-1, 1]
"""

from __future__ import annotations

import torch


def to_float_images(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``x / 127.5 - 1`` with channels moved first: uint8 ``(..., H, W, C)`` -> ``(..., C, H, W)`` in [-1, 1]."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    if images.ndim < 3:
        raise ValueError(f"expected (..., H, W, C) images, got shape {tuple(images.shape)}")
    out = images.movedim(-1, -3).to(dtype, memory_format=torch.contiguous_format)
    return out.div_(127.5).sub_(1.0)
