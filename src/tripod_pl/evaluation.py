"""The paper's evaluation protocol for a model (docs/evaluation.md), shared by the callback and the command.

:func:`evaluate_model` encodes the fixed evaluation subset (uint8 images and their sources) with a model's
evaluation latents (quantized values, ``mu`` or ``z``), reconstructs it, and computes InfoMEC
(:func:`tripod_pl.metrics.infomec`), DCI (:func:`tripod_pl.metrics.dci`) and the per-image reconstruction PSNR,
both the correct one (:func:`tripod_pl.metrics.reconstruction.psnr`, ``psnr``) and the reference's uint8 one on
the scale of the paper's selection thresholds (:func:`~tripod_pl.metrics.reconstruction.psnr_paper`,
``psnr_paper``) -- all on the model's device.
:class:`~tripod_pl.callbacks.EvaluationCallback` runs it during training, ``tripod-train evaluate``
(:mod:`tripod_pl.cli.evaluate`) on a checkpoint. Nothing here imports Lightning.

Example:
    >>> images, sources = HDF5DataModule("data/procedural.h5").eval_subset()
    >>> result = evaluate_model(load_model("runs/quickstart/checkpoints/last.ckpt").model, images, sources)
    >>> result.scalars["infom"], result.scalars["psnr"], result.scalars["psnr_paper"], result.nmi.shape
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from tripod_pl import metrics as _metrics
from tripod_pl.data.transforms import to_float_images
from tripod_pl.metrics.reconstruction import psnr as _psnr
from tripod_pl.metrics.reconstruction import psnr_paper as _psnr_paper
from tripod_pl.model import TripodAutoencoder
from tripod_pl.tensors import to_numpy

__all__ = [
    "CAPTURED_NMI",
    "SCALARS",
    "best_active_latents",
    "Evaluation",
    "decode_latents",
    "decoder_hessian_stats",
    "encode_and_reconstruct",
    "eval_mode",
    "evaluate_model",
    "hessian_summary",
]

#: the scalar results of an evaluation, in report order
SCALARS = (
    "infom", "infoc", "infoe", "d", "c", "i", "num_active", "psnr", "psnr_paper", "weight_norm/encoder",
    "weight_norm/decoder",
)  # fmt: skip

#: a source is captured when some active latent has at least this NMI with it
CAPTURED_NMI = 0.5


def best_active_latents(nmi: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per source, its most informative active latent and that NMI: ``(K latent indices, K NMIs)``, with index
    -1 and NMI 0 for every source when no latent is active. ``nmi`` is K x n_z, ``active`` n_z booleans."""
    nmi, active = np.asarray(nmi, dtype=np.float64), np.asarray(active, dtype=bool)
    if not active.any():
        return np.full(nmi.shape[0], -1), np.zeros(nmi.shape[0])
    best = np.argmax(np.where(active[None, :], nmi, -np.inf), axis=1)
    return best, nmi[np.arange(nmi.shape[0]), best]


@dataclass
class Evaluation:
    """The result of :func:`evaluate_model`.

    Attributes:
        scalars: ``infom, infoc, infoe, num_active, psnr, psnr_paper``, the L2 norms of all encoder and decoder
            parameters ``weight_norm/encoder, weight_norm/decoder`` (as the authors' evaluation logs them) and,
            with DCI, ``d, c, i`` (plain floats).
        nmi: K x n_z normalized mutual information ``I(s_i; z_j) / H(s_i)``.
        active: n_z booleans, the active latents.
        importance: n_z x K DCI importance matrix R (``None`` without DCI).
        latents: N x n_z evaluation latents (float32, on the model's device).
        seconds: wall time of the evaluation.
    """

    scalars: dict[str, float]
    nmi: np.ndarray
    active: np.ndarray
    importance: np.ndarray | None
    latents: Tensor
    seconds: float


def _weight_norm(module: nn.Module) -> float:
    """``sqrt(sum of squares of every parameter)`` of ``module``."""
    with torch.no_grad():
        return float(torch.sqrt(sum((p.detach().double() ** 2).sum() for p in module.parameters())))


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _dtype_of(model: nn.Module) -> torch.dtype:
    param = next(model.parameters(), None)
    return param.dtype if param is not None and param.is_floating_point() else torch.float32


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode under ``no_grad``; afterwards every submodule gets its own train/eval flag back."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for m, training in modes:
            m.training = training


