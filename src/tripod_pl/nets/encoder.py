"""Encoders (docs/architecture.md, "Networks"): the residual convolutional one, and the reference's MLP one.

Each stage at width ``w``: two residual blocks at ``w``, a 2x space-to-depth and a 1x1 conv to ``2w``
channels. With the paper's widths (32, 64, 128, 256) a 64x64 image becomes 512 x 4 x 4, then global mean
pool -> Linear+LayerNorm+GELU -> Linear to the encoder output (``n_z``, or ``2 n_z`` for a Gaussian).

Example:
    >>> enc = Encoder(out_features=12)
    >>> h = enc(torch.zeros(2, 3, 64, 64))  # 2 x 12
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from tripod_pl.nets.blocks import GELU_APPROXIMATE, ResidualBlock, SpaceToDepth, check_gelu, mlp_layer


class Encoder(nn.Module):
    """Images (B x 3 x H x W, floats in [-1, 1]) to pre-bottleneck features ``h`` (B x out_features);
    ``gelu_approximate`` is every GELU's form (``"tanh"``, the reference's, or ``"none"``, exact)."""

    def __init__(
        self,
        out_features: int,
        widths: Sequence[int] = (32, 64, 128, 256),
        in_channels: int = 3,
        gelu_approximate: str = GELU_APPROXIMATE,
    ) -> None:
        super().__init__()
        gelu = check_gelu(gelu_approximate)
        if not widths:
            raise ValueError("the encoder needs at least one stage")
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            layers += [
                ResidualBlock(channels, width, gelu),
                ResidualBlock(width, width, gelu),
                SpaceToDepth(),
                nn.Conv2d(4 * width, 2 * width, 1),
            ]
            channels = 2 * width
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(mlp_layer(channels, channels, gelu), nn.Linear(channels, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(x).mean(dim=(2, 3)))


class MLPEncoder(nn.Module):
    """The reference's ``MlpEncoder`` (kylehkhsu/tripod ``disentangle/nn/encoder.py``): the flattened image
    (C x H x W values) -> Linear+LayerNorm+GELU to ``hidden`` -> Linear to ``out_features``.

    Example:
        >>> enc = MLPEncoder(out_features=12)
        >>> h = enc(torch.zeros(2, 3, 64, 64))  # 2 x 12
    """

    def __init__(
        self,
        out_features: int,
        image_size: int = 64,
        in_channels: int = 3,
        hidden: int = 512,
        gelu_approximate: str = GELU_APPROXIMATE,
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(),
            mlp_layer(in_channels * image_size * image_size, hidden, check_gelu(gelu_approximate)),
            nn.Linear(hidden, out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)
