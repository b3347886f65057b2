"""InfoMEC: InfoM (modularity), InfoC (compactness), InfoE (explicitness) — see docs/evaluation.md.

From Hsu et al. (2023, "Disentanglement via Latent Quantization") as used by Tripod (Hsu et al., ICML 2024).
With sources s_1..s_K (discrete) and latents z_1..z_{n_z}:

- NMI_ij = I(s_i; z_j) / H(s_i): plug-in MI of the joint histogram for discrete latents; for continuous
  latents, standardized, the kNN estimator of Ross (2014) with k = 10 (`mutual_info.py`).
- active latents: inter-quartile range > 0.1 (discrete) or > max IQR / 10 (continuous).
- InfoM = (mean_{active j} max_i NMI_ij / sum_i NMI_ij - 1/K) / (1 - 1/K).
- InfoC = (mean_i max_{active j} NMI_ij / sum_{active j} NMI_ij - 1/L) / (1 - 1/L), L = #active.
- InfoE = mean_i (H_null - H_pred) / H_null, from an unpenalized multinomial logistic regression with
  balanced class weights from all latents (one-hot if discrete, standardized if continuous) to s_i
  (`logistic.py`), H_null = log(#values of s_i) (the same fit with no features predicts the uniform
  distribution). `infoe_protocol="paper"` (default, the Tripod authors' code): fitted as sklearn's defaults
  stop it (100 L-BFGS iterations, gradient tolerance 1e-4), H_pred the *unweighted* training log-loss.
  `infoe_protocol="converged"`: fitted to convergence, H_pred the balanced-weighted log-loss (the fit's own
  objective, so both classes of a skewed source count equally).

A model with no active latent scores 0 on all three. Sources with a single value carry no information and
are left out of the scores (their NMI row is 0). Example::

    scores = infomec(sources, latents, discrete=True)  # sources N x K ints, latents N x n_z
    scores["infom"], scores["infoc"], scores["infoe"], scores["nmi"], scores["active"]
"""

from __future__ import annotations

import numpy as np
import torch

from tripod_pl.metrics import _common as common
from tripod_pl.metrics.logistic import balanced_log_loss, dense_features, one_hot_features, paper_log_loss
from tripod_pl.metrics.mutual_info import histogram_mi, knn_mi, plugin_entropy

#: the InfoE protocols of :func:`infomec`
INFOE_PROTOCOLS = ("paper", "converged")


def infomec(
    sources: common.ArrayLike,
    latents: common.ArrayLike,
    discrete: bool,
    backend: str = "torch",
    *,
    n_neighbors: int = 10,
    seed: int = 0,
    device: str | torch.device | None = None,
    infoe_protocol: str = "paper",
) -> dict:
    """InfoM, InfoC, InfoE, the NMI matrix and the active latents of `latents` (N x n_z) for `sources`
    (N x K integer values).

    `backend="torch"` computes on the device of the inputs (or `device`); `backend="sklearn"` is the
    scikit-learn reference. `seed` fixes the tie-breaking noise of the kNN estimator. `infoe_protocol` is
    ``"paper"`` (the authors': iteration-limited fit, unweighted log-loss) or ``"converged"``. Returns
    `{"infom", "infoc", "infoe"}` as floats, `"nmi"` (K x n_z float64) and `"active"` (n_z bool) arrays.
    """
    if infoe_protocol not in INFOE_PROTOCOLS:
        raise ValueError(f"infoe_protocol must be one of {INFOE_PROTOCOLS}, got {infoe_protocol!r}")
    if backend == "sklearn":
        from tripod_pl.metrics import _sklearn

        return _sklearn.infomec(
            sources, latents, discrete, n_neighbors=n_neighbors, seed=seed, infoe_protocol=infoe_protocol
        )
    if backend != "torch":
        raise ValueError(f"unknown backend {backend!r}; use 'torch' or 'sklearn'")
    with common.metric_inputs(sources, latents, device) as (s, z, _):
        s_codes, s_n = common.label_codes(s)
        valid = common.valid_sources(s_n.cpu().numpy())

        if discrete:
            z_codes, z_n = common.label_codes(z)
            mi = histogram_mi(s_codes, s_n, z_codes, z_n)
        else:
            mi = knn_mi(s_codes, s_n, common.standardize(z), n_neighbors=n_neighbors, seed=seed)
        entropy = plugin_entropy(s_codes, s_n)
        nmi = torch.where(entropy[:, None] > 0, mi / entropy.clamp_min(1e-300)[:, None], 0.0)
        nmi = nmi.cpu().numpy()

        q = common.column_quantiles(z, (0.25, 0.75))
        active = common.active_latents((q[1] - q[0]).cpu().numpy(), discrete)

        infom, infoc = common.infom_infoc(nmi, active, valid)
        infoe = 0.0
        if active.any() and valid.any():
            paper = infoe_protocol == "paper"
            if discrete:
                features = one_hot_features(z_codes, z_n, scaled=not paper)
            else:
                features = dense_features(common.standardize(z))
            keep = torch.as_tensor(valid, device=z.device)
            fit = paper_log_loss if paper else balanced_log_loss
            h_pred = fit(features, s_codes[:, keep], s_n[keep]).cpu().numpy()
            h_null = np.log(s_n[keep].cpu().numpy())
            infoe = float(np.mean((h_null - h_pred) / h_null))
    return {"infom": infom, "infoc": infoc, "infoe": infoe, "nmi": nmi, "active": active}
