"""The KL leg of beta-VAE (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a Constrained
Variational Framework", ICLR; docs/legs.md, "KL (beta-VAE)")."""

from __future__ import annotations

import torch
from torch import Tensor

from tripod_pl.legs.base import Regularizer, StepContext
from tripod_pl.legs.registry import register_leg

__all__ = ["KL", "gaussian_kl"]


def gaussian_kl(mu: Tensor, sigma: Tensor) -> Tensor:
    """``KL(N(mu, diag sigma^2) || N(0, I))`` per sample, summed over latents (nats, shape ``b``):
    ``sum_k (mu_k^2 + sigma_k^2 - 1 - log sigma_k^2) / 2``."""
    return 0.5 * (mu**2 + sigma**2 - 1.0 - 2.0 * torch.log(sigma)).sum(-1)


def gaussian_posterior(ctx: StepContext, leg: str) -> tuple[Tensor, Tensor]:
    """``(mu, sigma)`` of a Gaussian bottleneck, or a clear error naming ``leg``."""
    lat = ctx.latents
    if lat.mu is None or lat.sigma is None:
        raise RuntimeError(f"{leg} needs a Gaussian bottleneck (latents with mu and sigma)")
    return lat.mu, lat.sigma


@register_leg("kl")
class KL(Regularizer):
    """The VAE's KL term, weighted by ``beta`` (beta-VAE; ``beta = 1`` is the plain VAE); needs the Gaussian
    bottleneck. Term ``kl = mean_batch KL(q(z|x) || N(0, I)) / P``: the closed form summed over latents,
    averaged over the batch and divided by the number of pixel values ``P`` (3 x 64 x 64), as for
    :class:`~tripod_pl.legs.BetaTC`, so that against the per-pixel reconstruction term ``beta`` means what it
    means against the paper's reconstruction summed over pixels. Per sample, no batch statistics.
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    @property
    def weights(self) -> dict[str, float]:
        return {"kl": self.beta}

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:
        mu, sigma = gaussian_posterior(ctx, "KL")
        return {"kl": gaussian_kl(mu, sigma).mean() / ctx.num_pixels}
