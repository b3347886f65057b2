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

__all__ = ["BatchStats", "gather_batch", "world"]


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_batch(t: Tensor, batch_stats: BatchStats = "global") -> tuple[Tensor, slice]:
    """``(t concatenated over ranks along dim 0, this rank's rows in it)``, differentiably.

    Identity (all rows are this rank's) for one process or ``batch_stats="local"``. Ranks may hold different
    numbers of rows (e.g. the last validation batch): sizes are exchanged first and the rows padded for the
    gather, then trimmed.
    """
    if batch_stats not in ("global", "local"):
        raise ValueError(f"batch_stats must be 'global' or 'local', got {batch_stats!r}")
    rank, size = world()
    if batch_stats == "local" or size == 1:
        return t, slice(0, t.shape[0])
    from torch.distributed.nn.functional import all_gather

    count = torch.tensor([t.shape[0]], device=t.device)
    counts = [torch.zeros_like(count) for _ in range(size)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    longest = max(sizes)
    if t.shape[0] < longest:
        t = torch.cat([t, t.new_zeros((longest - t.shape[0], *t.shape[1:]))])
    parts = all_gather(t.contiguous())
    start = sum(sizes[:rank])
    return torch.cat([part[:n] for part, n in zip(parts, sizes)]), slice(start, start + sizes[rank])