def encode_and_reconstruct(
    model: TripodAutoencoder, images: Tensor, batch_size: int = 500, keep: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Evaluation latents and per-image reconstruction PSNR of uint8 images (N x H x W x 3), in batches.

    Runs in eval mode under ``no_grad`` on the model's device, in the model's parameter dtype, outside any
    autocast. Returns ``(latents N x n_z float32, psnr N float32, reconstructions of the first `keep` images
    in [-1, 1])``, all on the model's device.

    A bottleneck that samples in eval mode (beta-TCVAE's ``GaussianBottleneck(sample_in_eval=True)``, as the
    reference) is reconstructed from its sample ``z``, drawn from a fixed seed (the reference uses a fixed
    evaluation key); the latents stay its evaluation latents (``mu``).
    """
    latents, psnr, _, recons = _encode_and_reconstruct(model, images, batch_size, keep)
    return latents, psnr, recons


def _encode_and_reconstruct(
    model: TripodAutoencoder, images: Tensor, batch_size: int = 500, keep: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`encode_and_reconstruct`, with the reference's uint8 PSNR (``psnr_paper``) third."""
    device, dtype = _device_of(model), _dtype_of(model)
    latents, psnr, psnr_paper, recons = [], [], [], []
    sampled = bool(getattr(model.bottleneck, "sample_in_eval", False))
    rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else []) if sampled else None
    with eval_mode(model), torch.autocast(device.type, enabled=False), rng or contextlib.nullcontext():
        if sampled:
            torch.manual_seed(0)
        for start in range(0, images.shape[0], batch_size):
            x = to_float_images(images[start : start + batch_size].to(device, non_blocking=True), dtype)
            z = model.encode(x)
            r = (model.reconstruct(x) if sampled else model.decode(z)).float()
            latents.append(z.float())
            psnr.append(_psnr((r + 1) / 2, (x.float() + 1) / 2))
            psnr_paper.append(_psnr_paper(r, x.float()))
            if start < keep:
                recons.append(r[: keep - start])
    empty = torch.empty(0, 3, *images.shape[1:3], device=device)
    return torch.cat(latents), torch.cat(psnr), torch.cat(psnr_paper), torch.cat(recons) if recons else empty


def decode_latents(model: TripodAutoencoder, latents: Tensor, batch_size: int = 500) -> Tensor:
    """Images in [-1, 1] (float32, N x 3 x H x W) decoded from ``latents`` in batches, like
    :func:`encode_and_reconstruct`: eval mode, ``no_grad``, the model's device and dtype, no autocast."""
    device, dtype = _device_of(model), _dtype_of(model)
    with eval_mode(model), torch.autocast(device.type, enabled=False):
        return torch.cat(
            [
                model.decode(latents[i : i + batch_size].to(device, dtype)).float()
                for i in range(0, latents.shape[0], batch_size)
            ]
        )


