"""NHP and the Hessian penalty by exact second directional derivatives (``method="jvp"``, nested forward-mode
AD) against float64 finite differences on a small decoder, gradients included, and where float32 finite
differences break."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripod_pl.legs import FSQ, NHP, HessianPenalty
from tripod_pl.legs import functional as LF
from tripod_pl.legs.base import StepContext, _Activations
from tripod_pl.nets import Decoder
from tripod_pl.nets.blocks import LayerNorm

NAMES = ["cond", "block0"]


def _decoder(dtype=torch.float32) -> Decoder:
    torch.manual_seed(0)
    return Decoder(4, widths=(8, 4), cond_dim=16, image_size=8).to(dtype)


def _latents(scale: float, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return (0.2 + scale * torch.randn(6, 4, generator=gen, dtype=torch.float64)).to(dtype)


def _penalty(decoder, z, method, eps, dtype=None, penalty="nhp"):
    """The penalty and its gradient w.r.t. the decoder's parameters (float64 vector, zeros where unused)."""
    decoder.zero_grad(set_to_none=True)
    f = _Activations(decoder, NAMES, dtype)
    zz = z if dtype is None else z.to(dtype)
    gen = torch.Generator().manual_seed(2)
    if penalty == "nhp":
        s = LF.latent_std(zz)
        value = LF.nhp(f, zz, s, eps=eps, k=3, generator=gen, method=method)
    else:
        value = LF.hessian_penalty(f, zz, eps=eps, k=3, generator=gen, method=method)
    value.backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in decoder.parameters()]
    return value.item(), torch.cat([g.flatten() for g in grads]).double()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_jvp_second_derivatives_equal_float64_finite_differences_per_unit():
    # v^T H v of every unit of every activation against (a(z+hv) + a(z-hv) - 2a(z)) / h^2 in float64; the
    # central difference's truncation is O(h^2) = 1e-8 and its rounding 1e-16 / h^2 = 1e-8 (relative)
    dec = _decoder(torch.float64)
    z, v = _latents(0.5, torch.float64), torch.randn(2, 6, 4, dtype=torch.float64)
    exact = LF._second_derivatives(lambda x: dec.activations(x, NAMES), z, v)
    h = 1e-4
    with torch.no_grad():
        zz = z.expand(2, 6, 4).reshape(12, 4)
        vv = v.reshape(12, 4)
        plus, minus, centre = (dec.activations(zz + t * vv, NAMES) for t in (h, -h, 0.0))
    for got, p, m, c in zip(exact, plus, minus, centre, strict=True):
        fd = ((p + m - 2 * c) / h**2).reshape(2, 6, -1)
        np.testing.assert_allclose(got.detach().numpy(), fd.numpy(), rtol=1e-5, atol=1e-5 * fd.abs().max().item())


def test_layer_norm_is_native_layer_norm_and_right_to_second_order():
    torch.manual_seed(3)
    ours, native = LayerNorm(10).double(), torch.nn.LayerNorm(10).double()
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
    native.load_state_dict(ours.state_dict())
    x, v = torch.randn(5, 10, dtype=torch.float64), torch.randn(5, 10, dtype=torch.float64)
    torch.testing.assert_close(ours(x), native(x))

    def second(fn):
        return torch.func.jvp(lambda y: torch.func.jvp(fn, (y,), (v,))[1], (x,), (v,))[1]

    h = 1e-4
    fd = (native(x + h * v) + native(x - h * v) - 2 * native(x)) / h**2
    torch.testing.assert_close(second(ours), fd.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("penalty", "eps"), [("nhp", 0.02), ("hessian_penalty", 0.006)])
def test_jvp_penalty_and_parameter_gradient_equal_float64_finite_differences(penalty, eps):
    # jvp in float32 against finite differences in float64 on the same draws. float32 jvp carries ~1e-7
    # relative rounding per value, amplified by the variances over draws (differences of values) to ~1e-5.
    # Value: step eps = 1e-3 (truncation (eps s)^2 ~ 1e-7): rtol 1e-4. Gradient: the gradient of float64
    # differences is far more sensitive to rounding than their value (1-5 % off at eps = 1e-3, useless at 1e-4),
    # so the reference is Richardson's extrapolation (4 g(eps/2) - g(eps)) / 3 at steps eps * s or eps ~ 6e-3
    # (NHP's perturbations are rescaled by s ~ 0.3, the Hessian penalty's are not), whose truncation is
    # O(step^4) and rounding ~1e-4: tolerance 1e-3.
    dec32, dec64 = _decoder(), _decoder(torch.float64)
    z = _latents(0.3)
    value, grad = _penalty(dec32, z, "jvp", eps=0.1, penalty=penalty)
    ref_value, _ = _penalty(dec64, z.double(), "finite_difference", eps=1e-3, penalty=penalty)
    _, g_coarse = _penalty(dec64, z.double(), "finite_difference", eps=eps, penalty=penalty)
    _, g_fine = _penalty(dec64, z.double(), "finite_difference", eps=eps / 2, penalty=penalty)
    ref_grad = (4 * g_fine - g_coarse) / 3
    assert ref_grad.norm() > 1
    assert value == pytest.approx(ref_value, rel=1e-4)
    assert _rel(grad, ref_grad) < 1e-3
    assert _rel(g_coarse, ref_grad) > 1e-3  # the extrapolation matters: a plain difference at eps is off


