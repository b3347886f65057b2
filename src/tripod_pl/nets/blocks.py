"""Building blocks of the residual encoder and the conditioned residual decoder (docs/architecture.md,
"Networks").

Every GELU takes ``approximate``: ``"tanh"`` (the default, as the reference's ``jax.nn.gelu``)
``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, or ``"none"`` (exact, ``x Phi(x)``); docs/reference.md, "GELU".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the GELU of the reference (``jax.nn.gelu``'s default is the tanh approximation)
GELU_APPROXIMATE = "tanh"
_GELU_FORMS = ("none", "tanh")


def check_gelu(approximate: str) -> str:
    """``approximate`` if it names a GELU form (``"none"``/``"exact"`` for exact, ``"tanh"``), normalized."""
    form = "none" if approximate == "exact" else approximate
    if form not in _GELU_FORMS:
        raise ValueError(f"gelu_approximate must be 'tanh' or 'none' (exact), got {approximate!r}")
    return form


class ChannelNorm(nn.GroupNorm):
    """Per-channel GroupNorm (one group per channel): every channel of every image normalized over its
    pixels, ``(x - mean) / sqrt(var + eps)``, then ``* weight + bias`` if affine (same parameters and state dict
    as ``nn.GroupNorm(channels, channels)``).

    On a channels-last input it is written with elementary operations: the fused kernel's forward-mode
    derivative (NHP's ``method: jvp``) fails on channels-last tensors (torch 2.13, a ``view`` of non-contiguous
    memory); low-precision inputs are then normalized in float32, as autocast does for the fused kernel.
    """

    def __init__(self, channels: int, affine: bool) -> None:
        super().__init__(channels, channels, affine=affine)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.is_contiguous():
            return super().forward(x)
        y = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        centred = y - y.mean((2, 3), keepdim=True)
        y = centred * torch.rsqrt(centred.square().mean((2, 3), keepdim=True) + self.eps)
        if self.affine:
            y = y * self.weight[:, None, None] + self.bias[:, None, None]
        return y


def channel_norm(channels: int, affine: bool) -> ChannelNorm:
    """Per-channel GroupNorm (one group per channel), :class:`ChannelNorm`."""
    return ChannelNorm(channels, affine)


class ResidualBlock(nn.Module):
    """``x + body(x)`` with ``body = (3x3 conv -> GroupNorm(affine) -> GELU) x 2``; a 1x1 conv skip when the
    number of channels changes."""

    def __init__(self, in_channels: int, out_channels: int, gelu_approximate: str = GELU_APPROXIMATE) -> None:
        super().__init__()
        self.gelu_approximate = check_gelu(gelu_approximate)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm1 = channel_norm(out_channels, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm2 = channel_norm(out_channels, affine=True)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.gelu(self.norm1(self.conv1(x)), approximate=self.gelu_approximate)
        y = F.gelu(self.norm2(self.conv2(y)), approximate=self.gelu_approximate)
        return self.skip(x) + y


class ConditionedResidualBlock(nn.Module):
    """Residual block whose non-affine GroupNorms are modulated by the conditioning vector:
    ``GELU(norm(conv(x)) * (1 + scale) + shift)`` twice, with ``(scale, shift) = Linear(cond)``, plus skip."""

    def __init__(self, channels: int, cond_dim: int, gelu_approximate: str = GELU_APPROXIMATE) -> None:
        super().__init__()
        self.gelu_approximate = check_gelu(gelu_approximate)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = channel_norm(channels, affine=False)
        self.film1 = nn.Linear(cond_dim, 2 * channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = channel_norm(channels, affine=False)
        self.film2 = nn.Linear(cond_dim, 2 * channels)

    @staticmethod
    def _modulate(x: Tensor, film: Tensor) -> Tensor:
        scale, shift = film[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        y = F.gelu(self._modulate(self.norm1(self.conv1(x)), self.film1(cond)), approximate=self.gelu_approximate)
        y = F.gelu(self._modulate(self.norm2(self.conv2(y)), self.film2(cond)), approximate=self.gelu_approximate)
        return x + y


class SpaceToDepth(nn.Module):
    """2x space-to-depth: (B, C, H, W) -> (B, 4C, H/2, W/2)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_unshuffle(x, 2)


class Upsample(nn.Module):
    """Nearest 2x upsample followed by a 3x3 conv to ``out_channels``, optionally a non-affine GroupNorm
    ("activation normalization", used by the naive Hessian penalty)."""

    def __init__(self, in_channels: int, out_channels: int, normalize: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = channel_norm(out_channels, affine=False) if normalize else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` written with elementary operations, ``(x - mean) / sqrt(var + eps) * weight + bias``
    over the last dimension (same parameters and state dict).

    Why: the second-order forward-mode derivative of the fused ``layer_norm`` kernel is wrong (torch 2.13:
    ``jvp`` of ``jvp`` disagrees with float64 finite differences by the size of the value itself, while its
    first order is right), and NHP's exact method nests ``jvp`` twice through the decoder's conditioning MLP.
    Elementary operations differentiate correctly to any order. Low-precision inputs (bf16 autocast) are
    normalized in float32, as autocast does for the fused kernel.
    """

    def forward(self, x: Tensor) -> Tensor:
        if len(self.normalized_shape) != 1:
            return super().forward(x)
        y = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        centred = y - y.mean(-1, keepdim=True)
        y = centred * torch.rsqrt(centred.square().mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


def mlp_layer(in_features: int, out_features: int, gelu_approximate: str = GELU_APPROXIMATE) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU (the :class:`LayerNorm` above, exact to second order under ``jvp``)."""
    gelu = nn.GELU(approximate=check_gelu(gelu_approximate))
    return nn.Sequential(nn.Linear(in_features, out_features), LayerNorm(out_features), gelu)


__all__ = [
    "GELU_APPROXIMATE",
    "ChannelNorm",
    "ConditionedResidualBlock",
    "LayerNorm",
    "ResidualBlock",
    "SpaceToDepth",
    "Upsample",
    "channel_norm",
    "check_gelu",
    "mlp_layer",
]
