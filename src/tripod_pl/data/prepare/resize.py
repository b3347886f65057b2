"""Antialiased downsizing of image batches to the training resolution (64x64, docs/data.md).

An integer ratio (Falcor3D and Isaac3D: 128 -> 64) is an exact box average, rounded half up, computed for the
whole batch in NumPy; any other ratio falls back to PIL's ``BOX`` filter (a box-shaped average over each output
pixel's footprint), image by image::

    small = resize_images(big)  # uint8 N x 128 x 128 x 3 -> uint8 N x 64 x 64 x 3
"""

from __future__ import annotations

import numpy as np
from PIL import Image

TARGET_SIZE = 64


def resize_images(images: np.ndarray, size: int = TARGET_SIZE) -> np.ndarray:
    """Resizes uint8 ``N x H x W x C`` images to ``N x size x size x C`` with a box filter (exact at integer ratios)."""
    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    if h % size == 0 and w % size == 0:
        fh, fw = h // size, w // size
        blocks = images.reshape(n, size, fh, size, fw, c).astype(np.uint32)
        total = blocks.sum(axis=(2, 4))
        area = fh * fw
        return ((total + area // 2) // area).astype(np.uint8)
    out = np.empty((n, size, size, c), dtype=np.uint8)
    for i in range(n):
        img = Image.fromarray(images[i].squeeze(-1) if c == 1 else images[i])
        out[i] = np.asarray(img.resize((size, size), Image.Resampling.BOX)).reshape(size, size, c)
    return out
