"""Converting the published benchmark files to the training layout (docs/data.md), streaming.

=========  ==========================================================  ===========================================
dataset    published file(s)                                           source
=========  ==========================================================  ===========================================
shapes3d   ``3dshapes.h5``: ``images`` N x 64 x 64 x 3, ``labels`` N x 6  Google DeepMind, 3dshapes bucket
mpi3d      ``real3d_complicated_shapes_ordered.npz``: ``images``, no      rr-learning/disentanglement_dataset
           labels, rows row-major over the factors
falcor3d   ``Falcor3D_down128/images/000000.png ...`` (128 px) and      NVlabs/High-res-disentanglement-datasets
           ``train-rec.labels`` (NumPy array, N x 7)
isaac3d    ``Isaac3D_down128/images/000000.png ...`` (128 px) and       NVlabs/High-res-disentanglement-datasets
           ``labels.npy`` (N x 9)
dsprites   ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``: ``imgs``  Google DeepMind, dsprites-dataset
           (0/1 pixels), ``latents_classes`` (``dsprites.py``)
smallnorb  folder of ``smallnorb-5x46789x9x18x6x2x96x96-training-``    NYU, norb-v1.0-small
           ``{dat,cat,info}.mat[.gz]`` and the ``5x01235...-testing-``
           ones (``smallnorb.py``)
cars3d     ``nips2015-analogy-data.tar.gz`` or its ``data/cars`` folder   Reed et al., scottreed.info
           of ``car_001_mesh.mat ...`` and ``list.txt`` (``cars3d.py``)
=========  ==========================================================  ===========================================

Factor values map to indices by rank among their sorted unique values; the rows must be the full factorial
grid in the documented order (``factors.py``). Images are read a block at a time (PNGs by a process pool),
resized to 64x64; grayscale images (dSprites, SmallNORB) get their one channel replicated to RGB, as the
layout and the networks have three channels. Everything is written through ``DatasetWriter`` (temporary file,
renamed when complete)::

    convert("falcor3d", "Falcor3D_down128", "falcor3d.h5", workers=4)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from tripod_pl.data.layout import DatasetError, DatasetInfo, open_hdf5
from tripod_pl.data.prepare import cars3d, dsprites, smallnorb
from tripod_pl.data.prepare.factors import (
    check_factorial_order,
    check_row_count,
    factorial_indices,
    values_to_indices,
)
from tripod_pl.data.prepare.npz import NpzRows
from tripod_pl.data.prepare.png_folder import check_images_present, decode_images
from tripod_pl.data.prepare.resize import TARGET_SIZE, resize_images
from tripod_pl.data.prepare.writer import DatasetWriter

READ_ROWS = 1024

Batches = Generator[tuple[np.ndarray, np.ndarray], None, None]
Opener = Callable[[Path, list[str], list[int], int], tuple[int, Batches]]


@dataclass(frozen=True)
class Published:
    """A published dataset: its documented factors, in row-major order, and how to open its files."""

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    open: Opener


def _check_images(shape: tuple[int, ...], dtype: np.dtype, path: Path, what: str) -> None:
    if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
        raise DatasetError(path, f"{what} must be uint8 N x H x W x 3, found {dtype} {shape}")


def _load_labels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(path, "missing labels file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DatasetError(path, f"not a NumPy array file ({e})") from None


def _open_shapes3d(src: Path, names: list[str], sizes: list[int], workers: int) -> tuple[int, Batches]:
    with open_hdf5(src) as f:
        for key in ("images", "labels"):
            if not isinstance(f.get(key), h5py.Dataset):
                raise DatasetError(src, f"missing dataset '{key}'")
        _check_images(f["images"].shape, f["images"].dtype, src, "dataset 'images'")
        n = f["images"].shape[0]
        if f["labels"].shape[0] != n:
            raise DatasetError(src, f"'images' has {n} rows but 'labels' has {f['labels'].shape[0]}")
        check_row_count(n, sizes, src, "images")
        indices = values_to_indices(f["labels"][()], names, sizes, src)
    check_factorial_order(indices, names, sizes, src)

    def batches() -> Batches:
        with open_hdf5(src) as f:
            images = f["images"]
            for start in range(0, n, READ_ROWS):
                stop = min(start + READ_ROWS, n)
                yield images[start:stop], indices[start:stop]

    return n, batches()


def _open_mpi3d(src: Path, names: list[str], sizes: list[int], workers: int) -> tuple[int, Batches]:
    with NpzRows(src, "images") as arr:
        _check_images(arr.shape, arr.dtype, src, "array 'images'")
        n = arr.shape[0]
    check_row_count(n, sizes, src, "images")

    def batches() -> Batches:
        with NpzRows(src, "images") as rows:
            for start, block in rows.blocks(READ_ROWS):
                yield block, factorial_indices(start, start + len(block), sizes)

    return n, batches()


def _png_opener(labels_name: str) -> Opener:
    def open_folder(src: Path, names: list[str], sizes: list[int], workers: int) -> tuple[int, Batches]:
        if not src.is_dir():
            raise DatasetError(src, "no such directory")
        labels = _load_labels(src / labels_name)
        n = labels.shape[0] if labels.ndim >= 1 else 0
        check_row_count(n, sizes, src / labels_name, "label rows")
        indices = values_to_indices(np.asarray(labels), names, sizes, src / labels_name)
        check_factorial_order(indices, names, sizes, src / labels_name)
        check_images_present(src / "images", n)

        def batches() -> Batches:
            for start, images in decode_images(src / "images", n, workers):
                yield images, indices[start : start + len(images)]

        return n, batches()

    return open_folder


PUBLISHED: dict[str, Published] = {
    "shapes3d": Published(
        ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
        (10, 10, 10, 8, 4, 15),
        _open_shapes3d,
    ),
    "mpi3d": Published(
        (
            "object_color",
            "object_shape",
            "object_size",
            "camera_height",
            "background_color",
            "horizontal_axis",
            "vertical_axis",
        ),
        (4, 4, 2, 3, 3, 40, 40),
        _open_mpi3d,
    ),
    "falcor3d": Published(
        ("lighting_intensity", "lighting_x", "lighting_y", "lighting_z", "camera_x", "camera_y", "camera_z"),
        (5, 6, 6, 6, 6, 6, 6),
        _png_opener("train-rec.labels"),
    ),
    "isaac3d": Published(
        (
            "object_shape",
            "robot_x",
            "robot_y",
            "camera_height",
            "object_scale",
            "lighting_intensity",
            "lighting_direction",
            "object_color",
            "wall_color",
        ),
        (3, 8, 5, 4, 4, 4, 6, 4, 4),
        _png_opener("labels.npy"),
    ),
    "dsprites": Published(dsprites.NAMES, dsprites.SIZES, dsprites.open_dsprites),
    "smallnorb": Published(smallnorb.NAMES, smallnorb.SIZES, smallnorb.open_smallnorb),
    "cars3d": Published(cars3d.NAMES, cars3d.SIZES, cars3d.open_cars3d),
}


def to_rgb(images: np.ndarray) -> np.ndarray:
    """``N x H x W x 3`` images unchanged; ``N x H x W x 1`` (grayscale) with the channel replicated three times."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def convert(
    dataset: str,
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    factor_sizes: list[int] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> DatasetInfo:
    """Converts the published files of ``dataset`` at ``src`` to the training layout at ``out``.

    ``factor_sizes`` replaces the documented sizes (a subset of the dataset, or a test fixture); ``workers``
    processes decode PNGs. ``out`` appears only once complete.
    """
    if dataset not in PUBLISHED:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(PUBLISHED)}")
    spec = PUBLISHED[dataset]
    names = list(spec.factor_names)
    sizes = list(spec.factor_sizes) if factor_sizes is None else [int(s) for s in factor_sizes]
    if len(sizes) != len(names):
        raise DatasetError(None, f"{dataset} has {len(names)} factors ({', '.join(names)}), got {len(sizes)} sizes")
    if any(s < 1 for s in sizes):
        raise DatasetError(None, f"factor sizes must be positive, got {sizes}")
    n, batches = spec.open(Path(src), names, sizes, max(1, int(workers)))
    bar = tqdm(total=n, unit="img", desc=f"{dataset} -> {Path(out).name}", disable=not progress, file=sys.stderr)
    # closing: a failure stops the reading (and its process pool) at once, not at garbage collection
    with closing(batches), bar, DatasetWriter(out, n, (TARGET_SIZE, TARGET_SIZE, 3), names, sizes) as writer:
        for images, sources in batches:
            writer.write(to_rgb(resize_images(np.asarray(images))), sources)
            bar.update(len(images))
    return DatasetInfo(os.fspath(out), n, (TARGET_SIZE, TARGET_SIZE, 3), names, sizes)
