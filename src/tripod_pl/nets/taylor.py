"""Second-order Taylor propagation ("jets") through the decoder's conditioning MLP.

For a module ``m`` and a line ``x(t) = x0 + t x1`` through its input, :func:`jet2` returns
``(y0, y1, y2) = (m(x0), d/dt m(x(t)), d^2/dt^2 m(x(t)))`` at ``t = 0``, i.e. ``y2 = x1^T H x1`` per output
unit: the exact second directional derivative NHP's ``method: "jvp"`` needs (docs/legs.md, "NHP"). Written
with ordinary tensor operations, so gradients reach the parameters by plain backpropagation; on a small MLP
this is several times faster than nesting ``torch.func.jvp`` twice, whose per-operation overhead dominates
there. The rules, with ``'`` the derivative in ``t``:

- ``Linear``: ``(W x0 + b, W x1, W x2)``;
- element-wise ``g`` (GELU, both forms): ``y1 = g'(x0) x1``, ``y2 = g'(x0) x2 + g''(x0) x1^2``;
- :class:`~tripod_pl.nets.blocks.LayerNorm` over the last dimension, ``y = c r w + b`` with ``c = x - mean(x)``,
  ``s = mean(c^2)``, ``r = (s + eps)^(-1/2)``: ``s' = 2 mean(c c')``, ``s'' = 2 mean(c'^2 + c c'')``,
  ``r' = -r^3 s' / 2``, ``r'' = 3 r^5 s'^2 / 4 - r^3 s'' / 2``, ``y' = (c' r + c r') w``,
  ``y'' = (c'' r + 2 c' r' + c r'') w``;
- ``Sequential``: the rules composed.

Any other module is not supported: :func:`supports_jet` says so, and callers fall back to ``torch.func``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tripod_pl.nets.blocks import LayerNorm

__all__ = ["gelu_derivatives", "jet2", "supports_jet"]

Jet = tuple[Tensor, Tensor, Tensor]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


def supports_jet(module: nn.Module) -> bool:
    """Whether :func:`jet2` has a rule for ``module`` (and, for a ``Sequential``, for every part)."""
    if isinstance(module, nn.Sequential):
        return all(supports_jet(m) for m in module)
    if isinstance(module, LayerNorm):
        return len(module.normalized_shape) == 1
    return isinstance(module, (nn.Linear, nn.GELU, nn.Identity))


def gelu_derivatives(x: Tensor, approximate: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(g(x), g'(x), g''(x))`` of GELU, ``approximate`` ``"none"`` (``x Phi(x)``) or ``"tanh"``
    (``x (1 + tanh(u)) / 2``, ``u = sqrt(2/pi) (x + 0.044715 x^3)``)."""
    if approximate == "none":
        pdf = torch.exp(-0.5 * x.square()) / math.sqrt(2.0 * math.pi)
        cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
        return x * cdf, cdf + x * pdf, pdf * (2.0 - x.square())
    if approximate != "tanh":
        raise ValueError(f"unknown GELU form {approximate!r}")
    t = torch.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3))
    sech2 = 1.0 - t.square()
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x.square())
    d2u = _SQRT_2_OVER_PI * 6.0 * _GELU_CUBIC * x
    first = 0.5 * (1.0 + t) + 0.5 * x * sech2 * du
    second = sech2 * du + 0.5 * x * sech2 * (d2u - 2.0 * t * du.square())
    return 0.5 * x * (1.0 + t), first, second


def _layer_norm(norm: LayerNorm, x0: Tensor, x1: Tensor, x2: Tensor) -> Jet:
    c0 = x0 - x0.mean(-1, keepdim=True)
    c1 = x1 - x1.mean(-1, keepdim=True)
    c2 = x2 - x2.mean(-1, keepdim=True)
    s1 = 2.0 * (c0 * c1).mean(-1, keepdim=True)
    s2 = 2.0 * (c1.square() + c0 * c2).mean(-1, keepdim=True)
    r0 = torch.rsqrt(c0.square().mean(-1, keepdim=True) + norm.eps)
    r0_cubed = r0**3
    r1 = -0.5 * r0_cubed * s1
    r2 = 0.75 * r0_cubed * r0.square() * s1.square() - 0.5 * r0_cubed * s2
    y0, y1, y2 = c0 * r0, c1 * r0 + c0 * r1, c2 * r0 + 2.0 * c1 * r1 + c0 * r2
    if norm.weight is not None:
        y0, y1, y2 = y0 * norm.weight, y1 * norm.weight, y2 * norm.weight
    if norm.bias is not None:
        y0 = y0 + norm.bias
    return y0, y1, y2


def _jet(module: nn.Module, x0: Tensor, x1: Tensor, x2: Tensor) -> Jet:
    if isinstance(module, nn.Sequential):
        for part in module:
            x0, x1, x2 = _jet(part, x0, x1, x2)
        return x0, x1, x2
    if isinstance(module, nn.Linear):
        return module(x0), x1 @ module.weight.T, x2 @ module.weight.T
    if isinstance(module, nn.GELU):
        y0, d1, d2 = gelu_derivatives(x0, module.approximate)
        return y0, d1 * x1, d1 * x2 + d2 * x1.square()
    if isinstance(module, LayerNorm):
        return _layer_norm(module, x0, x1, x2)
    if isinstance(module, nn.Identity):
        return x0, x1, x2
    raise NotImplementedError(f"no second-order rule for {type(module).__name__}")


def jet2(module: nn.Module, x0: Tensor, x1: Tensor) -> Jet:
    """``(m(x0), d/dt m(x0 + t x1), d^2/dt^2 m(x0 + t x1))`` at ``t = 0`` for a module of
    :func:`supports_jet` (``NotImplementedError`` otherwise); inputs and outputs have a leading batch dim."""
    return _jet(module, x0, x1, torch.zeros_like(x0))
