"""The training DataLoader: knows where it is in the training order, so a run can resume exactly.

``StreamPosition`` is ``(epoch, batches of that epoch already consumed on this rank)``. Every ``iter()``
continues from there: with the rest of the epoch, or, once the epoch was fully consumed, with the next one.
The data order is therefore a function of the number of batches consumed so far and nothing else (not of the
trainer's epoch counter, which differs between a resumed and an uninterrupted run when resuming from the last
batch of an epoch, nor of batches prefetched but never used). Who counts consumption depends on who consumes:
with no trainer, every batch the loader hands out; under a trainer, the DataModule counts the batches the
training loop actually took::

    position = StreamPosition()
    loader = TrainLoader(stream, position, count_yields=True, num_workers=2)
    next(iter(loader)); position  # StreamPosition(epoch=0, consumed=1)

The loader is *stateful* in Lightning's sense (``state_dict`` / ``load_state_dict``), so Lightning knows it
resumes mid-epoch (and says nothing about "your dataloader is not resumable"). Under ``HDF5DataModule`` its
state is the data module's (``owner``), which Lightning restores first; the loader's copy is then the same
state and is not applied twice.

Batches cross from the workers as in any ``DataLoader`` (each in its own shared-memory segment). A reusable
shared-memory batch ring used to carry them instead; it was removed because a plain DataLoader already feeds
the fastest method. Measured on 2026-12-01 in one run (``benchmarks/results/data_throughput_ring_vs_plain.json``)
on the 2-core development machine, page-cached 107,520-image file, 64x64x3, batch 64:

==========================  =========  ===========================
path                        images/s   training-process CPU/batch
==========================  =========  ===========================
in process (0 workers)        163,144  0.36 ms
plain DataLoader, 2 workers    22,795  1.11 ms
ring, 2 workers                87,571  0.20 ms
==========================  =========  ===========================

The demand of the fastest method (AE/QLAE, batch 64) on one GPU: the project targets a Tripod step of
<= 15 ms on an H100/H200-class GPU and a QLAE/AE step is ~4.4x less arithmetic (0.57 vs ~2.5 TFLOP), so
64 / (15 ms / 4.4) ~ 18.8k images/s; the paper's own profile (0.040 s per QLAE step) means 1.6k images/s.
The plain path with 2 workers on 2 shared cores covers the first with a thin margin (1.2x; 30,687 images/s
and 0.59 ms per batch in a later run of this code, ``data_throughput.json``) and the second 14x; GPU nodes
have >= 8 cores per GPU. Its cost is in the training process: 0.6-1.1 ms of CPU per batch to receive it,
against ~3.4 ms per step at the target (with no workers, reading costs that process ~0.4 ms per batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from torch.utils.data import DataLoader

from tripod_pl.data.stream import Batch, TrainStream


@dataclass
class StreamPosition:
    """Epoch, and batches of that epoch already consumed on this rank."""

    epoch: int = 0
    consumed: int = 0


class StateOwner(Protocol):
    """Who holds a loader's resumable state (``HDF5DataModule``)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


def no_collate(batch: Any) -> Any:
    """The ``collate_fn`` of datasets that yield whole batches: returns ``batch`` as it is."""
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
        owner: StateOwner | None = None,
    ) -> None:
        extra: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if num_workers else {}
        super().__init__(
            stream, batch_size=None, num_workers=num_workers, collate_fn=no_collate, pin_memory=pin_memory, **extra
        )
        self.stream = stream
        self.position = position
        self.count_yields = count_yields
        self.owner = owner

    def state_dict(self) -> dict[str, Any]:
        """The position in the training order (the owner's state when there is one)."""
        if self.owner is not None:
            return self.owner.state_dict()
        return {"epoch": self.position.epoch, "batches_consumed": self.position.consumed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue right after the last consumed batch of ``state_dict``."""
        if self.owner is not None:
            self.owner.load_state_dict(state_dict)
            return
        self.position.epoch = int(state_dict["epoch"])
        self.position.consumed = int(state_dict["batches_consumed"])

    def _start(self) -> None:
        pos, total = self.position, len(self.stream)
        if pos.consumed >= total:
            pos.epoch, pos.consumed = pos.epoch + 1, 0
        self.stream.set_position(pos.epoch, pos.consumed)

    def __iter__(self) -> Iterator[Batch]:  # type: ignore[override]
        self._start()
        return self._deliver(super().__iter__())

    def _deliver(self, batches: Iterator[Batch]) -> Iterator[Batch]:
        for batch in batches:
            if self.count_yields:
                self.position.consumed += 1
            yield batch
