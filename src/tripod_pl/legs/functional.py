"""The mathematics of every leg as plain functions of tensors (docs/legs.md, one section per leg).

This module is a public contract: each function is independent of Lightning and of the networks, works in
any dtype on any device, and is tested in float64 against slow NumPy formulas. Symbols follow docs/legs.md:
``b`` batch size, ``n_z`` number of latents, ``s`` per-latent standard deviations, ``eps`` the perturbation
scale, ``k`` the number of random draws.

Example:
    >>> z_c, z = fsq(torch.randn(8, 4), n_q=12)
    >>> s = z_c.std(0, unbiased=False) + 1e-6
    >>> loss = klm(z, s)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "fsq",
    "scalar_quantize",
    "klm",
    "silverman_factor",
    "nhp",
    "hessian_penalty",
    "beta_tc",
    "latent_std",
    "NHP_METHODS",
]

#: how the Hessian penalties get second directional derivatives (docs/legs.md, "NHP", "Second derivatives")
NHP_METHODS = ("finite_difference", "jvp")

_LOG_2PI = math.log(2.0 * math.pi)

ActivationFn = Callable[[Tensor], Sequence[Tensor]]


def latent_std(z_c: Tensor, floor: float = 1e-6) -> Tensor:
    """Per-latent std over the batch, ``s_k = std_i(z_c[i, k]) + floor`` (population std, gradients flow)."""
    return z_c.std(dim=0, unbiased=False) + floor


def fsq(h: Tensor, n_q: int) -> tuple[Tensor, Tensor]:
    """Finite scalar quantization (Mentzer et al. 2023), Tripod's first leg (docs/legs.md, "FSQ").

    ``z_c = tanh(h)`` and ``z_q = 2/(n_q-1) * round((n_q-1)/2 * (z_c+1)) - 1``, an n_q-level grid on [-1, 1].
    Returns ``(z_c, z)`` with ``z = z_c + sg(z_q - z_c)``: the forward value is ``z_q`` and the gradient is
    the straight-through identity. The rounding runs in float32 (or float64) even under bf16 autocast,
    because bf16 cannot hold a fine grid.
    """
    if n_q < 2:
        raise ValueError(f"fsq needs n_q >= 2 quantization levels, got {n_q}")
    dtype = h.dtype if h.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=h.device.type, enabled=False):
        z_c = torch.tanh(h.to(dtype))
        half = (n_q - 1) / 2.0
        z_q = torch.round(half * (z_c + 1.0)) / half - 1.0
        z = z_c + (z_q - z_c).detach()
    return z_c, z


def scalar_quantize(z_c: Tensor, codebook: Tensor) -> tuple[Tensor, Tensor]:
    """Per-latent scalar codebook quantization (QLAE, Hsu et al. 2023; docs/legs.md, "Scalar codebook (QLAE)").

    ``codebook`` is (n_z × n_v): latent j snaps to the nearest of its own n_v values.
    Returns ``(z_q, z)`` where ``z_q`` is the nearest code (differentiable w.r.t. the codebook) and
    ``z = z_c + sg(z_q - z_c)`` carries the straight-through gradient to ``z_c``.
    """
    if codebook.dim() != 2 or codebook.shape[0] != z_c.shape[-1]:
        raise ValueError(f"codebook must be (n_z={z_c.shape[-1]}) x n_v, got {tuple(codebook.shape)}")
    dist = (z_c.unsqueeze(-1) - codebook).abs()  # b × n_z × n_v
    idx = dist.argmin(dim=-1, keepdim=True)
    z_q = torch.gather(codebook.expand(z_c.shape[0], -1, -1), -1, idx).squeeze(-1)
    z = z_c + (z_q - z_c).detach()
    return z_q, z


def silverman_factor(n_z: int, b: int) -> float:
    """Silverman's rule-of-thumb factor ``c = (4/(n_z+2))^(1/(n_z+4)) * b^(-1/(n_z+4))``."""
    return (4.0 / (n_z + 2)) ** (1.0 / (n_z + 4)) * b ** (-1.0 / (n_z + 4))


