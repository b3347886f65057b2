"""Regularizer legs (docs/legs.md, "Regularizers"): KLM and NHP (Tripod), the Hessian penalty (naive Tripod),
beta-TC."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tripod_pl.legs import functional as LF
from tripod_pl.legs.base import Regularizer, StepContext
from tripod_pl.legs.distributed import BatchStats, gather_batch
from tripod_pl.legs.registry import register_leg

__all__ = ["KLM", "NHP", "BetaTC", "HessianPenalty"]

DEFAULT_ACTIVATIONS = ("cond", "block0", "block1", "block2")


def _full_precision(t: Tensor) -> Tensor:
    """``t`` in float32 (float64 stays): kernel density estimates of nearby latents need more than bf16."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


@register_leg("klm")
class KLM(Regularizer):
    """Kernel latent multiinformation, Tripod's second leg (see :func:`functional.klm`), on the decoder's
    latents ``z`` with bandwidths from the std ``s`` of the continuous latents; in float32 with autocast off
    (under ``bf16-mixed`` too).

    Args:
        weight: lambda_KLM.
        fixed_std: if set, every ``s_k`` is this constant instead of the batch std ("fixed bandwidths" of
            naive Tripod).
        batch_stats: under DDP, ``"global"`` estimates over the batch gathered from all ranks (N GPUs x b/N
            matches 1 GPU x b), ``"local"`` over each rank's own samples.
    """

    def __init__(
        self, weight: float = 1e-4, fixed_std: float | None = None, batch_stats: BatchStats = "global"
    ) -> None:
        super().__init__()
        self.weight, self.fixed_std, self.batch_stats = weight, fixed_std, batch_stats

    @property
    def weights(self) -> dict[str, float]:
        return {"klm": self.weight}

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:
        lat = ctx.latents
        with torch.autocast(lat.z.device.type, enabled=False):  # float32 under bf16-mixed
            z, rows = gather_batch(_full_precision(lat.z), self.batch_stats)
            if self.fixed_std is None:
                s = LF.latent_std(gather_batch(_full_precision(lat.z_c), self.batch_stats)[0])
            else:
                s = torch.full((z.shape[1],), self.fixed_std, device=z.device, dtype=z.dtype)
            return {"klm": LF.klm(z, s, rows=rows)}


_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class _DecoderPenalty(Regularizer):
    full_precision = False  # the decoder passes run at the training precision (see ``dtype``)

    def __init__(
        self,
        weight: float,
        activations: Sequence[str],
        eps: float,
        k: int,
        dtype: str | None,
        diagnostics: bool,
        method: str,
    ) -> None:
        super().__init__()
        if k < 2:
            raise ValueError(f"k must be >= 2 draws, got {k}")
        if method not in LF.NHP_METHODS:
            raise ValueError(f"method must be one of {', '.join(map(repr, LF.NHP_METHODS))}, got {method!r}")
        self.method = method
        if dtype is not None and dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or null, got {dtype!r}")
        self.weight, self.activations, self.eps, self.k = weight, list(activations), eps, k
        self.dtype = None if dtype is None else _DTYPES[dtype]
        self.diagnostics = diagnostics
        #: the latest step's per-activation values (detached; empty without ``diagnostics``), logged by the module
        self.last_diagnostics: dict[str, Tensor] = {}

    def _record(self, prefix: str, values: Sequence[Tensor]) -> None:
        self.last_diagnostics.update(
            {f"{prefix}/{name}": v.detach().float() for name, v in zip(self.activations, values, strict=True)}
        )

    def _f(self, ctx: StepContext):
        return ctx.activations(self.activations, self.dtype)


@register_leg("nhp")
class NHP(_DecoderPenalty):
    """Normalized Hessian penalty of the decoder, Tripod's third leg (see :func:`functional.nhp`), at the
    decoder's latents with the batch std of the continuous latents. Runs the decoder only as far as the
    deepest of ``activations``, all ``4k`` perturbed copies in one batch.

    Args:
        weight: lambda_NHP.
        activations: decoder activations regularized (of ``cond``, ``block0``, ...).
        eps: perturbation scale (finite differences only); k: number of draws.
        batch_stats: under DDP, whether the stds ``s`` come from the gathered global batch or the rank's own.
        dtype: run the perturbed decoder passes in this dtype (``"float64"``, or ``"float32"`` to keep them
            out of bf16 autocast) instead of the training dtype. When the batch stds ``s`` are tiny (early
            training of small models) the second differences of float32 activations are rounding noise and the
            penalty's gradient explodes; float64 passes keep it sane but are slow on GPUs.
        method: ``"finite_difference"`` (central differences with step ``eps * u``, the paper's estimator) or
            ``"jvp"`` (exact second directional derivatives by nested forward-mode AD, the limit ``eps -> 0``:
            no cancellation, sound in float32 at any ``s``, no float64 needed; docs/legs.md, "NHP").
        diagnostics: also record, per regularized activation, its NHP (``nhp/<name>``) and its numerator, the
            Hessian penalty with std-rescaled perturbations (``hessian_penalty_rescaled/<name>``), as the
            authors' code logs every step; free (the same passes), logged by the module as
            ``<stage>/nhp/<name>``.
    """

    def __init__(
        self,
        weight: float = 1e-2,
        activations: Sequence[str] = DEFAULT_ACTIVATIONS,
        eps: float = 0.1,
        k: int = 2,
        batch_stats: BatchStats = "global",
        dtype: str | None = None,
        diagnostics: bool = False,
        method: str = "finite_difference",
    ) -> None:
        super().__init__(weight, activations, eps, k, dtype, diagnostics, method)
        self.batch_stats = batch_stats

    @property
    def weights(self) -> dict[str, float]:
        return {"nhp": self.weight}

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:
        lat = ctx.latents
        s = LF.latent_std(gather_batch(lat.z_c, self.batch_stats)[0])
        z, s = (lat.z, s) if self.dtype is None else (lat.z.to(self.dtype), s.to(self.dtype))
        self.last_diagnostics = {}
        if not self.diagnostics:
            return {"nhp": LF.nhp(self._f(ctx), z, s, eps=self.eps, k=self.k, method=self.method).float()}
        value, ratios, numerators = LF.nhp_parts(self._f(ctx), z, s, eps=self.eps, k=self.k, method=self.method)
        self._record("nhp", ratios)
        self._record("hessian_penalty_rescaled", numerators)
        return {"nhp": value.float()}


