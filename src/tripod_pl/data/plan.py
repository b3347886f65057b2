"""Which rows go in which batch, on which rank and worker, in which epoch: pure index arithmetic, no I/O.

Training order (docs/data.md: contiguous reads, buffered shuffle, shards over ranks and workers):

1. The file is cut into *blocks* of ``block_rows`` consecutive rows (chunk aligned); each block keeps only its
   training rows. Every epoch permutes the blocks (seeded by ``seed, epoch``): the *epoch stream* is the
   training rows of the permuted blocks, each block's rows contiguous.
2. Rank ``r`` of ``world_size`` takes the ``r``-th of ``world_size`` equal, contiguous slices of the stream:
   ``batches_per_rank`` batches each, so every rank runs the same number of steps. ``drop_last`` drops the
   fewer than ``world_size * batch_size`` rows left over (a different tail each epoch); otherwise the stream
   wraps around to fill the last batches (fewer than ``world_size`` rows repeat) and the last batch of each
   rank may be short.
3. With ``w`` DataLoader workers, logical worker ``j`` makes the rank's batches ``j, j + w, ...`` (the order
   in which a DataLoader collects them) from its own contiguous part of the rank's slice.
4. A worker reads its part a *window* of ``shuffle_blocks * block_rows`` rows at a time, permutes the
   window (seeded by ``seed, epoch, rank, worker, window``) and cuts its batches from the permuted rows.

So the batches of a rank are a function of ``(seed, epoch, rank, world_size, num_workers)`` only, which is
what makes exact resume possible: skipping the first ``k`` batches needs no reading::

    plan = TrainPlan(train_mask, PlanConfig(batch_size=64), rank=0, world_size=2)
    rows = plan.batch_rows(epoch=3, num_workers=2)  # list of row-index arrays, in delivery order
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BLOCK_KEY = 0xB10C
_WINDOW_KEY = 0x5EED
_SPLIT_KEY = 0x5917


@dataclass(frozen=True)
class PlanConfig:
    """The knobs of the training order (see the module docstring)."""

    batch_size: int = 64
    block_rows: int = 64
    shuffle_blocks: int = 64
    seed: int = 0
    drop_last: bool = True

    @property
    def window_rows(self) -> int:
        """Rows a worker shuffles together."""
        return self.block_rows * self.shuffle_blocks


@dataclass(frozen=True)
class Runs:
    """Runs of consecutive rows ``start[i] .. stop[i]-1``, in order."""

    start: np.ndarray
    stop: np.ndarray

    @property
    def total(self) -> int:
        """Number of rows in all runs."""
        return int((self.stop - self.start).sum())

    def rows(self) -> np.ndarray:
        """The row indices of all runs, in order (int64)."""
        lengths = self.stop - self.start
        if len(lengths) == 0:
            return np.zeros(0, dtype=np.int64)
        offsets = np.repeat(self.start - np.cumsum(lengths) + lengths, lengths)
        return (np.arange(int(lengths.sum()), dtype=np.int64) + offsets).astype(np.int64)


def rows_to_runs(rows: np.ndarray, block_rows: int | None = None) -> Runs:
    """Groups sorted row indices into runs of consecutive rows (also cut at multiples of ``block_rows``)."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return Runs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    cut = np.diff(rows) != 1
    if block_rows is not None:
        cut |= np.diff(rows // block_rows) != 0
    breaks = np.flatnonzero(cut) + 1
    starts = rows[np.r_[0, breaks]]
    stops = rows[np.r_[breaks - 1, len(rows) - 1]] + 1
    return Runs(starts, stops)


def validation_mask(num_rows: int, val_fraction: float, seed: int, unit_rows: int | None = None) -> np.ndarray:
    """Boolean mask of the held-out rows: a seeded random choice of ``unit_rows``-row units.

    Files are in factorial order, so the file's tail would hold out only the last values of the slowest
    factors; random units of consecutive rows are representative and still read contiguously. By default a
    unit is at most 64 rows and small enough to give at least 32 units.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    mask = np.zeros(num_rows, dtype=bool)
    if val_fraction == 0.0 or num_rows < 2:
        return mask
    if unit_rows is None:
        unit_rows = int(max(1, min(64, num_rows * val_fraction // 32)))
    num_units = -(-num_rows // unit_rows)
    num_val = min(num_units - 1, max(1, round(val_fraction * num_units)))
    rng = np.random.default_rng([seed, _SPLIT_KEY])
    for unit in rng.choice(num_units, size=num_val, replace=False):
        mask[unit * unit_rows : (unit + 1) * unit_rows] = True
    return mask


def _slice_stream(runs: Runs, cum: np.ndarray, lo: int, hi: int) -> Runs:
    """Positions ``lo .. hi-1`` of the stream made by ``runs`` (``cum``: their cumulative lengths);
    positions past the end wrap around to the start."""
    total = int(cum[-1])
    starts: list[np.ndarray] = []
    stops: list[np.ndarray] = []
    while lo < hi:
        base = (lo // total) * total
        a, b = lo - base, min(hi - base, total)
        i0 = int(np.searchsorted(cum, a, side="right")) - 1
        i1 = int(np.searchsorted(cum, b, side="left"))
        s = runs.start[i0:i1].copy()
        e = runs.stop[i0:i1].copy()
        s[0] += a - cum[i0]
        e[-1] -= cum[i1] - b
        starts.append(s)
        stops.append(e)
        lo = base + b
    if not starts:
        return Runs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return Runs(np.concatenate(starts), np.concatenate(stops))


class TrainPlan:
    """The training order of one rank (see the module docstring); cheap to build, cheap to query."""

    def __init__(self, train_mask: np.ndarray, config: PlanConfig, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0 .. world_size-1 = {world_size - 1}")
        if config.batch_size < 1 or config.block_rows < 1 or config.shuffle_blocks < 1:
            raise ValueError(f"batch_size, block_rows and shuffle_blocks must be positive: {config}")
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.num_rows = len(train_mask)
        self.num_blocks = -(-self.num_rows // config.block_rows)
        runs = rows_to_runs(np.flatnonzero(train_mask), config.block_rows)
        self._runs = runs
        run_block = runs.start // config.block_rows
        self._block_first = np.searchsorted(run_block, np.arange(self.num_blocks + 1))
        self.num_train = runs.total
        b, w = config.batch_size, world_size
        if config.drop_last:
            self.rank_rows = (self.num_train // (w * b)) * b
        else:
            self.rank_rows = -(-self.num_train // w)
        if self.rank_rows == 0:
            raise ValueError(
                f"{self.num_train} training images are too few for batch_size {b} on {w} rank(s) with drop_last"
            )
        self.num_batches = -(-self.rank_rows // b)
        self.batch_sizes = np.full(self.num_batches, b, dtype=np.int64)
        self.batch_sizes[-1] = self.rank_rows - b * (self.num_batches - 1)

    def epoch_stream(self, epoch: int) -> Runs:
        """The training rows of all blocks, blocks in this epoch's seeded random order."""
        perm = np.random.default_rng([self.config.seed, epoch, _BLOCK_KEY]).permutation(self.num_blocks)
        first, last = self._block_first[perm], self._block_first[perm + 1]
        counts = last - first
        order = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        return Runs(self._runs.start[order], self._runs.stop[order])

    def worker_batches(self, worker: int, num_workers: int) -> np.ndarray:
        """Indices (in the rank's order) of the batches logical ``worker`` makes."""
        return np.arange(worker, self.num_batches, num_workers)

    def worker_windows(self, epoch: int, worker: int, num_workers: int) -> list[tuple[Runs, np.ndarray]]:
        """The windows logical ``worker`` reads, each as (runs to read, order in which to emit its rows)."""
        stream = self.epoch_stream(epoch)
        cum = np.r_[0, np.cumsum(stream.stop - stream.start)]
        counts = [int(self.batch_sizes[self.worker_batches(j, num_workers)].sum()) for j in range(num_workers)]
        lo = self.rank * self.rank_rows + sum(counts[:worker])
        hi = lo + counts[worker]
        windows = []
        for k, start in enumerate(range(lo, hi, self.config.window_rows)):
            runs = _slice_stream(stream, cum, start, min(start + self.config.window_rows, hi))
            rng = np.random.default_rng([self.config.seed, epoch, self.rank, worker, k, _WINDOW_KEY])
            windows.append((runs, rng.permutation(runs.total)))
        return windows

    def skipped_rows(self, worker: int, num_workers: int, start_batch: int) -> int:
        """Rows of logical ``worker``'s part already delivered when the rank has delivered ``start_batch``."""
        done = self.worker_batches(worker, num_workers)
        return int(self.batch_sizes[done[done < start_batch]].sum())

    def batch_rows(self, epoch: int, num_workers: int = 1) -> list[np.ndarray]:
        """Reference: the rows of every batch of the epoch, in the order the rank receives them."""
        batches: list[np.ndarray] = [np.zeros(0, np.int64)] * self.num_batches
        for j in range(num_workers):
            emitted = [runs.rows()[order] for runs, order in self.worker_windows(epoch, j, num_workers)]
            rows = np.concatenate(emitted) if emitted else np.zeros(0, np.int64)
            mine = self.worker_batches(j, num_workers)
            bounds = np.r_[0, np.cumsum(self.batch_sizes[mine])]
            for i, a, b in zip(mine, bounds[:-1], bounds[1:]):
                batches[i] = rows[a:b]
        return batches
