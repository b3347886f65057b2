"""DIP-VAE's covariance penalties (Kulkarni, Sattigeri, Balakrishnan, "Variational Inference of Disentangled
Latent Concepts from Unlabeled Observations", ICLR 2018; docs/legs.md, "DIP-VAE")."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from tripod_pl.legs.base import Regularizer, StepContext
from tripod_pl.legs.betavae import gaussian_posterior
from tripod_pl.legs.distributed import BatchStats, gather_batch
from tripod_pl.legs.registry import register_leg

__all__ = ["DIPVAE", "dip_covariance", "dip_penalties"]

DIPKind = Literal["i", "ii"]


def dip_covariance(mu: Tensor, sigma: Tensor | None = None) -> Tensor:
    """Covariance of the aggregate posterior over a batch (n_z x n_z, population moments).

    DIP-VAE-I (``sigma`` None): ``Cov[mu] = mean_i mu_i mu_i^T - mean_i mu_i mean_i mu_i^T``.
    DIP-VAE-II: ``Cov_q(z) = mean_i diag(sigma_i^2) + Cov[mu]``. In float32 (float64 if ``mu`` is) even under
    bf16 autocast, whose matrix product would keep about three digits of ``C``.
    """
    dtype = torch.float64 if mu.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=mu.device.type, enabled=False):
        mu = mu.to(dtype)
        centred = mu - mu.mean(0, keepdim=True)
        cov = centred.T @ centred / mu.shape[0]
        if sigma is not None:
            cov = cov + (sigma.to(dtype) ** 2).mean(0).diag()
    return cov


def dip_penalties(cov: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum_{k != l} C_kl^2, sum_k (C_kk - 1)^2)``: the off-diagonal and diagonal penalties of ``C``."""
    diag = cov.diagonal()
    return (cov**2).sum() - (diag**2).sum(), ((diag - 1.0) ** 2).sum()


@register_leg("dip_vae")
class DIPVAE(Regularizer):
    """DIP-VAE-I (``kind="i"``: the covariance of ``mu``) or DIP-VAE-II (``kind="ii"``: the covariance of the
    aggregate posterior, ``E[diag sigma^2] + Cov[mu]``), matched to the prior's identity covariance. Terms
    ``dip_offdiag`` (weight ``lambda_od``) and ``dip_diag`` (weight ``lambda_d``), each divided by the number of
    pixel values ``P`` as :class:`~tripod_pl.legs.KL`. Needs the Gaussian bottleneck; the method is the ELBO
    plus these penalties, i.e. ``[KL(beta=1), DIPVAE(...)]``. ``batch_stats`` as for :class:`KLM`: the
    covariance over the batch gathered from all ranks (``"global"``) or each rank's own.
    """

    def __init__(
        self,
        kind: DIPKind = "i",
        lambda_od: float = 10.0,
        lambda_d: float = 100.0,
        batch_stats: BatchStats = "global",
    ) -> None:
        super().__init__()
        if kind not in ("i", "ii"):
            raise ValueError(f"DIPVAE kind must be 'i' or 'ii', got {kind!r}")
        self.kind, self.lambda_od, self.lambda_d, self.batch_stats = kind, lambda_od, lambda_d, batch_stats

    @property
    def weights(self) -> dict[str, float]:
        return {"dip_offdiag": self.lambda_od, "dip_diag": self.lambda_d}

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:
        mu, sigma = gaussian_posterior(ctx, "DIPVAE")
        mu = gather_batch(mu, self.batch_stats)[0]
        sigma = gather_batch(sigma, self.batch_stats)[0] if self.kind == "ii" else None
        offdiag, diag = dip_penalties(dip_covariance(mu, sigma))
        return {"dip_offdiag": offdiag / ctx.num_pixels, "dip_diag": diag / ctx.num_pixels}
