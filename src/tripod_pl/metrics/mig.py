"""MIG, the mutual information gap (Chen et al., NeurIPS 2018, "Isolating Sources of Disentanglement in
Variational Autoencoders"), as disentanglement_lib computes it (docs/evaluation.md, "MIG").

Each latent z_j is discretized by a histogram of `num_bins` equal-width bins spanning its range (NumPy's
`histogram` edges, then `digitize` on all edges but the last, so the maximum falls in the last bin). With the
plug-in mutual information I(s_k; z_j) of the discretized latents and the plug-in entropy H(s_k),

    MIG = mean_k (I(s_k; z_(1)) - I(s_k; z_(2))) / H(s_k),

z_(1), z_(2) the latents with the largest and second largest information about s_k. Sources with a single
value (H = 0) are left out. Example::

    mig(sources, latents)["mig"]  # sources N x K integer indices, latents N x n_z
"""

from __future__ import annotations

import numpy as np
import torch

from tripod_pl.metrics import _common as common
from tripod_pl.metrics._accumulate import LatentSourceMetric
from tripod_pl.metrics.mutual_info import histogram_mi, plugin_entropy

__all__ = ["MIG", "histogram_codes", "mig"]


def histogram_codes(latents: torch.Tensor, num_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column, the histogram bin of every value (disentanglement_lib's `histogram_discretizer`), as label
    codes: returns `codes` (N x n_z int64) and `n_codes` (n_z,), as :func:`~tripod_pl.metrics._common.label_codes`.

    Bin edges are `min + k * ((max - min) / num_bins)` in float64 (NumPy's `linspace`, so a value on an edge
    goes to the same bin as NumPy puts it), widened to `value -/+ 0.5` for a constant column.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be at least 1, got {num_bins}")
    z = latents.double()
    lo, hi = z.amin(0), z.amax(0)
    same = lo == hi
    lo, hi = torch.where(same, lo - 0.5, lo), torch.where(same, hi + 0.5, hi)
    steps = torch.arange(num_bins, dtype=torch.float64, device=z.device)
    edges = steps[:, None] * ((hi - lo) / num_bins)[None, :] + lo[None, :]  # num_bins x n_z, last edge dropped
    bins = torch.searchsorted(edges.T.contiguous(), z.T.contiguous(), right=True).T
    return common.label_codes(bins)


def mutual_information(
    sources: common.ArrayLike, latents: common.ArrayLike, num_bins: int, device: str | torch.device | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plug-in MI matrix (K x n_z, nats) of the sources and the histogram-discretized latents, the sources'
    entropies (K,) and which sources have at least two values, computed on the inputs' device."""
    with common.metric_inputs(sources, latents, device) as (s, z, _):
        s_codes, s_n = common.label_codes(s)
        z_codes, z_n = histogram_codes(z, num_bins)
        mi = histogram_mi(s_codes, s_n, z_codes, z_n).cpu().numpy()
        entropy = plugin_entropy(s_codes, s_n).cpu().numpy()
    return mi, entropy, common.valid_sources(s_n.cpu().numpy())


def mig(
    sources: common.ArrayLike,
    latents: common.ArrayLike,
    num_bins: int = 20,
    *,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """The mutual information gap of `latents` (N x n_z, n_z >= 2) for `sources` (N x K integer indices).

    Computed on the device of the inputs (or `device`). `num_bins` is disentanglement_lib's default (its
    study's `discretizer.num_bins = 20`). Returns `{"mig": float}`; 0 when no source has two values.
    """
    mi, entropy, valid = mutual_information(sources, latents, num_bins, device)
    if mi.shape[1] < 2:
        raise ValueError(f"MIG needs at least two latents, got {mi.shape[1]}")
    if not valid.any():
        return {"mig": 0.0}
    top = -np.sort(-mi[valid], axis=1)
    return {"mig": float(np.mean((top[:, 0] - top[:, 1]) / entropy[valid]))}


class MIG(LatentSourceMetric):
    """:func:`mig` as a `torchmetrics.Metric`: `update(latents, sources)` per batch, `compute()` ->
    `{"mig": ...}` over everything accumulated (on every DDP rank)."""

    def __init__(self, num_bins: int = 20, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_bins = num_bins

    def _score(self, sources: torch.Tensor, latents: torch.Tensor) -> dict[str, float]:
        return mig(sources, latents, self.num_bins)
