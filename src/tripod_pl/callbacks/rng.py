"""Exact resume: every rank's random-number-generator states travel in the checkpoint.

Lightning restores the weights, the optimizer and the loop counters; the data order position is restored
by the DataModule's ``state_dict``. What is left is randomness drawn *during* training (the NHP draws, the
VAE's reparameterisation noise): this callback saves the Python, NumPy, torch (and CUDA) generator states of
every rank and puts them back on resume, so an interrupted-and-resumed run continues with the same draws.
The states are applied at the first training batch after the restore, because creating the DataLoader
iterator in between draws from the global generator.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states

__all__ = ["RNGStateCallback"]

KEY = "rng_states_per_rank"


def _portable(states: dict[str, Any]) -> dict[str, Any]:
    """The states with NumPy's key array as a tensor, so ``torch.load(weights_only=True)`` reads them."""
    out = dict(states)
    if "numpy" in out:
        kind, keys, pos, has_gauss, cached = out["numpy"]
        out["numpy"] = (
            kind,
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        )
    return out


def _native(states: dict[str, Any]) -> dict[str, Any]:
    out = dict(states)
    if "numpy" in out:
        kind, keys, pos, has_gauss, cached = out["numpy"]
        out["numpy"] = (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    return out


class RNGStateCallback(L.Callback):
    """Save and restore the random-number-generator states of all ranks with each checkpoint."""

    def __init__(self) -> None:
        self._pending: dict | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        states: Any = _portable(_collect_rng_states())
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, states)
            checkpoint[KEY] = gathered
        else:
            checkpoint[KEY] = [states]

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        saved = checkpoint.get(KEY)
        if saved and trainer.global_rank < len(saved):
            self._pending = saved[trainer.global_rank]

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is not None:
            _set_rng_states(_native(self._pending))
            self._pending = None