def test_jvp_parameter_gradient_is_the_derivative_of_the_jvp_penalty():
    # backpropagation through the nested jvp against a central difference of the penalty along a random
    # direction in parameter space (float64, step 1e-5: truncation ~1e-10, rounding ~1e-11 relative)
    dec = _decoder(torch.float64)
    z = _latents(0.3, torch.float64)
    _, grad = _penalty(dec, z, "jvp", eps=0.1)
    gen = torch.Generator().manual_seed(4)
    delta = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in dec.parameters()]

    def moved(step: float) -> float:
        with torch.no_grad():
            for p, d in zip(dec.parameters(), delta, strict=True):
                p.add_(step * d)
        try:
            return _penalty(dec, z, "jvp", eps=0.1)[0]
        finally:
            with torch.no_grad():
                for p, d in zip(dec.parameters(), delta, strict=True):
                    p.sub_(step * d)

    h = 1e-5
    numeric = (moved(h) - moved(-h)) / (2 * h)
    analytic = (grad * torch.cat([d.flatten() for d in delta])).sum().item()
    assert abs(analytic) > 1e-2
    assert analytic == pytest.approx(numeric, rel=1e-4)


def test_finite_differences_converge_to_jvp_at_second_order_in_eps():
    dec = _decoder(torch.float64)
    z = _latents(0.5, torch.float64)
    exact, _ = _penalty(dec, z, "jvp", eps=0.1)
    errors = [abs(_penalty(dec, z, "finite_difference", eps=eps)[0] - exact) for eps in (0.1, 0.01)]
    assert errors[0] > 1e-6  # eps = 0.1 is visibly not the limit...
    assert errors[1] == pytest.approx(errors[0] / 100, rel=0.1)  # ...and the error falls as eps^2


def test_float32_finite_differences_break_at_tiny_s_where_jvp_does_not():
    dec32, dec64 = _decoder(), _decoder(torch.float64)
    z = _latents(3e-3)  # batch std s ~ 3e-3: perturbations of 3e-4
    ref_value, ref_grad = _penalty(dec64, z.double(), "finite_difference", eps=0.1)
    fd_value, fd_grad = _penalty(dec32, z, "finite_difference", eps=0.1)
    jvp_value, jvp_grad = _penalty(dec32, z, "jvp", eps=0.1)
    assert _rel(fd_grad, ref_grad) > 10  # rounding noise: the gradient is orders of magnitude off
    assert fd_grad.norm() > 10 * ref_grad.norm()
    assert jvp_value == pytest.approx(ref_value, rel=1e-3)
    assert _rel(jvp_grad, ref_grad) < 1e-2  # at eps * s = 3e-4 the difference is float64 FD's own truncation


def test_legs_take_the_method_and_pass_gradients_to_the_decoder():
    dec = _decoder()
    h = torch.randn(6, 4, requires_grad=True)
    ctx = StepContext(x=torch.zeros(6, 3, 8, 8), latents=FSQ(n_q=12)(h), decoder=dec)
    for leg in (
        NHP(activations=NAMES, method="jvp"),
        HessianPenalty(activations=NAMES, method="jvp", diagnostics=True),
    ):
        dec.zero_grad(set_to_none=True)
        (value,) = leg(ctx).values()
        value.backward(retain_graph=True)
        assert torch.isfinite(value) and value > 0
        assert dec.input.grad is not None and dec.input.grad.norm() > 0
        assert leg.spec()["init_args"]["method"] == "jvp"
    assert set(leg.last_diagnostics) == {f"{kind}/{n}" for kind in ("hessian_penalty", "nhp") for n in NAMES}
    with pytest.raises(ValueError, match="method must be one of"):
        NHP(method="exact")
    with pytest.raises(ValueError, match="method must be one of"):
        LF.nhp(lambda x: [x], torch.zeros(3, 2), torch.ones(2), method="fd")
