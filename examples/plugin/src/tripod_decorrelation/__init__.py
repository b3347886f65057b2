"""An example third-party leg: penalize the off-diagonal covariance of the latents.

``term = sum_{j != k} Cov(z_c)_jk^2`` over the batch, a cheap linear cousin of KLM (DIP-VAE, Kumar et al.
2018, regularizes the same quantity).
"""

import torch
from torch import Tensor

from tripod_pl.legs import Regularizer, StepContext


class Decorrelation(Regularizer):
    """Squared off-diagonal covariance of the continuous latents, weighted by ``weight``."""

    def __init__(self, weight: float = 1e-2) -> None:
        super().__init__()
        self.weight = weight

    @property
    def weights(self) -> dict[str, float]:
        return {"decorrelation": self.weight}

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:
        z = ctx.latents.z_c
        cov = torch.cov(z.T)
        off_diagonal = cov - torch.diag(torch.diagonal(cov))
        return {"decorrelation": (off_diagonal**2).sum()}
