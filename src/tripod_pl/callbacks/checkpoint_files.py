"""Where checkpoints go, and how they are written: one rule for every callback and the CLI.

- :func:`checkpoint_dir`: the first ``ModelCheckpoint``'s ``dirpath`` when it has one (Lightning resolves it
  during setup), else ``<default_root_dir>/checkpoints``. The CLI gives every checkpoint callback without a
  ``dirpath`` that default, so an interrupted run and its resumption (``fit --ckpt_path last``) share it.
- :func:`save_checkpoint_atomically`: every rank takes part in the save (strategies may gather state), rank 0
  writes a temporary file and renames it onto the target (:mod:`tripod_pl.io`), so a reader never sees a
  truncated checkpoint, even when the process dies while writing.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from tripod_pl.io import publish, temporary_path

__all__ = ["checkpoint_dir", "default_checkpoint_dir", "save_checkpoint_atomically"]


def default_checkpoint_dir(trainer: L.Trainer) -> Path:
    """``<default_root_dir>/checkpoints``."""
    return Path(trainer.default_root_dir) / "checkpoints"


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """The run's checkpoint folder: the first ``ModelCheckpoint``'s ``dirpath``, else the default."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath)
    return default_checkpoint_dir(trainer)


def save_checkpoint_atomically(trainer: L.Trainer, path: str | os.PathLike[str]) -> None:
    """``trainer.save_checkpoint(path)``, written to a temporary name and renamed by global rank 0.

    Collective: every rank must call it. Remote paths (``s3://...``) are saved directly: object stores have no
    rename, and their uploads are whole-object anyway.
    """
    if "://" in str(path):
        trainer.save_checkpoint(str(path))
        return
    path = Path(path)
    if trainer.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    trainer.save_checkpoint(tmp)  # rank 0 writes, the others take part
    if trainer.is_global_zero:
        publish(tmp, path)
    trainer.strategy.barrier("save_checkpoint_atomically")
