"""An example third-party evaluation metric: how correlated the latents are, the quantity the leg penalizes.

``latent_correlation = mean_{j != k} |corr(z_j, z_k)|`` over the latents that vary. The states are running
sums (count, sum z, sum z z^T) reduced with ``"sum"``, so DDP ranks combine the torchmetrics way and no
sample is kept. Registered through the ``tripod_pl.metrics`` entry point (``pyproject.toml``) and listed in
the evaluation callback's ``metrics`` (``config.yaml``).
"""

import torch
from torch import Tensor
from torchmetrics import Metric


class LatentCorrelation(Metric):
    """Mean absolute off-diagonal correlation of the latents (0: uncorrelated, 1: all collinear)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("outer", default=torch.zeros(0, 0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, latents: Tensor, sources: Tensor) -> None:  # sources are not needed here
        z = latents.detach().double()
        if self.total.numel() == 0:  # sized by the first batch
            self.total = torch.zeros(z.shape[1], dtype=torch.float64, device=z.device)
            self.outer = torch.zeros(z.shape[1], z.shape[1], dtype=torch.float64, device=z.device)
        self.count += z.shape[0]
        self.total += z.sum(0)
        self.outer += z.T @ z

    def compute(self) -> dict[str, float]:
        mean = self.total / self.count
        cov = self.outer / self.count - torch.outer(mean, mean)
        std = cov.diagonal().clamp_min(0).sqrt()
        varying = std > 1e-8
        corr = cov[varying][:, varying] / torch.outer(std[varying], std[varying])
        n = int(varying.sum())
        if n < 2:
            return {"latent_correlation": 0.0}
        off = corr.abs().sum() - corr.diagonal().abs().sum()
        return {"latent_correlation": float(off / (n * (n - 1)))}
