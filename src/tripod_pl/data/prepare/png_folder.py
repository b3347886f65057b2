"""Reading a folder of numbered PNGs (``images/000000.png`` ...) in order, decoded in parallel, in bounded memory.

Falcor3D and Isaac3D ship as one PNG per image. Decoding is the slow part of converting them, so a pool of
processes decodes and resizes (to 64x64) while the parent writes; at most two groups of images are in flight,
whatever the folder's size::

    check_images_present(folder, n)
    for start, images in decode_images(folder, n, workers=4):
        ...
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from multiprocessing.pool import AsyncResult
from pathlib import Path

import numpy as np
from PIL import Image

from tripod_pl.data.layout import DatasetError
from tripod_pl.data.prepare.resize import TARGET_SIZE, resize_images

GROUP = 512


def image_name(index: int) -> str:
    """File name of image ``index`` (``000042.png``)."""
    return f"{index:06d}.png"


def check_images_present(folder: Path, count: int) -> None:
    """Every ``image_name(i)`` for ``i < count`` must be a file in ``folder``."""
    if not folder.is_dir():
        raise DatasetError(folder, "missing image folder")
    present = {entry.name for entry in os.scandir(folder) if entry.is_file()}
    missing = [image_name(i) for i in range(count) if image_name(i) not in present]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(folder / missing[0], f"missing image{more}")


def decode_image(path: str) -> tuple[tuple[int, int], np.ndarray] | str:
    """``((H, W), image resized to 64x64 RGB)``, or the error message if the file can't be decoded."""
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except Exception as e:  # noqa: BLE001 - any decoder failure means an unreadable image
        return f"{type(e).__name__}: {e}"
    return rgb.shape[:2], resize_images(rgb[None])[0]


def _collect(results: list[tuple[tuple[int, int], np.ndarray] | str], paths: list[str], size: list) -> np.ndarray:
    out = np.empty((len(results), TARGET_SIZE, TARGET_SIZE, 3), dtype=np.uint8)
    for i, (path, result) in enumerate(zip(paths, results)):
        if isinstance(result, str):
            raise DatasetError(path, f"unreadable image ({result})")
        shape, image = result
        if not size:
            size.append(shape)
        elif shape != size[0]:
            raise DatasetError(path, f"image is {shape[0]}x{shape[1]}, the first one is {size[0][0]}x{size[0][1]}")
        out[i] = image
    return out


def decode_images(folder: Path, count: int, workers: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, images)`` blocks of images ``0 .. count-1``, in order, uint8 ``n x 64 x 64 x 3``."""
    groups = [
        [str(folder / image_name(i)) for i in range(start, min(start + GROUP, count))]
        for start in range(0, count, GROUP)
    ]
    size: list[tuple[int, int]] = []
    if workers <= 1:
        for g, paths in enumerate(groups):
            yield g * GROUP, _collect([decode_image(p) for p in paths], paths, size)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with context.Pool(workers) as pool:
        pending: AsyncResult | None = None
        for g in range(len(groups) + 1):
            nxt = pool.map_async(decode_image, groups[g], chunksize=16) if g < len(groups) else None
            if pending is not None:
                yield (g - 1) * GROUP, _collect(pending.get(), groups[g - 1], size)
            pending = nxt
