"""FactorVAE's total-correlation leg with its own discriminator (Kim & Mnih, "Disentangling by Factorising",
ICML 2018; docs/legs.md, "Total correlation (FactorVAE)")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from tripod_pl.legs.base import Regularizer, StepContext
from tripod_pl.legs.registry import register_leg

__all__ = ["FactorTC", "permute_dims"]


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Samples of ``prod_k q(z_k)`` from samples of ``q(z)``: each column of ``z`` (b x n_z) shuffled by its own
    random permutation of the batch (FactorVAE's Algorithm 1)."""
    b, n_z = z.shape
    idx = torch.argsort(torch.rand(b, n_z, device=z.device, generator=generator), dim=0)
    return torch.gather(z, 0, idx)


def discriminator_mlp(n_z: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` linear layers (``layers - 1`` hidden of width ``hidden``, LeakyReLU(0.2)) -> 2 logits."""
    mods: list[nn.Module] = []
    width = n_z
    for _ in range(layers - 1):
        mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
        width = hidden
    mods.append(nn.Linear(width, 2))
    return nn.Sequential(*mods)


@register_leg("factor_tc")
class FactorTC(Regularizer):
    """FactorVAE's total correlation, estimated by a discriminator ``D`` that tells samples of ``q(z)`` (class
    0) from samples of ``prod_k q(z_k)`` (class 1, :func:`permute_dims` of the same batch, as
    disentanglement_lib does; the paper permutes a second batch). With ``D``'s two logits ``l_0, l_1``:

    - ``tc = mean_batch [l_0(z) - l_1(z)] / P`` (the density-ratio estimate of ``TC(z)`` in nats, divided by the
      number of pixel values ``P`` as :class:`~tripod_pl.legs.KL`), weight ``gamma``. ``D``'s parameters are
      detached here: this term trains the encoder only.
    - ``discriminator = (CE(D(z), 0) + CE(D(permute_dims(z)), 1)) / 2`` on detached ``z``: trains ``D`` only.

    One backward pass of the total loss thus gives each part its own objective's gradient; ``D``'s parameters
    form their own optimizer group (:meth:`optimizer_groups`: Adam, ``lr`` 1e-4, ``betas`` (0.5, 0.9) by
    default, the paper's), stepped with the model's, so checkpoints, DDP, gradient clipping and resume need
    nothing special. The method is ``[KL(beta=1), FactorTC(gamma)]`` on the Gaussian bottleneck.

    Args:
        gamma: weight of the TC term.
        hidden, layers: the discriminator MLP (the paper's: 6 layers of 1000 units, LeakyReLU 0.2).
        lr, betas: the discriminator's Adam.
    """

    def __init__(
        self,
        gamma: float = 30.0,
        hidden: int = 1000,
        layers: int = 6,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
    ) -> None:
        super().__init__()
        if layers < 1 or hidden < 1:
            raise ValueError(f"FactorTC needs layers >= 1 and hidden >= 1, got layers={layers}, hidden={hidden}")
        if lr <= 0:
            raise ValueError(f"FactorTC lr must be positive, got {lr}")
        self.gamma, self.hidden, self.layers, self.lr, self.betas = gamma, hidden, layers, lr, tuple(betas)
        self.discriminator: nn.Module | None = None  # created by build(n_z)

    def build(self, n_z: int, dataset_size: int | None = None) -> None:
        self.discriminator = discriminator_mlp(n_z, self.hidden, self.layers)

    @property
    def weights(self) -> dict[str, float]:
        return {"tc": self.gamma, "discriminator": 1.0}

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """The discriminator's parameters with their own Adam hyper-parameters (no weight decay)."""
        params = [p for p in self._disc().parameters() if p.requires_grad]
        return [{"name": "factor_tc_discriminator", "params": params, "lr": self.lr, "betas": self.betas,
                 "weight_decay": 0.0}]  # fmt: skip

    def _disc(self) -> nn.Module:
        if self.discriminator is None:
            raise RuntimeError("FactorTC.build(n_z) must be called before use")
        return self.discriminator

    def tc_estimate(self, z: Tensor, parameters: Sequence[tuple[str, Tensor]] | None = None) -> Tensor:
        """``mean_batch [l_0(z) - l_1(z)]`` in nats (with ``parameters`` in place of the discriminator's)."""
        disc = self._disc()
        logits = disc(z) if parameters is None else functional_call(disc, dict(parameters), (z,))
        return (logits[:, 0] - logits[:, 1]).mean()

    def discriminator_loss(self, z: Tensor) -> Tensor:
        """``(CE(D(z), 0) + CE(D(permute_dims(z)), 1)) / 2``."""
        disc = self._disc()
        real, perm = disc(z), disc(permute_dims(z))
        zeros = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        return 0.5 * (F.cross_entropy(real, zeros) + F.cross_entropy(perm, zeros + 1))

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:
        z = ctx.latents.z.float()
        frozen = [(name, p.detach()) for name, p in self._disc().named_parameters()]
        return {
            "tc": self.tc_estimate(z, frozen) / ctx.num_pixels,
            "discriminator": self.discriminator_loss(z.detach()),
        }
