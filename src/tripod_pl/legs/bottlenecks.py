"""Bottleneck legs (docs/legs.md, "Bottlenecks"): FSQ (Tripod), scalar codebook (QLAE), Gaussian (beta-TCVAE),
identity (AE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tripod_pl.legs import functional as LF
from tripod_pl.legs.base import Bottleneck, Latents
from tripod_pl.legs.registry import register_leg

__all__ = ["FSQ", "GaussianBottleneck", "IdentityBottleneck", "ScalarCodebook"]


@register_leg("fsq")
class FSQ(Bottleneck):
    """Finite scalar quantization, Tripod's first leg: ``z_c = tanh(h)``, ``z`` on an ``n_q``-level grid in
    [-1, 1] with straight-through gradients (Mentzer et al. 2023). No loss terms.

    Example:
        >>> latents = FSQ(n_q=12)(torch.randn(8, 10))
    """

    discrete = True

    def __init__(self, n_q: int = 12) -> None:
        super().__init__()
        if n_q < 2:
            raise ValueError(f"FSQ needs n_q >= 2, got {n_q}")
        self.n_q = n_q

    def forward(self, h: Tensor) -> Latents:
        z_c, z = LF.fsq(h, self.n_q)
        return Latents(z=z, z_c=z_c, z_eval=z.detach())


@register_leg("codebook")
class ScalarCodebook(Bottleneck):
    """Scalar codebook quantizer of QLAE (Hsu et al. 2023).

    ``z_c = h``; latent ``j`` snaps to the nearest of its own ``n_v`` learnable values (initialised evenly on
    [-init_range, init_range]); ``z = z_c + sg(z_q - z_c)``. Terms: ``quantization = mean((sg(z_c) - z_q)^2)``
    and ``commitment = mean((z_c - sg(z_q))^2)``.
    """

    discrete = True

    def __init__(
        self,
        n_v: int = 10,
        init_range: float = 0.5,
        quantization_weight: float = 0.01,
        commitment_weight: float = 0.01,
    ) -> None:
        super().__init__()
        if n_v < 2:
            raise ValueError(f"a codebook needs n_v >= 2 values, got {n_v}")
        self.n_v, self.init_range = n_v, init_range
        self.quantization_weight, self.commitment_weight = quantization_weight, commitment_weight
        self.register_parameter("codebook", None)  # (n_z x n_v), created by build()

    def build(self, n_z: int, dataset_size: int | None = None) -> None:
        values = torch.linspace(-self.init_range, self.init_range, self.n_v)
        self.codebook = nn.Parameter(values.repeat(n_z, 1))

    @property
    def weights(self) -> dict[str, float]:
        return {"quantization": self.quantization_weight, "commitment": self.commitment_weight}

    def forward(self, h: Tensor) -> Latents:
        if self.codebook is None:
            raise RuntimeError("ScalarCodebook.build(n_z) must be called before use")
        z_c = h.float()
        z_q, z = LF.scalar_quantize(z_c, self.codebook)
        terms = {
            "quantization": F.mse_loss(z_q, z_c.detach()),
            "commitment": F.mse_loss(z_c, z_q.detach()),
        }
        return Latents(z=z, z_c=z_c, z_eval=z_q.detach(), terms=terms)


@register_leg("gaussian")
class GaussianBottleneck(Bottleneck):
    """Gaussian posterior of a VAE: the encoder emits ``(mu, rho)``, ``sigma = softplus(rho)`` and the decoder
    gets ``z = mu + sigma * eps``. Evaluation latents are ``mu``.

    With ``sample_in_eval`` (the default) ``z`` is sampled in eval mode too, as the reference does: its
    ``TCVAE.batched_loss`` always samples, and its evaluation computes the validation losses and the PSNR used
    for model selection on reconstructions of that sample (kylehkhsu/tripod ``scripts/train_tcvae.py``
    ``evaluate``). ``sample_in_eval=False`` decodes ``z = mu`` in eval mode.
    """

    def __init__(self, min_sigma: float = 0.0, sample_in_eval: bool = True) -> None:
        super().__init__()
        self.min_sigma = min_sigma
        self.sample_in_eval = sample_in_eval

    def encoder_features(self, n_z: int) -> int:
        return 2 * n_z

    @property
    def samples(self) -> bool:
        """Whether :meth:`forward` draws ``z`` now (training, or eval with ``sample_in_eval``)."""
        return self.training or self.sample_in_eval

    def forward(self, h: Tensor) -> Latents:
        mu, rho = h.float().chunk(2, dim=-1)
        sigma = F.softplus(rho) + self.min_sigma
        z = mu + sigma * torch.randn_like(mu) if self.samples else mu
        return Latents(z=z, z_c=z, z_eval=mu.detach(), mu=mu, sigma=sigma)


@register_leg("identity")
class IdentityBottleneck(Bottleneck):
    """Plain autoencoder: ``z = h``."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, h: Tensor) -> Latents:
        z = h.float()
        return Latents(z=z, z_c=z, z_eval=z.detach())
