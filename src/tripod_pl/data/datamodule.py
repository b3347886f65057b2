"""``HDF5DataModule``: training from one file in the layout of ``layout.py``, at scale (docs/data.md).

- Training streams whole batches in the order of ``plan.py``: contiguous chunk-aligned reads, a seeded
  window shuffle that changes every epoch, equal batch counts on every DDP rank, one lazily opened file
  handle per worker (or the whole file in shared RAM with ``in_memory``).
- A held-out validation split of random runs of rows (files are in factorial order: not the tail), served in
  a fixed seeded random order, so ``limit_val_batches`` reads a sample of it; test = validation; predict =
  every image in file order.
- ``eval_subset()``: a fixed, seeded subset of the file with its sources, for the metrics callbacks.
- Batches travel as uint8 ``{"image": B x H x W x 3, "sources": B x K}``; ``on_after_batch_transfer``
  turns ``image`` into float32 ``B x 3 x H x W`` in [-1, 1] on the device.
- ``state_dict`` / ``load_state_dict`` hold ``(epoch, batches consumed)``: Lightning saves them in
  checkpoints, and a resumed run receives exactly the batches an uninterrupted one would have. The order is
  a function of ``(seed, world_size, rank, num_workers, batch_size)`` and of the number of batches consumed;
  one data epoch is one pass over the training split, whatever the trainer calls an epoch. The training
  loader exposes the same state (Lightning then knows it resumes mid-epoch); Lightning restores it twice, as
  the data module's and as the loader's, and the second, identical, restore is skipped.

::

    dm = HDF5DataModule("data/procedural.h5", batch_size=64, generate_if_missing=True)
    dm.num_sources, dm.dataset_size
    trainer.fit(model, datamodule=dm)
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from tripod_pl.data.layout import DatasetError, DatasetInfo, image_chunk_rows, read_info
from tripod_pl.data.loader import StreamPosition, TrainLoader, no_collate
from tripod_pl.data.plan import PlanConfig, TrainPlan, validation_mask
from tripod_pl.data.prepare import DEFAULT_FACTORS, generate_procedural
from tripod_pl.data.rows import HDF5Rows, MemoryRows, RowSource
from tripod_pl.data.stream import FixedBatches, TrainStream
from tripod_pl.data.transforms import to_float_images

_EVAL_KEY = 0xE7A1
#: keys the order of the validation rows (a stream of its own: the split and the training order do not move)
_VAL_ORDER_KEY = 0x0A1D

#: ``generate_if_missing`` writes the procedural dataset only to a file whose name contains this
PROCEDURAL_NAME = "procedural"


def generate_missing_procedural(path: str) -> None:
    """Write the default procedural dataset to ``path``, which does not exist; its name must say procedural.

    Any other name is a mistyped or not yet converted dataset: writing 43,200 procedural scenes under it would
    hide the mistake, so that is a :class:`DatasetError` instead.
    """
    if PROCEDURAL_NAME not in Path(path).name.lower():
        raise DatasetError(
            path,
            f"no such file; generate_if_missing writes the procedural dataset only to a file named "
            f"*{PROCEDURAL_NAME}*.h5 (benchmarks: tripod-data convert)",
        )
    images = math.prod(DEFAULT_FACTORS.values())
    print(f"{path} does not exist: generating the procedural dataset ({images:,} 64x64 images) ...", flush=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # e.g. data/ in a fresh clone
    generate_procedural(path)


def default_block_rows(chunk_rows: int | None, minimum: int = 64) -> int:
    """Rows per read block: whole chunks, at least ``minimum`` rows."""
    if chunk_rows is None:
        return minimum
    return chunk_rows * -(-minimum // chunk_rows)


class HDF5DataModule(L.LightningDataModule):
    """Streams a dataset file to training, validation, test, prediction and the metrics.

    Args:
        path: the dataset file (``tripod-data generate`` / ``convert`` write one).
        batch_size: images per batch on each rank.
        num_workers: DataLoader worker processes per rank (each opens the file once).
        val_fraction: share of the images held out for validation (0 for none).
        seed: seeds the split, the evaluation subset and every epoch's order.
        in_memory: hold the whole file in RAM (shared by the workers of a rank, one copy per rank), for
            datasets that fit; then ``num_workers=0`` is the fastest on few CPU cores.
        generate_if_missing: write the default procedural dataset to ``path`` if there is no file (only to a
            name containing ``procedural``: any other missing file is an error, see
            :func:`generate_missing_procedural`).
        eval_size: images in the evaluation subset (at most the whole file).
        drop_last: drop the last incomplete batches of an epoch; otherwise pad by repeating a few images.
        val_batch_size: batch size of validation, test and predict (default ``batch_size``).
        shuffle_blocks: blocks of ``block_rows`` rows a worker shuffles together (its buffer holds
            ``shuffle_blocks * block_rows`` images: 48 MB for 64 x 64 of 64x64x3).
        block_rows: rows per contiguous read (default: whole HDF5 chunks, at least 64 rows).
        prefetch_factor: batches each worker prepares ahead.
        pin_memory: page-lock batches for faster host-to-GPU copies (default: yes; only with CUDA).
    """

    def __init__(
        self,
        path: str,
        batch_size: int = 64,
        num_workers: int = 2,
        val_fraction: float = 0.05,
        seed: int = 0,
        in_memory: bool = False,
        generate_if_missing: bool = False,
        eval_size: int = 10_000,
        drop_last: bool = True,
        val_batch_size: int | None = None,
        shuffle_blocks: int = 64,
        block_rows: int | None = None,
        prefetch_factor: int = 4,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        # Our own frame: Lightning's default keeps a reference cycle through its frame, which would hold the
        # caller's locals (DataLoaders with persistent workers) until a garbage collection.
        self.save_hyperparameters(frame=inspect.currentframe())
        if batch_size < 1 or num_workers < 0 or eval_size < 0:
            raise ValueError("batch_size must be positive, num_workers and eval_size non-negative")
        self.path = os.fspath(path)
        if generate_if_missing and not Path(self.path).exists():
            generate_missing_procedural(self.path)
        self.info: DatasetInfo = read_info(self.path)
        self.block_rows = block_rows or default_block_rows(image_chunk_rows(self.path))
        self._val_mask = validation_mask(self.info.num_images, val_fraction, seed)
        self.dataset_size = int(self.info.num_images - self._val_mask.sum())
        self._position = StreamPosition()
        self._loaded_plan: dict[str, int] | None = None
        self._restored: dict[str, Any] | None = None  # restored, no training batch consumed since
        self._plan_key: dict[str, int] | None = None
        self._memory: MemoryRows | None = None
        self._eval: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- what the rest of the code reads -----------------------------------------------------------------
    @property
    def num_sources(self) -> int:
        """K, the number of sources; ``n_z`` defaults to ``2 * num_sources``."""
        return self.info.num_sources

    @property
    def source_names(self) -> list[str]:
        return list(self.info.source_names)

    @property
    def source_sizes(self) -> list[int]:
        return list(self.info.source_sizes)

    # -- loaders -------------------------------------------------------------------------------------------
    def _rows(self) -> RowSource:
        if not self.hparams.in_memory:
            return HDF5Rows(self.path)
        if self._memory is None:
            self._memory = MemoryRows.load(self.path)
        return self._memory

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return int(self.trainer.global_rank), int(self.trainer.world_size)

    def _pin_memory(self) -> bool:
        wanted = True if self.hparams.pin_memory is None else bool(self.hparams.pin_memory)
        return wanted and torch.cuda.is_available()

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.hparams.num_workers
        kwargs: dict[str, Any] = {"num_workers": workers, "pin_memory": self._pin_memory(), "collate_fn": no_collate}
        if workers > 0:
            kwargs.update(persistent_workers=True, prefetch_factor=self.hparams.prefetch_factor)
        return kwargs

    def train_plan(self, rank: int = 0, world_size: int = 1) -> TrainPlan:
        """The training order of ``rank`` of ``world_size`` (see ``plan.py``)."""
        hp = self.hparams
        config = PlanConfig(hp.batch_size, self.block_rows, hp.shuffle_blocks, hp.seed, hp.drop_last)
        return TrainPlan(~self._val_mask, config, rank, world_size)

    def training_loader(self, rank: int = 0, world_size: int = 1) -> TrainLoader:
        """The training loader of ``rank`` of ``world_size`` (``train_dataloader`` asks the trainer which)."""
        plan = self.train_plan(rank, world_size)
        stream = TrainStream(self._rows(), plan, self.info.image_shape, self.num_sources)
        self._plan_key = self._key(world_size, plan.num_batches)
        self._reconcile()
        return TrainLoader(
            stream,
            self._position,
            count_yields=self.trainer is None,
            num_workers=self.hparams.num_workers,
            pin_memory=self._pin_memory(),
            prefetch_factor=self.hparams.prefetch_factor,
            owner=self,
        )

    def train_dataloader(self) -> TrainLoader:
        return self.training_loader(*self._rank_world())

    def _fixed_loader(self, row_ids: np.ndarray, pad: bool, shuffled: bool = False) -> DataLoader:
        rank, world = self._rank_world()
        dataset = FixedBatches(
            self._rows(),
            row_ids,
            self.hparams.val_batch_size or self.hparams.batch_size,
            self.info.image_shape,
            self.num_sources,
            rank,
            world,
            pad=pad,
            block_rows=self.block_rows,
            order_seed=[self.hparams.seed, _VAL_ORDER_KEY] if shuffled else None,
        )
        return DataLoader(dataset, batch_size=None, **self._loader_kwargs())

    def val_rows(self) -> np.ndarray:
        """Sorted rows of the held-out validation split."""
        return np.flatnonzero(self._val_mask)

    def val_dataloader(self) -> DataLoader | list:
        rows = self.val_rows()
        # in a seeded random order: the first batches (limit_val_batches) are a sample of the whole split
        return self._fixed_loader(rows, pad=True, shuffled=True) if len(rows) else []

    def test_dataloader(self) -> DataLoader | list:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self._fixed_loader(np.arange(self.info.num_images), pad=False)

    # -- the metrics' subset -------------------------------------------------------------------------------
    def eval_rows(self) -> np.ndarray:
        """Sorted rows of the evaluation subset: ``min(eval_size, N)`` distinct rows, seeded by ``seed``."""
        n = self.info.num_images
        rng = np.random.default_rng([self.hparams.seed, _EVAL_KEY])
        return np.sort(rng.choice(n, size=min(self.hparams.eval_size, n), replace=False))

    def eval_subset(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation subset: uint8 images ``N x H x W x 3`` and int64 sources ``N x K`` (cached)."""
        if self._eval is None:
            rows = self._rows()
            images, sources = rows.read_rows(self.eval_rows(), self.block_rows)
            if isinstance(rows, HDF5Rows):
                rows.close()
            self._eval = torch.from_numpy(images), torch.from_numpy(sources.astype(np.int64))
        return self._eval

    # -- device side ---------------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Counts the training batches the loop takes; converts ``image`` to float in [-1, 1] on the device."""
        if self.trainer is not None and self.trainer.training:
            self._position.consumed += 1
            self._restored = None
        if isinstance(batch, dict) and isinstance(batch.get("image"), torch.Tensor):
            if batch["image"].dtype == torch.uint8:
                batch = {**batch, "image": to_float_images(batch["image"])}
        return batch

    # -- exact resume --------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """The next training iteration runs data epoch ``epoch`` from its first batch."""
        self._position.epoch, self._position.consumed = int(epoch), 0

    def _key(self, world_size: int, num_batches: int) -> dict[str, int]:
        """Everything the order of a rank's batches depends on, besides the rank."""
        hp = self.hparams
        return {
            "seed": hp.seed,
            "world_size": world_size,
            "num_workers": max(1, hp.num_workers),
            "batch_size": hp.batch_size,
            "block_rows": self.block_rows,
            "shuffle_blocks": hp.shuffle_blocks,
            "drop_last": int(hp.drop_last),
            "num_train": self.dataset_size,
            "num_batches": num_batches,
        }

    def state_dict(self) -> dict[str, Any]:
        """The data order position of this rank: epoch and batches of it consumed (+ what the order depends on)."""
        state: dict[str, Any] = {"epoch": self._position.epoch, "batches_consumed": self._position.consumed}
        if self._plan_key is not None:
            state["plan"] = dict(self._plan_key)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the position; the next training iteration continues right after the last consumed batch."""
        if self._restored is not None and self._restored == state_dict:
            return  # the same state again (Lightning restores it as the data module's and as the loader's)
        self._restored = dict(state_dict)
        self._position.epoch = int(state_dict["epoch"])
        self._position.consumed = int(state_dict["batches_consumed"])
        self._loaded_plan = state_dict.get("plan")
        if self._plan_key is not None:
            self._reconcile()

    def _reconcile(self) -> None:
        """A position saved under another order (world size, workers, batch size...) can't be continued."""
        if self._loaded_plan is not None and self._loaded_plan != self._plan_key:
            warnings.warn(
                f"the data order was saved for {self._loaded_plan} but this run has {self._plan_key}; "
                f"epoch {self._position.epoch} restarts from its first batch",
                stacklevel=3,
            )
            self._position.consumed = 0
        self._loaded_plan = None