def _log_normal(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Elementwise ``log N(x; mean, std^2)``."""
    return -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * _LOG_2PI


def klm(z: Tensor, s: Tensor, rows: slice | None = None) -> Tensor:
    """Kernel estimate of latent multiinformation (KLM), Tripod's second leg (docs/legs.md, "KLM").

    With Gaussian kernels over the batch, joint bandwidth ``h_k = s_k * c`` (Silverman factor ``c``) and
    marginal bandwidth ``s_k``::

        log q(z_i)      = logsumexp_j sum_k log N(z_ik; z_jk, h_k^2) - log b
        log q_k(z_ik)   = logsumexp_j log N(z_ik; z_jk, s_k^2)        - log b
        KLM             = mean_i [ log q(z_i) - sum_k log q_k(z_ik) ]

    Args:
        z: latents, b × n_z (the quantized ones in Tripod).
        s: per-latent stds, n_z (of the continuous latents, gradients flow through them).
        rows: the samples ``i`` averaged over (default all); every sample ``j`` is a kernel centre. Used
            under DDP, where ``z`` is the gathered global batch and each rank averages its own rows.
    Returns:
        0-dim tensor.
    """
    b, n_z = z.shape
    if s.shape != (n_z,):
        raise ValueError(f"s must have shape ({n_z},), got {tuple(s.shape)}")
    h = s * silverman_factor(n_z, b)
    queries = z if rows is None else z[rows]
    diff = queries.unsqueeze(1) - z.unsqueeze(0)  # b(i) × b(j) × n_z
    log_b = math.log(b)
    log_joint = torch.logsumexp(_log_normal(diff, 0.0, h).sum(-1), dim=1) - log_b  # b
    log_marg = torch.logsumexp(_log_normal(diff, 0.0, s), dim=1) - log_b  # b × n_z
    return (log_joint - log_marg.sum(-1)).mean()


def _second_differences(f: ActivationFn, z: Tensor, u: Tensor) -> list[Tensor]:
    """``D_u f = f(z+u) + f(z-u) - 2 f(z)`` up to the ``-2 f(z) / eps^2`` shift and scale.

    ``u`` is (D × b × n_z) for D draws. All 2D perturbed copies go through ``f`` in one batched call.
    The centre term ``f(z)`` is the same for every draw, so it cancels in the variance over draws
    and is not evaluated. Returns, per activation, a (D × b × units) tensor of ``f(z+u) + f(z-u)``.
    """
    d, b, n_z = u.shape
    batch = torch.cat([z.unsqueeze(0) + u, z.unsqueeze(0) - u], dim=0).reshape(2 * d * b, n_z)
    outs = []
    for act in f(batch):
        act = _upcast(act).reshape(2, d, b, -1)  # differences of nearby values need float32
        outs.append(act[0] + act[1])
    return outs


def _upcast(act: Tensor) -> Tensor:
    return act.float() if act.dtype in (torch.float16, torch.bfloat16) else act


def _second_derivatives(f: ActivationFn, z: Tensor, v: Tensor) -> list[Tensor]:
    """Exact second directional derivatives ``v^T H v = d^2/dt^2 a(z + t v) |_{t=0}`` of every unit of every
    activation, by forward-mode AD nested twice (``torch.func.jvp`` of ``torch.func.jvp``): no differences of
    nearby values, hence no cancellation in any dtype. Where ``f`` offers ``f.second_derivatives(z, v)`` (the
    decoder's Taylor propagation through its conditioning MLP, :mod:`tripod_pl.nets.taylor`) and it returns a
    list, that gives the same derivatives without ``torch.func``'s overhead.

    ``v`` is (D × b × n_z) for D directions; the D copies of the batch go through ``f`` in one batched call
    (``f`` must treat rows independently, as the decoders do). Gradients reach ``z``, ``v`` and whatever ``f``
    closes over (the decoder's parameters) by ordinary backpropagation. Returns, per activation, a
    (D × b × units) tensor.
    """
    d, b, n_z = v.shape
    points = z.unsqueeze(0).expand(d, b, n_z).reshape(d * b, n_z)
    directions = v.reshape(d * b, n_z)
    jets = getattr(f, "second_derivatives", None)  # the decoder's own Taylor propagation, where it has one
    second = jets(points, directions) if jets is not None else None
    if second is not None:
        return [_upcast(act).reshape(d, b, -1) for act in second]

    def first(x: Tensor) -> tuple[Tensor, ...]:
        return torch.func.jvp(lambda y: tuple(f(y)), (x,), (directions,))[1]

    second = torch.func.jvp(first, (points,), (directions,))[1]
    return [_upcast(act).reshape(d, b, -1) for act in second]


def _directional(f: ActivationFn, z: Tensor, w: Tensor, eps: float, method: str) -> list[Tensor]:
    """Per activation, (D × b × units) values of ``w^T H w`` up to a per-unit constant that is the same for
    every draw (it cancels in the variances over draws): central second differences with step ``eps * w``
    divided by ``eps^2`` (``"finite_difference"``), or the exact derivatives (``"jvp"``, ``eps`` unused)."""
    if method == "jvp":
        return _second_derivatives(f, z, w)
    return [d2 / eps**2 for d2 in _second_differences(f, z, eps * w)]


def _check_draws(k: int, eps: float, method: str = "finite_difference") -> None:
    if method not in NHP_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, NHP_METHODS))}, got {method!r}")
    if k < 2:
        raise ValueError(f"the variance over draws needs k >= 2 draws, got k={k}")
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")


def _rademacher(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    r = torch.randint(0, 2, shape, device=like.device, generator=generator)
    return r.to(like.dtype) * 2 - 1


def nhp(
    f: ActivationFn,
    z: Tensor,
    s: Tensor,
    eps: float = 0.1,
    k: int = 2,
    generator: torch.Generator | None = None,
    method: str = "finite_difference",
) -> Tensor:
    """Normalized Hessian penalty (NHP), Tripod's third leg (docs/legs.md, "NHP").

    For each activation tensor ``a`` returned by ``f`` and each sample, with second-order central differences
    ``D_u a = (a(z+u) - 2 a(z) + a(z-u)) / eps^2``::

        N = Var_draws[D_u a],  u = eps * r * s,  r Rademacher   (off-diagonal Hessian mass)
        M = Var_draws[D_u a],  u = eps * g * s,  g ~ N(0, I)      (total Hessian mass)
        NHP = mean_batch sum_activations mean_units(N) / (mean_units(M) + 1e-10)

    In expectation the ratio is the off-diagonal share of the std-rescaled squared Hessian, hence invariant
    to rescaling any latent (with its std) or any whole activation. The 4k perturbed copies of the batch go
    through ``f`` in one call.

    Args:
        f: maps an (m × n_z) batch of latents to a sequence of activations with leading dimension m.
        z: latents, b × n_z.
        s: per-latent stds, n_z.
        eps: perturbation scale; k: number of draws (>= 2).
        method: ``"finite_difference"`` (the central differences above) or ``"jvp"``: ``D_u a`` replaced by
            its limit ``eps -> 0``, the exact ``(u/eps)^T H (u/eps)`` by nested forward-mode AD, free of the
            rounding that swamps float32 differences when ``s`` is small (``eps`` then unused).
    Returns:
        0-dim tensor.
    """
    return nhp_parts(f, z, s, eps, k, generator, method)[0]


def nhp_parts(
    f: ActivationFn,
    z: Tensor,
    s: Tensor,
    eps: float = 0.1,
    k: int = 2,
    generator: torch.Generator | None = None,
    method: str = "finite_difference",
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """:func:`nhp` with its parts: ``(NHP, [NHP of each activation], [mean_batch mean_units N of each
    activation])``, the last the numerator alone -- a Hessian penalty with std-rescaled perturbations, what the
    Tripod authors' code logs as ``hessian_penalty`` (with the unbiased variance here)."""
    _check_draws(k, eps, method)
    b, n_z = z.shape
    r = _rademacher((k, b, n_z), z, generator)
    # drawn in float32 whatever the dtype of z, so that the same seed gives the same draws in float64
    g = torch.randn((k, b, n_z), device=z.device, generator=generator).to(z.dtype)
    w = torch.cat([r, g], dim=0) * s  # 2k × b × n_z, the perturbations u = eps * w
    total = z.new_zeros(b)
    ratios, numerators = [], []
    for d2 in _directional(f, z, w, eps, method):
        num = d2[:k].var(dim=0).mean(-1)  # b
        den = d2[k:].var(dim=0).mean(-1)
        ratio = num / (den + 1e-10)
        total = total + ratio
        ratios.append(ratio.mean())
        numerators.append(num.mean())
    return total.mean(), ratios, numerators


def hessian_penalty(
    f: ActivationFn,
    z: Tensor,
    eps: float = 0.1,
    k: int = 2,
    generator: torch.Generator | None = None,
    method: str = "finite_difference",
) -> Tensor:
    """Unnormalized Hessian penalty (Peebles et al. 2020), used by naive Tripod (docs/legs.md, "Hessian penalty").

    ``mean_batch sum_activations mean_units Var_draws[D_u a]`` with ``u = eps * r``, ``r`` Rademacher,
    no std rescaling. The variance over draws is unbiased (divides by k-1), so per unit
    ``E[HP] = 2 sum_{j != l} H_jl^2``.

    Why this and not the term the Tripod authors' code logs: that code (``Autoencoder.hessian_regularization``,
    key ``hessian_penalty``) perturbs by ``eps * r * s`` (``s`` the latents' batch stds) and takes ``jnp.var``
    (ddof 0, half the unbiased value at k = 2); it is a by-product of NHP's numerator, weighted 0 in every
    shipped config, and no config trains naive Tripod. The Tripod paper defines naive Tripod as the earlier
    techniques combined as published, and presents the rescaling by ``s`` (the invariance to the latents' scale)
    as one of Tripod's adaptations, part of NHP. Naive Tripod therefore gets the Hessian penalty paper's
    estimator (its Eq. 5 and official implementation: unscaled Rademacher directions, unbiased variance). Units
    are averaged, as in the Tripod authors' code, where Peebles et al.'s implementation takes the maximum.
    ``method`` as for :func:`nhp` (``"jvp"``: exact ``r^T H r``, the limit ``eps -> 0``).
    """
    return hessian_penalty_parts(f, z, eps, k, generator, method)[0]


def hessian_penalty_parts(
    f: ActivationFn,
    z: Tensor,
    eps: float = 0.1,
    k: int = 2,
    generator: torch.Generator | None = None,
    method: str = "finite_difference",
) -> tuple[Tensor, list[Tensor]]:
    """:func:`hessian_penalty` with its parts: ``(HP, [HP of each activation])``."""
    _check_draws(k, eps, method)
    b, n_z = z.shape
    w = _rademacher((k, b, n_z), z, generator)
    total = z.new_zeros(b)
    parts = []
    for d2 in _directional(f, z, w, eps, method):
        per_sample = d2.var(dim=0).mean(-1)
        total = total + per_sample
        parts.append(per_sample.mean())
    return total.mean(), parts


def beta_tc(z: Tensor, mu: Tensor, sigma: Tensor, dataset_size: int, rows: slice | None = None) -> dict[str, Tensor]:
    """beta-TC decomposition of the aggregate KL (Chen et al. 2018), minibatch-weighted sampling
    (docs/legs.md, "beta-TC").

    With ``log q(z_i|x_j) = sum_k log N(z_ik; mu_jk, sigma_jk^2)`` and dataset size N::

        log q(z_i)     ~ logsumexp_j log q(z_i|x_j)             - log(b N)
        log q_k(z_ik)  ~ logsumexp_j log N(z_ik; mu_jk, sigma_jk^2) - log(b N)
        mi   = mean_i [ log q(z_i|x_i) - log q(z_i) ]
        tc   = mean_i [ log q(z_i) - sum_k log q_k(z_ik) ]
        dwkl = mean_i [ sum_k log q_k(z_ik) - log p(z_i) ],   p = N(0, I)

    Returns a dict with keys ``mi``, ``tc``, ``dwkl``: batch means in nats (not divided by pixel count).
    ``rows`` selects the samples ``i`` averaged over (default all), as in :func:`klm`.
    """
    b, _ = z.shape
    log_b_n = math.log(b * dataset_size)
    if rows is not None:
        z, mu_i, sigma_i = z[rows], mu[rows], sigma[rows]
    else:
        mu_i, sigma_i = mu, sigma
    log_pair = _log_normal(z.unsqueeze(1), mu.unsqueeze(0), sigma.unsqueeze(0))  # b(i) × b(j) × n_z
    log_q_z_given_x = _log_normal(z, mu_i, sigma_i).sum(-1)
    log_q_z = torch.logsumexp(log_pair.sum(-1), dim=1) - log_b_n
    log_q_marg = (torch.logsumexp(log_pair, dim=1) - log_b_n).sum(-1)
    log_p_z = (-0.5 * z**2 - 0.5 * _LOG_2PI).sum(-1)
    return {
        "mi": (log_q_z_given_x - log_q_z).mean(),
        "tc": (log_q_z - log_q_marg).mean(),
        "dwkl": (log_q_marg - log_p_z).mean(),
    }


def ssim(
    pred: Tensor, target: Tensor, filter_size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
) -> Tensor:
    """Per-image mean SSIM (Wang et al. 2004) of images in [0, 1] (N x C x H x W), as ``dm_pix.ssim`` with its
    defaults computes it (the Tripod authors' SSIM loss): a normalized Gaussian window of ``filter_size`` taps
    and std ``sigma`` applied per channel without padding (the map covers the valid region), variances clipped
    at ``eps_float32^2`` and the covariance's magnitude at ``sqrt(var_a var_b)``,
    ``((2 mu_a mu_b + c1)(2 cov + c2)) / ((mu_a^2 + mu_b^2 + c1)(var_a + var_b + c2))`` with
    ``c1 = k1^2, c2 = k2^2``, averaged over the map and the channels."""
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"expected two N x C x H x W images of the same shape, got {tuple(pred.shape)}, {tuple(target.shape)}"
        )
    channels = pred.shape[1]
    taps = torch.arange(filter_size, dtype=pred.dtype, device=pred.device) - filter_size // 2
    taps = taps + (2 * (filter_size // 2) - filter_size + 1) / 2
    window = torch.exp(-0.5 * (taps / sigma) ** 2)
    window = window / window.sum()
    kernel = (window[:, None] * window[None, :]).expand(channels, 1, filter_size, filter_size)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(z, kernel, groups=channels)

    mu_a, mu_b = blur(pred), blur(target)
    var_a = (blur(pred * pred) - mu_a**2).clamp_min(torch.finfo(torch.float32).eps ** 2)
    var_b = (blur(target * target) - mu_b**2).clamp_min(torch.finfo(torch.float32).eps ** 2)
    cov = blur(pred * target) - mu_a * mu_b
    cov = torch.sign(cov) * torch.minimum(torch.sqrt(var_a * var_b), cov.abs())
    c1, c2 = k1**2, k2**2
    ssim_map = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(1, 2, 3))


def dssim(pred: Tensor, target: Tensor) -> Tensor:
    """Structural dissimilarity ``mean_batch (1 - SSIM) / 2`` of images in [0, 1], the Tripod authors'
    alternative reconstruction loss (``structural_dissimilarity_index_measure``, on ``sigmoid(logits)`` and
    ``(x + 1) / 2``); see :func:`ssim`."""
    return ((1 - ssim(pred, target)) / 2).mean()
