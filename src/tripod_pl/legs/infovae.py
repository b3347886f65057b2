"""The MMD leg of InfoVAE / MMD-VAE (Zhao, Song, Ermon, "InfoVAE: Balancing Learning and Inference in
Variational Autoencoders", AAAI 2019; docs/legs.md, "MMD (InfoVAE)")."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from tripod_pl.legs.base import Regularizer, StepContext
from tripod_pl.legs.distributed import BatchStats, gather_batch
from tripod_pl.legs.registry import register_leg

__all__ = ["MMD", "mmd"]

Kernel = Literal["imq", "rbf"]


def _kernel(a: Tensor, b: Tensor, kernel: Kernel, scale: float) -> Tensor:
    d2 = ((a.unsqueeze(1) - b.unsqueeze(0)) ** 2).sum(-1)
    return scale / (scale + d2) if kernel == "imq" else torch.exp(-d2 / scale)


def mmd(q: Tensor, p: Tensor, kernel: Kernel = "imq", prior_variance: float = 1.0, unbiased: bool = True) -> Tensor:
    """Squared maximum mean discrepancy between samples ``q`` (m x n_z) and ``p`` (n x n_z).

    Kernels with ``C = 2 n_z prior_variance``: inverse multiquadric ``k(a, b) = C / (C + |a - b|^2)`` or Gaussian
    ``k(a, b) = exp(-|a - b|^2 / C)``. ``MMD^2 = mean k(q, q') + mean k(p, p') - 2 mean k(q, p)``, the first two
    means over pairs of distinct samples (U-statistics) when ``unbiased``, over all pairs otherwise.
    """
    if kernel not in ("imq", "rbf"):
        raise ValueError(f"MMD kernel must be 'imq' or 'rbf', got {kernel!r}")
    scale = 2.0 * q.shape[1] * prior_variance

    def within(x: Tensor) -> Tensor:
        k = _kernel(x, x, kernel, scale)
        if not unbiased:
            return k.mean()
        n = x.shape[0]
        return (k.sum() - k.diagonal().sum()) / (n * (n - 1))

    return within(q) + within(p) - 2.0 * _kernel(q, p, kernel, scale).mean()


@register_leg("mmd")
class MMD(Regularizer):
    """``MMD^2`` between the batch's posterior samples ``z ~ q(z)`` and as many prior samples ``N(0, I)``
    (:func:`mmd`), divided by the number of pixel values ``P`` as :class:`~tripod_pl.legs.KL`. Kernel: ``"imq"``
    (default) or ``"rbf"``, both with scale ``C = 2 n_z sigma^2``, ``sigma^2`` the prior variance (1), the
    heuristic of Tolstikhin et al. 2018 (Wasserstein auto-encoders) used by MMD-VAE implementations.

    InfoVAE's objective ``reconstruction + (1 - alpha) KL + (alpha + lambda - 1) MMD`` is
    ``[KL(beta=1 - alpha), MMD(weight=alpha + lambda - 1)]``; MMD-VAE is ``alpha = 1`` (no KL leg). Works with
    any bottleneck (it uses ``z`` only). ``batch_stats`` as for :class:`KLM`.
    """

    def __init__(
        self,
        weight: float = 1.0,
        kernel: Kernel = "imq",
        prior_variance: float = 1.0,
        unbiased: bool = True,
        batch_stats: BatchStats = "global",
    ) -> None:
        super().__init__()
        if kernel not in ("imq", "rbf"):
            raise ValueError(f"MMD kernel must be 'imq' or 'rbf', got {kernel!r}")
        if prior_variance <= 0:
            raise ValueError(f"MMD prior_variance must be positive, got {prior_variance}")
        self.weight, self.kernel, self.prior_variance = weight, kernel, prior_variance
        self.unbiased, self.batch_stats = unbiased, batch_stats

    @property
    def weights(self) -> dict[str, float]:
        return {"mmd": self.weight}

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:
        z = gather_batch(ctx.latents.z, self.batch_stats)[0]
        prior = torch.randn_like(z) * self.prior_variance**0.5
        value = mmd(z, prior, self.kernel, self.prior_variance, self.unbiased)
        return {"mmd": value / ctx.num_pixels}
