"""The training DataLoader: knows where it is in the training order, so a run can resume exactly.

``StreamPosition`` is ``(epoch, batches of that epoch already consumed on this rank)``. Every ``iter()``
continues from there: with the rest of the epoch, or, once the epoch was fully consumed, with the next one.
The data order is therefore a function of the number of batches consumed so far and nothing else (not of the
trainer's epoch counter, which differs between a resumed and an uninterrupted run when resuming from the last
batch of an epoch, nor of batches prefetched but never used). Who counts consumption depends on who consumes:
with no trainer, every batch the loader hands out; under a trainer, the DataModule counts the batches the
training loop actually took.

With workers, batches come back through a ``BatchRing`` (see ``ring.py``): the loader turns each ticket into
a batch, pinned if asked::

    position = StreamPosition()
    loader = TrainLoader(stream, position, count_yields=True, num_workers=2)
    next(iter(loader)); position  # StreamPosition(epoch=0, consumed=1)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader

from tripod_pl.data.ring import BatchRing
from tripod_pl.data.stream import Batch, TrainStream


@dataclass
class StreamPosition:
    """Epoch, and batches of that epoch already consumed on this rank."""

    epoch: int = 0
    consumed: int = 0


def _identity(batch: Any) -> Any:
    """Batches are whole already: no collation."""
    return batch


class TrainLoader(DataLoader):
    """A ``DataLoader(stream, batch_size=None)`` that starts every iteration where the last one stopped."""

    def __init__(
        self,
        stream: TrainStream,
        position: StreamPosition,
        count_yields: bool,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 4,
    ) -> None:
        if num_workers > 0:
            stream.attach_ring(
                BatchRing(
                    num_workers,
                    prefetch_factor + 2,
                    stream.plan.config.batch_size,
                    stream.image_shape,
                    stream.num_sources,
                )
            )
            extra: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": prefetch_factor}
        else:
            extra = {}
        super().__init__(
            stream,
            batch_size=None,
            num_workers=num_workers,
            collate_fn=_identity,
            pin_memory=pin_memory and num_workers == 0,
            **extra,
        )
        self.stream = stream
        self.position = position
        self.count_yields = count_yields
        self.pin = pin_memory

    def _start(self) -> None:
        pos, total = self.position, len(self.stream)
        if pos.consumed >= total:
            pos.epoch, pos.consumed = pos.epoch + 1, 0
        self.stream.set_position(pos.epoch, pos.consumed)

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        self._start()
        return self._deliver(super().__iter__())

    def _deliver(self, items: Iterator[Any]) -> Iterator[Batch]:
        ring = self.stream.ring
        for item in items:
            batch = ring.take(item, self.pin) if isinstance(item, tuple) and ring is not None else item
            if self.count_yields:
                self.position.consumed += 1
            yield batch