@register_leg("hessian_penalty")
class HessianPenalty(_DecoderPenalty):
    """Unnormalized Hessian penalty (Peebles et al. 2020), see :func:`functional.hessian_penalty`. Used by
    naive Tripod together with the decoder's activation normalization (``activation_norm: true``).
    ``dtype`` and ``method`` as for :class:`NHP`. With ``diagnostics``, records per regularized activation its Hessian
    penalty (``hessian_penalty/<name>``, free) and its NHP (``nhp/<name>``, at the batch std of the continuous
    latents: ``4k`` more decoder passes, without gradients), as the authors' code logs both every step."""

    def __init__(
        self,
        weight: float = 1e-2,
        activations: Sequence[str] = DEFAULT_ACTIVATIONS,
        eps: float = 0.1,
        k: int = 2,
        dtype: str | None = None,
        diagnostics: bool = False,
        method: str = "finite_difference",
    ) -> None:
        super().__init__(weight, activations, eps, k, dtype, diagnostics, method)

    @property
    def weights(self) -> dict[str, float]:
        return {"hessian_penalty": self.weight}

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:
        z = ctx.latents.z if self.dtype is None else ctx.latents.z.to(self.dtype)
        self.last_diagnostics = {}
        if not self.diagnostics:
            hp = LF.hessian_penalty(self._f(ctx), z, eps=self.eps, k=self.k, method=self.method)
            return {"hessian_penalty": hp.float()}
        value, parts = LF.hessian_penalty_parts(self._f(ctx), z, eps=self.eps, k=self.k, method=self.method)
        self._record("hessian_penalty", parts)
        with torch.no_grad():
            s = LF.latent_std(ctx.latents.z_c.detach()).to(z.dtype)
            nhp = LF.nhp_parts(self._f(ctx), z.detach(), s, eps=self.eps, k=self.k, method=self.method)
            self._record("nhp", nhp[1])
        return {"hessian_penalty": value.float()}


@register_leg("beta_tc")
class BetaTC(Regularizer):
    """beta-TCVAE's decomposed KL (Chen et al. 2018), see :func:`functional.beta_tc`; needs the Gaussian
    bottleneck. Terms ``mi``, ``tc``, ``dwkl`` are divided by the number of pixels to match the per-pixel
    reconstruction loss, weighted by ``alpha``, ``beta``, ``gamma``. ``batch_stats`` as for :class:`KLM`: the
    minibatch-weighted sums run over the gathered global batch (``"global"``) or each rank's own.
    """

    def __init__(
        self, beta: float = 1.0, alpha: float = 1.0, gamma: float = 1.0, batch_stats: BatchStats = "global"
    ) -> None:
        super().__init__()
        self.beta, self.alpha, self.gamma, self.batch_stats = beta, alpha, gamma, batch_stats
        self.dataset_size: int | None = None

    def build(self, n_z: int, dataset_size: int | None = None) -> None:
        if dataset_size is None or dataset_size < 1:
            raise ValueError("BetaTC needs the dataset size N for minibatch-weighted sampling")
        self.dataset_size = dataset_size

    @property
    def weights(self) -> dict[str, float]:
        return {"mi": self.alpha, "tc": self.beta, "dwkl": self.gamma}

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:
        lat = ctx.latents
        if lat.mu is None or lat.sigma is None:
            raise RuntimeError("BetaTC needs a Gaussian bottleneck (latents with mu and sigma)")
        if self.dataset_size is None:
            raise RuntimeError("BetaTC.build(n_z, dataset_size) must be called before use")
        with torch.autocast(lat.z.device.type, enabled=False):  # float32 under bf16-mixed
            (z, rows), (mu, _), (sigma, _) = (
                gather_batch(_full_precision(t), self.batch_stats) for t in (lat.z, lat.mu, lat.sigma)
            )
            terms = LF.beta_tc(z, mu, sigma, self.dataset_size, rows=rows)
        return {name: value / ctx.num_pixels for name, value in terms.items()}
