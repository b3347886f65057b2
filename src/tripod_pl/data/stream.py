"""The iterable datasets the DataLoaders run: whole batches, read in contiguous blocks, sharded.

``TrainStream`` yields one rank's training batches in the order of ``plan.TrainPlan``. Which epoch, and how
many of its batches were already delivered, live in a shared-memory *cursor* set by the parent before each
``iter(dataloader)``; (persistent) workers read it when their iteration starts. Worker slot ``s`` plays
logical worker ``(s + start) % num_workers``, so that after a resume at batch ``start`` the DataLoader's
round-robin still delivers ``start, start + 1, ...``.

``FixedBatches`` yields fixed batches of a fixed list of rows (validation, prediction), sharded over ranks
(``r, r + world_size, ...``) and workers.

Batches are built whole where they are read (in a worker, or in the training process without workers) and
are ``{"image": uint8 B x H x W x C, "sources": int64 B x K}``; a DataLoader passes them on as they are::

    stream = TrainStream(HDF5Rows("data.h5"), plan, image_shape=(64, 64, 3), num_sources=7)
    stream.set_position(epoch=2, start_batch=0)
    batches = list(stream)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tripod_pl.data.plan import TrainPlan, rows_to_runs
from tripod_pl.data.rows import RowSource

Batch = dict[str, torch.Tensor]


def _new_batch(size: int, image_shape: tuple[int, ...], num_sources: int) -> Batch:
    """An empty batch to fill."""
    return {
        "image": torch.empty((size, *image_shape), dtype=torch.uint8),
        "sources": torch.empty((size, num_sources), dtype=torch.int64),
    }


def _worker_slot() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class TrainStream(IterableDataset):
    """One rank's training batches, epoch after epoch, resumable at any batch."""

    def __init__(self, rows: RowSource, plan: TrainPlan, image_shape: tuple[int, int, int], num_sources: int):
        super().__init__()
        self.rows = rows
        self.plan = plan
        self.image_shape = tuple(image_shape)
        self.num_sources = num_sources
        self._cursor = torch.zeros(2, dtype=torch.int64).share_memory_()

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """The next iteration delivers batches ``start_batch ..`` of ``epoch`` (workers read this at start)."""
        self._cursor[0] = int(epoch)
        self._cursor[1] = int(start_batch)

    @property
    def position(self) -> tuple[int, int]:
        """``(epoch, start_batch)`` of the next iteration."""
        return int(self._cursor[0]), int(self._cursor[1])

    def __len__(self) -> int:
        return self.plan.num_batches

    def __iter__(self) -> Iterator[Batch]:
        epoch, start = (int(v) for v in self._cursor.tolist())
        slot, num_workers = _worker_slot()
        return self.batches(epoch, start, (slot + start) % num_workers, num_workers)

    def batches(self, epoch: int, start_batch: int, worker: int, num_workers: int) -> Iterator[Batch]:
        """Logical ``worker``'s batches of ``epoch`` with index ``>= start_batch``, in order."""
        plan = self.plan
        mine = plan.worker_batches(worker, num_workers)
        sizes = plan.batch_sizes[mine[mine >= start_batch]].tolist()
        skip = plan.skipped_rows(worker, num_workers, start_batch)
        sizes.reverse()
        size = filled = 0
        pos = 0
        for runs, order in plan.worker_windows(epoch, worker, num_workers):
            if not sizes and filled == size:
                return
            cut, pos = max(0, skip - pos), pos + len(order)
            if cut >= len(order):
                continue
            order = order[cut:]
            window = self.rows.read_window(runs)
            i = 0
            while i < len(order):
                if filled == size:
                    size, filled = sizes.pop(), 0
                    batch = _new_batch(size, self.image_shape, self.num_sources)
                    images, sources = batch["image"].numpy(), batch["sources"].numpy()
                n = min(size - filled, len(order) - i)
                window.take(order[i : i + n], images[filled : filled + n], sources[filled : filled + n])
                i += n
                filled += n
                if filled == size:
                    yield batch


class FixedBatches(IterableDataset):
    """Consecutive batches of a fixed list of rows; rank ``r`` gets batches ``r, r + world_size, ...``.

    With ``pad``, every rank gets the same number of batches (the first batches repeat on the ranks that
    would have one fewer), so collective operations in evaluation loops never wait for a missing rank.
    ``row_ids`` are sorted; with ``order_seed`` they are first put in a seeded random order, so that any
    first batches (``limit_val_batches``) are a random sample of the rows rather than a few neighbouring runs of
    a file in factorial order (each batch is still read in row order).
    """

    def __init__(
        self,
        rows: RowSource,
        row_ids: np.ndarray,
        batch_size: int,
        image_shape: tuple[int, int, int],
        num_sources: int,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        block_rows: int = 64,
        order_seed: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.rows = rows
        self.row_ids = np.asarray(row_ids, dtype=np.int64)
        if order_seed is not None:
            self.row_ids = np.random.default_rng(order_seed).permutation(self.row_ids)
        self.batch_size = batch_size
        self.image_shape = tuple(image_shape)
        self.num_sources = num_sources
        self.block_rows = block_rows
        total = -(-len(self.row_ids) // batch_size)
        mine = np.arange(rank, total, world_size)
        if pad and total > 0:
            mine = np.arange(rank, -(-total // world_size) * world_size, world_size) % total
        self.batch_ids = mine

    def __len__(self) -> int:
        return len(self.batch_ids)

    def __iter__(self) -> Iterator[Batch]:
        slot, num_workers = _worker_slot()
        for b in self.batch_ids[slot::num_workers].tolist():
            ids = np.sort(self.row_ids[b * self.batch_size : (b + 1) * self.batch_size])  # read in row order
            batch = _new_batch(len(ids), self.image_shape, self.num_sources)
            window = self.rows.read_window(rows_to_runs(ids, self.block_rows))
            window.take(np.arange(len(ids)), batch["image"].numpy(), batch["sources"].numpy())
            yield batch
