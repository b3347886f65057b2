"""InfoMEC and DCI as ``torchmetrics.Metric`` classes, for the evaluation callback and any Lightning project.

``update(latents, sources)`` appends a batch (B x n_z latents, B x K integer sources) to two list states on
the metric's device, reduced with ``dist_reduce_fx="cat"``, so torchmetrics gathers every DDP rank's samples
before ``compute()``; ``compute()`` scores the whole set with the functional form
(:func:`tripod_pl.metrics.infomec`, :func:`tripod_pl.metrics.dci`) and returns the same dict. Both scores
need every sample at once (histograms, kNN distances, forests): there is no running sum to keep.

Example::

    metric = InfoMEC(discrete=True)
    for images, sources in loader:
        metric.update(model.encode(images), sources)
    metric.compute()["infom"]
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.utilities.data import dim_zero_cat

from tripod_pl.metrics._accumulate import LatentSourceMetric
from tripod_pl.metrics.dci import dci
from tripod_pl.metrics.infomec import INFOE_PROTOCOLS, infomec

__all__ = ["DCI", "InfoMEC"]


class _Gathered(LatentSourceMetric):
    """:class:`LatentSourceMetric` whose ``compute()`` also takes the states as torchmetrics leaves them after a
    DDP sync (one concatenated tensor instead of a list)."""

    def compute(self) -> dict:
        if len(self.latents) == 0:
            raise ValueError(f"{type(self).__name__}.compute() called before any update()")
        return self._score(dim_zero_cat(self.sources), dim_zero_cat(self.latents))


def _check_backend(backend: str) -> None:
    if backend not in ("torch", "sklearn"):
        raise ValueError(f"unknown backend {backend!r}; use 'torch' or 'sklearn'")


class InfoMEC(_Gathered):
    """InfoM, InfoC, InfoE, the NMI matrix and the active latents (:func:`tripod_pl.metrics.infomec`).

    Args:
        discrete: the latents are quantized (histogram MI) rather than continuous (kNN MI).
        backend: ``"torch"`` (on the metric's device) or ``"sklearn"``.
        n_neighbors: k of the kNN MI estimator (continuous latents).
        seed: the kNN estimator's tie-breaking noise.
        infoe_protocol: ``"paper"`` or ``"converged"``.
        kwargs: ``torchmetrics.Metric`` options (``compute_on_cpu``, ``sync_on_compute``, ...).
    """

    def __init__(
        self,
        discrete: bool = True,
        backend: str = "torch",
        n_neighbors: int = 10,
        seed: int = 0,
        infoe_protocol: str = "paper",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_backend(backend)
        if infoe_protocol not in INFOE_PROTOCOLS:
            raise ValueError(f"infoe_protocol must be one of {INFOE_PROTOCOLS}, got {infoe_protocol!r}")
        self.discrete, self.backend, self.n_neighbors = bool(discrete), backend, int(n_neighbors)
        self.seed, self.infoe_protocol = int(seed), infoe_protocol

    def _score(self, sources: torch.Tensor, latents: torch.Tensor) -> dict:
        return infomec(
            sources,
            latents,
            self.discrete,
            self.backend,
            n_neighbors=self.n_neighbors,
            seed=self.seed,
            infoe_protocol=self.infoe_protocol,
        )


class DCI(_Gathered):
    """D, C, I and the importance matrix (:func:`tripod_pl.metrics.dci`): random forests, 90/10 split.

    Args:
        backend: ``"torch"`` (forests on the metric's device) or ``"sklearn"``.
        n_estimators: trees per forest.
        max_depth: depth limit of the trees.
        test_size: share of the samples held out for the informativeness.
        seed: the split and the forests.
        kwargs: ``torchmetrics.Metric`` options.
    """

    def __init__(
        self,
        backend: str = "torch",
        n_estimators: int = 100,
        max_depth: int = 10,
        test_size: float = 0.1,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_backend(backend)
        self.backend, self.n_estimators, self.max_depth = backend, int(n_estimators), int(max_depth)
        self.test_size, self.seed = float(test_size), int(seed)

    def _score(self, sources: torch.Tensor, latents: torch.Tensor) -> dict:
        return dci(
            sources,
            latents,
            self.backend,
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            test_size=self.test_size,
            seed=self.seed,
        )