def evaluate_model(
    model: TripodAutoencoder,
    images: Tensor,
    sources: Tensor,
    dci: bool = True,
    backend: str = "torch",
    batch_size: int = 500,
    infoe_protocol: str = "paper",
    hessian_samples: int = 0,
) -> Evaluation:
    """InfoMEC, DCI and reconstruction PSNR of ``model`` on uint8 ``images`` (N x H x W x 3) with ``sources``
    (N x K integer indices), computed on the model's device. ``infoe_protocol``: ``"paper"`` (the authors'
    iteration-limited fit and unweighted log-loss, for numbers comparable with the paper's) or ``"converged"``
    (:func:`tripod_pl.metrics.infomec`). ``hessian_samples > 0`` adds the exact decoder Hessian statistics of
    :func:`decoder_hessian_stats` on that many samples to the scalars (``hessian/...``)."""
    if images.shape[0] != sources.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {sources.shape[0]} rows of sources")
    t0 = time.perf_counter()
    latents, psnr, psnr_paper, _ = _encode_and_reconstruct(model, images, batch_size)
    sources = torch.as_tensor(sources).to(latents.device)
    info = _metrics.infomec(
        sources, latents, discrete=bool(model.discrete_latents), backend=backend, infoe_protocol=infoe_protocol
    )
    active = to_numpy(info["active"], dtype=bool)
    scalars = {
        "infom": float(info["infom"]),
        "infoc": float(info["infoc"]),
        "infoe": float(info["infoe"]),
        "num_active": float(active.sum()),
        "psnr": float(psnr.mean()),
        "psnr_paper": float(psnr_paper.mean()),
        **{f"weight_norm/{name}": _weight_norm(getattr(model, name)) for name in ("encoder", "decoder")},
    }
    importance = None
    if dci:
        out = _metrics.dci(sources, latents, backend=backend)
        scalars.update(d=float(out["d"]), c=float(out["c"]), i=float(out["i"]))
        importance = to_numpy(out["importance"], dtype=np.float64)
    scalars = {k: scalars[k] for k in SCALARS if k in scalars}
    if hessian_samples > 0:
        scalars.update(decoder_hessian_stats(model, latents, hessian_samples))
    nmi = to_numpy(info["nmi"], dtype=np.float64)
    return Evaluation(scalars, nmi, active, importance, latents, time.perf_counter() - t0)


def hessian_summary(hessians: Tensor, std: Tensor) -> dict[str, float]:
    """Diagonal vs off-diagonal mass of Hessians ``H`` (units x n_z x n_z), raw and std-rescaled.

    As the Tripod authors' evaluation (``process_layer_hessian`` / ``compute_stats`` in their
    ``scripts/train_autoencoder.py``): for ``A = |H|`` and ``A = |H * s s^T|`` (``s`` the latents' stds), per
    unit the diagonal mean, the off-diagonal mean ``sum_{j != l} A_jl / (n (n - 1))`` and the diagonal share
    ``diag / (diag + off + 1e-10)``, each averaged over units. Keys ``<raw|rescaled>/<statistic>``.
    """
    n = hessians.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=hessians.device)
    out: dict[str, float] = {}
    for kind, a in (("raw", hessians.abs()), ("rescaled", (hessians * std[:, None] * std[None, :]).abs())):
        diagonal = a.diagonal(dim1=-2, dim2=-1).mean(-1)
        off = a.masked_fill(eye, 0).sum((-2, -1)) / max(n * (n - 1), 1)
        out[f"{kind}/diagonal_mean"] = float(diagonal.mean())
        out[f"{kind}/off_diagonal_mean"] = float(off.mean())
        out[f"{kind}/diagonal_share"] = float((diagonal / (diagonal + off + 1e-10)).mean())
    return out


def decoder_hessian_stats(
    model: TripodAutoencoder, latents: Tensor, num_samples: int = 8, names: tuple[str, ...] | None = None
) -> dict[str, float]:
    """Exact Hessians of the decoder's named activations with respect to the latents, at the first
    ``num_samples`` rows of ``latents`` (``torch.func.jacfwd`` twice), summarized by :func:`hessian_summary`
    with ``s`` the std of ``latents`` (+1e-6) and averaged over the samples. Keys
    ``hessian/<activation>/<raw|rescaled>/<statistic>``; every activation of the decoder by default. The
    authors' evaluation does this on 100 samples; memory grows as units x n_z^2 per sample."""
    device, dtype = _device_of(model), _dtype_of(model)
    decoder = model.decoder
    names = tuple(names or decoder.names)
    z = latents[:num_samples].to(device, dtype)
    std = latents.to(device, dtype).std(0, unbiased=False) + 1e-6
    totals: dict[str, float] = {}
    with eval_mode(model), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        for name in names:

            def unit_values(zi: Tensor, name: str = name) -> Tensor:
                return decoder.activations(zi[None], [name])[0].reshape(-1)

            for zi in z:
                hessians = torch.func.jacfwd(torch.func.jacfwd(unit_values))(zi).detach()
                for key, value in hessian_summary(hessians.double(), std.double()).items():
                    full = f"hessian/{name}/{key}"
                    totals[full] = totals.get(full, 0.0) + value / len(z)
    return totals
