"""Conditioned residual decoder with named activations (docs/architecture.md, "Networks").

A learned input tensor (``widths[0]`` x r x r, initialised to ones, ``r = image_size / 2^len(widths)``) is
refined by stages of conditioned residual blocks; the conditioning vector ``cond = MLP(z)`` modulates every
block. Stage ``i`` = two conditioned residual blocks at ``widths[i]``, then nearest 2x upsample and a 3x3
conv to the next width (3 channels after the last stage). The named activations are ``cond``, ``block0``,
``block1``, ... (outputs of every stage but the last) and ``x_logits``; :meth:`Decoder.activations` runs the
network only as far as the last requested name, which is all the Hessian penalties need.

Example:
    >>> dec = Decoder(n_z=12)
    >>> logits = dec(torch.zeros(2, 12))  # 2 x 3 x 64 x 64
    >>> cond, block0 = dec.activations(torch.zeros(2, 12), ["cond", "block0"])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tripod_pl.nets.blocks import GELU_APPROXIMATE, ConditionedResidualBlock, Upsample, check_gelu, mlp_layer
from tripod_pl.nets.taylor import jet2, supports_jet


class Decoder(nn.Module):
    """Latents (B x n_z) to image logits (B x 3 x H x W); ``gelu_approximate`` is every GELU's form
    (``"tanh"``, the reference's, or ``"none"``, exact)."""

    def __init__(
        self,
        n_z: int,
        widths: Sequence[int] = (512, 256, 128, 64),
        cond_dim: int = 256,
        image_size: int = 64,
        out_channels: int = 3,
        activation_norm: bool = False,
        gelu_approximate: str = GELU_APPROXIMATE,
    ) -> None:
        super().__init__()
        self.gelu_approximate = check_gelu(gelu_approximate)
        stages = len(widths)
        if stages < 1 or image_size % 2**stages:
            raise ValueError(f"image_size {image_size} must be divisible by 2^{stages} (one 2x per stage)")
        res = image_size // 2**stages
        self.input = nn.Parameter(torch.ones(widths[0], res, res))
        gelu = self.gelu_approximate
        self.cond_mlp = nn.Sequential(mlp_layer(n_z, cond_dim, gelu), mlp_layer(cond_dim, cond_dim, gelu))
        self.blocks = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for i, width in enumerate(widths):
            last = i == stages - 1
            self.blocks.append(nn.ModuleList([ConditionedResidualBlock(width, cond_dim, gelu) for _ in range(2)]))
            nxt = out_channels if last else widths[i + 1]
            self.upsamples.append(Upsample(width, nxt, normalize=activation_norm and not last))
        self.names: tuple[str, ...] = ("cond", *(f"block{i}" for i in range(stages - 1)), "x_logits")

    def check_names(self, names: Sequence[str]) -> None:
        """``KeyError`` naming any of ``names`` that is not one of the decoder's activations."""
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise KeyError(f"unknown decoder activation(s) {unknown}; available: {list(self.names)}")

    def activations(self, z: Tensor, names: Sequence[str]) -> list[Tensor]:
        """The named activations for latents ``z``, in the order of ``names``; the network runs only up to
        the deepest one requested."""
        self.check_names(names)
        depth = max(self.names.index(n) for n in names)
        acts: dict[str, Tensor] = {}
        cond = self.cond_mlp(z)
        acts["cond"] = cond
        x = self.input.expand(z.shape[0], *self.input.shape)
        for i in range(depth):
            for block in self.blocks[i]:
                x = block(x, cond)
            x = self.upsamples[i](x)
            acts[self.names[i + 1]] = x
        return [acts[n] for n in names]

    def second_directional_derivatives(self, z: Tensor, v: Tensor, names: Sequence[str]) -> list[Tensor] | None:
        """``d^2/dt^2 a(z + t v)`` at ``t = 0`` for every named activation ``a``, exactly, by Taylor propagation
        through the conditioning MLP (:mod:`tripod_pl.nets.taylor`) when every name is ``cond``; ``None``
        otherwise (the caller then nests ``torch.func.jvp``)."""
        if any(name != "cond" for name in names) or not supports_jet(self.cond_mlp):
            return None
        second = jet2(self.cond_mlp, z, v)[2]
        return [second for _ in names]

    def forward(self, z: Tensor, names: Sequence[str] | None = None) -> Tensor | list[Tensor]:
        """Image logits, or the activations ``names`` when given (see :meth:`activations`)."""
        if names is not None:
            return self.activations(z, names)
        return self.activations(z, ["x_logits"])[0]
