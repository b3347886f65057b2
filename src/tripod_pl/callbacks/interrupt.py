"""Save a resumable ``last.ckpt`` when training is interrupted (SIGTERM, Ctrl-C).

Lightning 2.6 already turns SIGTERM into a graceful stop: its signal connector sets
``trainer.received_sigterm`` and the training loop raises ``SIGTERMException`` after the current batch (on all
DDP ranks: the flag is broadcast). Ctrl-C arrives as ``KeyboardInterrupt``. Both reach the callbacks'
``on_exception`` hook, where this callback writes the full training state (weights, optimizer, loop counters,
data position, RNG states) to ``last.ckpt`` in the run's checkpoint directory, so that
``tripod-train fit ... --ckpt_path last`` (or an explicit path) resumes. SLURM's SIGUSR1 (requeue with an
"hpc" checkpoint) stays with Lightning's ``SLURMEnvironment``; nothing of that is re-implemented here.

The file is written to a temporary name in the same directory and moved into place with ``os.replace``, so a
reader never sees a truncated ``last.ckpt``, even if the process is killed while writing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["InterruptCheckpoint"]

log = logging.getLogger(__name__)


class InterruptCheckpoint(L.Callback):
    """On SIGTERM or Ctrl-C during ``fit``, atomically save ``<checkpoint dir>/<filename>``.

    Args:
        enabled: turn it off without removing it from a config.
        filename: name of the checkpoint file (``last.ckpt`` is what ``--ckpt_path last`` looks for).
    """

    def __init__(self, enabled: bool = True, filename: str = "last.ckpt") -> None:
        self.enabled = enabled
        self.filename = filename
        self.saved_path: str | None = None

    @staticmethod
    def checkpoint_dir(trainer: L.Trainer) -> Path:
        """The first ModelCheckpoint's directory, else ``<log dir or default_root_dir>/checkpoints``."""
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath:
                return Path(cb.dirpath)
        base = trainer.log_dir if trainer.loggers else None
        return Path(base or trainer.default_root_dir) / "checkpoints"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not self.enabled or not trainer.training:
            return
        sigterm = isinstance(exception, SIGTERMException) or trainer.received_sigterm
        if not (sigterm or isinstance(exception, KeyboardInterrupt)):
            return
        if isinstance(exception, KeyboardInterrupt) and trainer.world_size > 1:
            # a Ctrl-C reaches the ranks at different points: a collective save could hang
            log.warning("InterruptCheckpoint: Ctrl-C with %d ranks, not saving", trainer.world_size)
            return
        directory = self.checkpoint_dir(trainer)
        path = directory / self.filename
        tmp = directory / f".{self.filename}.{os.getpid()}.tmp"
        if trainer.is_global_zero:
            directory.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(str(tmp))  # collective: every rank takes part, rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, path)
            self.saved_path = str(path)
            log.warning("interrupted at step %d: saved %s", trainer.global_step, path)
        trainer.strategy.barrier("interrupt_checkpoint")
