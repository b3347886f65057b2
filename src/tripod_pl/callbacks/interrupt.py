"""Save a resumable ``last.ckpt`` when training is interrupted (SIGTERM, Ctrl-C).

Lightning 2.6 already turns SIGTERM into a graceful stop: its signal connector sets
``trainer.received_sigterm`` and the training loop raises ``SIGTERMException`` after the current batch (on all
DDP ranks: the flag is broadcast). Ctrl-C arrives as ``KeyboardInterrupt``. Both reach the callbacks'
``on_exception`` hook, where this callback writes the full training state (weights, optimizer, loop counters,
data position, RNG states) to ``last.ckpt`` in the run's checkpoint directory, so that
``tripod-train fit ... --ckpt_path last`` (or an explicit path) resumes. SLURM's SIGUSR1 (requeue with an
"hpc" checkpoint) stays with Lightning's ``SLURMEnvironment``; nothing of that is re-implemented here.

The file goes to the run's checkpoint folder (:func:`~tripod_pl.callbacks.checkpoint_files.checkpoint_dir`) and is
written atomically (:func:`~tripod_pl.callbacks.checkpoint_files.save_checkpoint_atomically`), so a reader never
sees a truncated ``last.ckpt``, even if the process is killed while writing.
"""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from tripod_pl.callbacks.checkpoint_files import checkpoint_dir, save_checkpoint_atomically

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
        path = checkpoint_dir(trainer) / self.filename
        save_checkpoint_atomically(trainer, path)
        if trainer.is_global_zero:
            self.saved_path = str(path)
            log.warning("interrupted at step %d: saved %s", trainer.global_step, path)
