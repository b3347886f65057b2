"""Second-order Taylor propagation (``tripod_pl.nets.taylor``) against nested ``torch.func.jvp`` and autograd, in
float64: each rule, the decoder's conditioning MLP, and NHP's value and gradients through the fast path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tripod_pl.legs import functional as LF
from tripod_pl.legs.base import _Activations
from tripod_pl.nets import Decoder
from tripod_pl.nets.blocks import LayerNorm, mlp_layer
from tripod_pl.nets.taylor import gelu_derivatives, jet2, supports_jet


def _reference_jet(fn, x0, x1):
    """``(f, f', f'')`` along ``x0 + t x1`` by ``torch.func.jvp`` nested twice."""

    def first(y):
        return torch.func.jvp(fn, (y,), (x1,))[1]

    return fn(x0), first(x0), torch.func.jvp(first, (x0,), (x1,))[1]


def _randomized(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` in float64 with every parameter perturbed (LayerNorm's weight off 1, bias off 0)."""
    gen = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


def _points(n: int, d: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=torch.float64), torch.randn(n, d, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize(
    "module",
    [
        nn.Linear(5, 7),
        LayerNorm(5),
        nn.GELU(approximate="tanh"),
        nn.GELU(approximate="none"),
        nn.Sequential(mlp_layer(5, 9, "tanh"), mlp_layer(9, 9, "tanh")),
        nn.Sequential(mlp_layer(5, 9, "none"), nn.Identity(), mlp_layer(9, 4, "none")),
    ],
    ids=["linear", "layer_norm", "gelu_tanh", "gelu_exact", "mlp_tanh", "mlp_exact"],
)
def test_jet_equals_nested_forward_mode(module):
    module = _randomized(module)
    x0, x1 = _points(6, 5)
    got = jet2(module, x0, x1)
    want = _reference_jet(module, x0, x1)
    for order, (g, w) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10, msg=f"order {order}")


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_derivatives_equal_autograd(approximate):
    x = torch.linspace(-6, 6, 241, dtype=torch.float64, requires_grad=True)
    value, first, second = gelu_derivatives(x, approximate)
    torch.testing.assert_close(value, nn.functional.gelu(x, approximate=approximate), rtol=1e-12, atol=1e-12)
    (d1,) = torch.autograd.grad(nn.functional.gelu(x, approximate=approximate).sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    torch.testing.assert_close(first, d1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(second, d2, rtol=1e-10, atol=1e-12)


def test_unsupported_modules_are_refused():
    conv = nn.Conv2d(3, 3, 3)
    assert not supports_jet(conv)
    assert not supports_jet(nn.Sequential(nn.Linear(3, 3), nn.ReLU()))
    assert supports_jet(nn.Sequential(mlp_layer(3, 4), mlp_layer(4, 4)))
    with pytest.raises(NotImplementedError, match="ReLU"):
        jet2(nn.Sequential(nn.Linear(3, 3), nn.ReLU()).double(), *_points(2, 3))


def _nhp_and_grads(f, decoder, z, s):
    gen = torch.Generator().manual_seed(2)
    value = LF.nhp(f, z, s, k=3, generator=gen, method="jvp")
    grads = torch.autograd.grad(value, [p for p in decoder.parameters() if p.requires_grad], allow_unused=True)
    return value, [torch.zeros(()) if g is None else g for g in grads]


@pytest.mark.parametrize("gelu", ["tanh", "none"])
def test_nhp_through_the_fast_path_equals_nested_jvp(gelu):
    torch.manual_seed(0)
    decoder = _randomized(Decoder(6, widths=(8, 8), cond_dim=16, image_size=16, gelu_approximate=gelu))
    z, _ = _points(5, 6)
    s = LF.latent_std(z)
    fast = _Activations(decoder, ["cond"])
    assert fast.second_derivatives(z, z) is not None  # the fast path is taken
    value, grads = _nhp_and_grads(fast, decoder, z, s)
    ref_value, ref_grads = _nhp_and_grads(lambda y: decoder.activations(y, ["cond"]), decoder, z, s)
    assert 0.05 < value.item() < 10.0  # a generic decoder: far from 0 (diagonal), finite
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-12)
    for g, w in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-12)


def test_the_fast_path_is_declined_where_it_does_not_apply():
    decoder = Decoder(4, widths=(8, 4), cond_dim=16, image_size=8)
    z, v = torch.randn(3, 4), torch.randn(3, 4)
    assert _Activations(decoder, ["cond", "block0"]).second_derivatives(z, v) is None  # convolutions
    assert _Activations(decoder, ["cond"], torch.float64).second_derivatives(z, v) is None  # a cast decoder
    same_dtype = _Activations(decoder, ["cond"], torch.float32).second_derivatives(z, v)
    assert same_dtype is not None and same_dtype[0].shape == (3, 16)
