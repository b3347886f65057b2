"""Small files in exactly the published layouts of Shapes3D, MPI3D, Falcor3D and Isaac3D."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image

SHAPES3D_SIZES = [2, 2, 2, 2, 2, 3]
MPI3D_SIZES = [2, 2, 1, 1, 1, 3, 3]
FALCOR3D_SIZES = [2, 1, 1, 1, 1, 1, 3]
ISAAC3D_SIZES = [2, 1, 1, 1, 1, 1, 1, 1, 3]


def factor_values(sizes: list[int]) -> np.ndarray:
    """Labels of the row-major grid: factor ``k`` takes unevenly spaced, increasing float values."""
    grid = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), 1).astype(np.float64)
    return (grid**2) * 0.37 - 1.5 + np.arange(len(sizes))


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def shapes3d(path: Path, sizes: list[int] = SHAPES3D_SIZES) -> tuple[np.ndarray, np.ndarray]:
    """``3dshapes.h5``: ``images`` N x 64 x 64 x 3 uint8 and ``labels`` N x 6 float64 (factor values)."""
    labels = factor_values(sizes)
    images = random_images(len(labels), 64)
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["labels"] = labels
    return images, labels


def mpi3d(path: Path, sizes: list[int] = MPI3D_SIZES, compressed: bool = False) -> np.ndarray:
    """``real3d_complicated_shapes_ordered.npz``: key ``images`` only."""
    images = random_images(int(np.prod(sizes)), 64, seed=1)
    (np.savez_compressed if compressed else np.savez)(path, images=images)
    return images


def png_folder(folder: Path, labels_name: str, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``images/000000.png ...`` (128 x 128) and a NumPy labels file named ``labels_name``."""
    labels = factor_values(sizes)
    images = random_images(len(labels), 128, seed=2)
    (folder / "images").mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / "images" / f"{i:06d}.png")
    with open(folder / labels_name, "wb") as f:  # np.save on a handle: no ".npy" appended
        np.save(f, labels)
    return images, labels


def falcor3d(folder: Path, sizes: list[int] = FALCOR3D_SIZES) -> tuple[np.ndarray, np.ndarray]:
    return png_folder(folder, "train-rec.labels", sizes)


def isaac3d(folder: Path, sizes: list[int] = ISAAC3D_SIZES) -> tuple[np.ndarray, np.ndarray]:
    return png_folder(folder, "labels.npy", sizes)
