"""Batch statistics across data-parallel ranks.

KLM, beta-TC and the stds ``s`` of KLM/NHP are statistics of the *batch*. Under DDP with N ranks each rank
sees b/N samples; ``batch_stats="global"`` all-gathers the latents (with gradients) so that N GPUs x b/N
compute the same loss and gradients as 1 GPU x b, ``"local"`` keeps each rank's own b/N samples (cheaper,
but a different estimator: a VAE on 2 GPUs x 128 then does not match 1 GPU x 256).

The gradient bookkeeping: each rank's loss uses its own rows as queries and the gathered rows as keys;
the all-gather's backward sums the key gradients across ranks, and DDP's gradient averaging then yields
exactly the single-process gradient of the mean over the global batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor

BatchStats = Literal["global", "local"]

__all__ = ["BatchStats", "gather_batch", "rank_slice", "world"]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_batch(t: Tensor, batch_stats: BatchStats = "global") -> Tensor:
    """Concatenate ``t`` (b x ...) over ranks along dim 0, differentiably; identity for one process or
    ``batch_stats="local"``. Every rank must pass the same batch size."""
    if batch_stats not in ("global", "local"):
        raise ValueError(f"batch_stats must be 'global' or 'local', got {batch_stats!r}")
    _, size = world()
    if batch_stats == "local" or size == 1:
        return t
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t.contiguous()), dim=0)


def rank_slice(t_global: Tensor, b_local: int, batch_stats: BatchStats = "global") -> slice:
    """Rows of this rank inside a tensor built by :func:`gather_batch`."""
    rank, size = world()
    if batch_stats == "local" or size == 1:
        return slice(0, t_global.shape[0])
    return slice(rank * b_local, (rank + 1) * b_local)
