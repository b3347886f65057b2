"""Modularity and explicitness (Ridgeway & Mozer, NeurIPS 2018, "Learning Deep Disentangled Embeddings With
the F-Statistic Loss"), as disentanglement_lib computes them (docs/evaluation.md, "Modularity and explicitness").

Modularity, from the plug-in MI m_jk between histogram-discretized latent z_j (`num_bins` bins, as for
:func:`~tripod_pl.metrics.mig.mig`) and source s_k, over all n_z latents:

    delta_j = (sum_k m_jk^2 - max_k m_jk^2) / (max_k m_jk^2 (K - 1)),   modularity = mean_j (1 - delta_j),

with 1 - delta_j = 0 for a latent that carries no information (max_k m_jk = 0).

Explicitness: per source, a logistic regression (scikit-learn's defaults: multinomial, L2 penalty with
C = 1) predicts s_k from all latents, standardized with the training part's mean and standard deviation;
its score is the ROC AUC of each value's predicted probability against the rest, averaged over the values
present in the test part; explicitness is the mean over sources. The fit and the AUC run on the device
(:mod:`tripod_pl.metrics.l2_logistic`); the training / test split is sklearn's
`train_test_split(test_size=test_size, random_state=seed)` (disentanglement_lib draws 10,000 training and
5,000 test samples: `test_size=1/3`). Sources with a single value are left out of both scores. Example::

    modularity(sources, latents)  # {"modularity": ..., "explicitness": ...}
"""

from __future__ import annotations

import numpy as np
import torch

from tripod_pl.metrics import _common as common
from tripod_pl.metrics._accumulate import LatentSourceMetric
from tripod_pl.metrics.l2_logistic import fit_l2_logistic, macro_ovr_auc
from tripod_pl.metrics.mig import mutual_information

__all__ = ["Modularity", "modularity", "modularity_score"]


def modularity_score(mi: np.ndarray) -> float:
    """Ridgeway & Mozer's modularity from the MI matrix `mi` (K x n_z) of the sources that vary."""
    sq = np.square(mi.T)  # n_z x K
    k = sq.shape[1]
    top = sq.max(1, initial=0.0)
    if k <= 1:  # one source: every informative latent is modular
        return float(np.mean(top > 0))
    delta = common.safe_ratio(sq.sum(1) - top, top * (k - 1), 1.0)
    return float(np.mean(np.where(top > 0, 1.0 - delta, 0.0)))


def modularity(
    sources: common.ArrayLike,
    latents: common.ArrayLike,
    num_bins: int = 20,
    *,
    test_size: float = 1 / 3,
    seed: int = 0,
    c_reg: float = 1.0,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Modularity and (test) explicitness of `latents` (N x n_z) for `sources` (N x K integer indices).

    `num_bins` discretizes the latents for the MI (modularity); `test_size` and `seed` make the split of the
    explicitness classifiers, `c_reg` is their inverse L2 strength (sklearn's `C`). Computed on the device of
    the inputs (or `device`). Returns `{"modularity", "explicitness"}` as floats (0 and 0.5, chance, when no
    source has two values).
    """
    mi, _, valid = mutual_information(sources, latents, num_bins, device)
    result = {"modularity": modularity_score(mi[valid]), "explicitness": 0.5}
    if not valid.any():
        return result
    with common.metric_inputs(sources, latents, device) as (s, z, _):
        s_codes, s_n = common.label_codes(s)
        keep = torch.as_tensor(np.flatnonzero(valid), device=z.device)
        s_codes, s_n = s_codes[:, keep], s_n[keep]
        train, test = (torch.as_tensor(i, device=z.device) for i in common.train_test_indices(len(z), test_size, seed))
        mean = z[train].mean(0)
        std = z[train].std(0, correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        z = (z - mean) / std
        fit = fit_l2_logistic(z[train], s_codes[train], s_n, c_reg=c_reg)
        log_proba = fit.log_proba(z[test])
        aucs = [macro_ovr_auc(log_proba[:, i], s_codes[test, i], int(s_n[i])) for i in range(len(keep))]
    result["explicitness"] = float(np.nanmean(aucs)) if not np.isnan(aucs).all() else 0.5
    return result


class Modularity(LatentSourceMetric):
    """:func:`modularity` as a `torchmetrics.Metric`: `update(latents, sources)` per batch, `compute()` ->
    `{"modularity", "explicitness"}` over everything accumulated (on every DDP rank)."""

    def __init__(self, num_bins: int = 20, test_size: float = 1 / 3, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_bins = num_bins
        self.test_size = test_size
        self.seed = seed

    def _score(self, sources: torch.Tensor, latents: torch.Tensor) -> dict[str, float]:
        return modularity(sources, latents, self.num_bins, test_size=self.test_size, seed=self.seed)
