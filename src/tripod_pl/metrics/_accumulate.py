"""The torchmetrics base of the metrics that need every sample at once (MIG, SAP, modularity).

`update(latents, sources)` appends the batch to two list states reduced with `dist_reduce_fx="cat"`: they
stay on the metric's device, and torchmetrics gathers them from every DDP rank before `compute()`, which
concatenates them and calls the functional form on the whole set.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat


class LatentSourceMetric(Metric):
    """Accumulates `latents` (B x n_z) and `sources` (B x K integer indices); subclasses implement `_score`."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("latents", default=[], dist_reduce_fx="cat")
        self.add_state("sources", default=[], dist_reduce_fx="cat")

    def update(self, latents: torch.Tensor, sources: torch.Tensor) -> None:
        latents = torch.as_tensor(latents)
        sources = torch.as_tensor(sources)
        if latents.ndim == 1:
            latents = latents[:, None]
        if sources.ndim == 1:
            sources = sources[:, None]
        if latents.ndim != 2 or sources.ndim != 2 or latents.shape[0] != sources.shape[0]:
            raise ValueError(
                f"update expects latents B x n_z and sources B x K with the same B, got {tuple(latents.shape)} "
                f"and {tuple(sources.shape)}"
            )
        self.latents.append(latents.detach().to(self.device))
        self.sources.append(sources.detach().to(self.device))

    def compute(self) -> dict[str, float]:
        # a list of batches on one process; one tensor once a DDP sync has concatenated every rank's states
        if isinstance(self.latents, list) and not self.latents:
            raise ValueError(f"{type(self).__name__}.compute() called before any update()")
        return self._score(dim_zero_cat(self.sources), dim_zero_cat(self.latents))

    def _score(self, sources: torch.Tensor, latents: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError
