"""Images for any combination of the sources of a full-factorial dataset file: what the intervention metrics
(FactorVAE and BetaVAE scores, :mod:`tripod_pl.metrics.intervention`) draw their batches from.

A file in the training layout (docs/data.md) whose rows are the full factorial grid of its sources holds
exactly one image per combination. The converters and the procedural generator write the rows in row-major
order of the sources (row ``r`` has indices ``np.unravel_index(r, sizes)``); the sampler checks that when it
opens the file, by reading ``sources`` (a few bytes per image), and then finds a combination's row by index
arithmetic, ``np.ravel_multi_index``. A complete grid stored in another order is accepted through a lookup
table built from the same read; a file that is not a complete grid (a subset, repeated combinations) is a
``DatasetError`` naming it::

    sampler = InterventionSampler("data/procedural.h5")
    s = sampler.sample_sources(64, np.random.default_rng(0))
    s[:, 2] = s[0, 2]  # fix source 2 across the batch
    x = sampler.images(s)  # 64 x 3 x 64 x 64 float32 in [-1, 1], as the networks take them
"""

from __future__ import annotations

import os

import numpy as np
import torch

from tripod_pl.data.layout import SOURCES, DatasetError, open_hdf5, read_info
from tripod_pl.data.rows import HDF5Rows, MemoryRows
from tripod_pl.data.transforms import as_model_input

__all__ = ["InterventionSampler"]


class InterventionSampler:
    """Rows of a full-factorial dataset file by source combination.

    ``in_memory`` reads the whole file into RAM first (fast random access); otherwise every batch reads its
    rows from the file, one read per distinct row.
    """

    def __init__(self, path: str | os.PathLike[str], in_memory: bool = False) -> None:
        info = read_info(path, check_sources=False)
        self.path = os.fspath(path)
        self.source_names = list(info.source_names)
        self.source_sizes = [int(s) for s in info.source_sizes]
        grid = int(np.prod(self.source_sizes, dtype=np.int64))
        if info.num_images != grid:
            sizes = " x ".join(map(str, self.source_sizes))
            raise DatasetError(
                self.path,
                f"has {info.num_images} images, but its source sizes {sizes} make {grid}: interventions need the "
                "full factorial grid (one image per combination)",
            )
        with open_hdf5(self.path) as f:
            sources = np.asarray(f[SOURCES][...], dtype=np.int64)
        bad = (sources < 0) | (sources >= np.asarray(self.source_sizes))
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise DatasetError(self.path, f"source '{self.source_names[col]}' is out of range at row {row}")
        flat = np.ravel_multi_index(tuple(sources.T), self.source_sizes)
        self.row_major = bool(np.array_equal(flat, np.arange(grid)))
        self._row_of: np.ndarray | None = None
        if not self.row_major:
            counts = np.bincount(flat, minlength=grid)
            if (counts != 1).any():
                missing = int(np.argmin(counts))
                combo = dict(zip(self.source_names, (int(i) for i in np.unravel_index(missing, self.source_sizes))))
                raise DatasetError(self.path, f"is not the full factorial grid: combination {combo} is missing")
            self._row_of = np.empty(grid, dtype=np.int64)
            self._row_of[flat] = np.arange(grid)
        self._rows = MemoryRows.load(self.path) if in_memory else HDF5Rows(self.path)

    @property
    def num_sources(self) -> int:
        return len(self.source_sizes)

    def sample_sources(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` combinations drawn uniformly from the grid (each source independently uniform): ``n x K`` int64."""
        return np.stack([rng.integers(0, size, n) for size in self.source_sizes], axis=1).astype(np.int64)

    def rows(self, sources: np.ndarray) -> np.ndarray:
        """The row of every combination (``n x K`` source indices): ``n`` int64."""
        sources = np.asarray(sources, dtype=np.int64)
        if sources.ndim != 2 or sources.shape[1] != self.num_sources:
            raise ValueError(f"expected n x {self.num_sources} source indices, got shape {sources.shape}")
        if ((sources < 0) | (sources >= np.asarray(self.source_sizes))).any():
            raise ValueError(f"source indices out of range of the sizes {self.source_sizes}")
        flat = np.ravel_multi_index(tuple(sources.T), self.source_sizes)
        return flat if self._row_of is None else self._row_of[flat]

    def uint8_images(self, sources: np.ndarray) -> np.ndarray:
        """The stored images of the combinations: ``n x H x W x C`` uint8 (repeated combinations read once)."""
        unique, inverse = np.unique(self.rows(sources), return_inverse=True)
        images, _ = self._rows.read_rows(unique, 1)
        return images[inverse.reshape(-1)]

    def images(
        self, sources: np.ndarray, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The images of the combinations as the networks take them (``as_model_input``), on ``device``."""
        x = torch.from_numpy(self.uint8_images(sources))
        if device is not None:
            x = x.to(device)
        return as_model_input(x, dtype)

    def close(self) -> None:
        """Closes the file handle (an in-memory sampler holds none)."""
        if isinstance(self._rows, HDF5Rows):
            self._rows.close()
