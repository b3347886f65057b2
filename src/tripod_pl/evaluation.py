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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric

from tripod_pl.data.transforms import to_float_images
from tripod_pl.metrics.reconstruction import psnr as _psnr
from tripod_pl.metrics.reconstruction import psnr_paper as _psnr_paper
from tripod_pl.metrics.registry import build_metric, metric_name
from tripod_pl.model import TripodAutoencoder
from tripod_pl.tensors import to_numpy

__all__ = [
    "CAPTURED_NMI",
    "DEFAULT_METRICS",
    "SCALARS",
    "best_active_latents",
    "build_metrics",
    "Evaluation",
    "decode_latents",
    "default_batch_size",
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

#: the metrics an evaluation computes unless told otherwise
DEFAULT_METRICS = ("infomec", "dci")

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
        timings: wall seconds of its stages: ``encode`` (encoding and reconstructing), each metric by name,
            ``hessian``.
        outputs: each metric's ``compute()`` by name.
    """

    scalars: dict[str, float]
    nmi: np.ndarray
    active: np.ndarray
    importance: np.ndarray | None
    latents: Tensor
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)


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


def default_batch_size(device: torch.device) -> int:
    """Images per encoder/decoder call when none is given: 128 on a CPU (larger batches fall out of the caches:
    measured 1.7x slower at 500 for the quickstart encoder), 1,024 on an accelerator."""
    return 128 if device.type == "cpu" else 1024


def encode_and_reconstruct(
    model: TripodAutoencoder, images: Tensor, batch_size: int | None = None, keep: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Evaluation latents and per-image reconstruction PSNR of uint8 images (N x H x W x 3), in batches.

    Runs in eval mode under ``torch.inference_mode`` on the model's device, in the model's parameter dtype,
    outside any autocast, ``batch_size`` images at a time (default: :func:`default_batch_size`). Returns
    ``(latents N x n_z float32, psnr N float32, reconstructions of the first `keep` images in [-1, 1])``, all on
    the model's device.

    A bottleneck that samples in eval mode (beta-TCVAE's ``GaussianBottleneck(sample_in_eval=True)``, as the
    reference) is reconstructed from its sample ``z = mu + sigma * eps``, ``eps`` drawn from a generator of its
    own seeded with 0 (the reference uses a fixed evaluation key; the training's random streams are not
    touched, so this may run beside training); the latents stay its evaluation latents (``mu``).
    """
    latents, psnr, _, recons = _encode_and_reconstruct(model, images, batch_size, keep)
    return latents, psnr, recons


def _encode_and_reconstruct(
    model: TripodAutoencoder, images: Tensor, batch_size: int | None = None, keep: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`encode_and_reconstruct`, with the reference's uint8 PSNR (``psnr_paper``) third."""
    device, dtype = _device_of(model), _dtype_of(model)
    batch_size = batch_size or default_batch_size(device)
    latents, psnr, psnr_paper, recons = [], [], [], []
    sampled = bool(getattr(model.bottleneck, "sample_in_eval", False))
    generator = torch.Generator(device=device).manual_seed(0) if sampled else None
    with eval_mode(model), torch.inference_mode(), torch.autocast(device.type, enabled=False):
        for start in range(0, images.shape[0], batch_size):
            x = to_float_images(images[start : start + batch_size].to(device, non_blocking=True), dtype)
            if generator is None:
                z = model.encode(x)
                r = model.decode(z)
            else:
                z, r = _encode_and_sample(model, x, generator)
            latents.append(z.float())
            r = r.float()
            psnr.append(_psnr((r + 1) / 2, (x.float() + 1) / 2))
            psnr_paper.append(_psnr_paper(r, x.float()))
            if start < keep:
                recons.append(r[: keep - start])
    # concatenated outside inference mode: ordinary tensors, usable with autograd (the Hessians) afterwards
    empty = torch.empty(0, 3, *images.shape[1:3], device=device)
    return torch.cat(latents), torch.cat(psnr), torch.cat(psnr_paper), torch.cat(recons) if recons else empty


def _encode_and_sample(model: TripodAutoencoder, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Evaluation latents ``mu`` and the decoding of ``mu + sigma * eps`` for a Gaussian bottleneck that samples
    in eval mode, ``eps`` from ``generator`` (not the global random stream)."""
    bottleneck = model.bottleneck
    bottleneck.sample_in_eval = False  # z = mu: no draw from the global stream
    try:
        latents = bottleneck(model.encoder(x))
    finally:
        bottleneck.sample_in_eval = True
    mu, sigma = getattr(latents, "mu", None), getattr(latents, "sigma", None)
    if mu is None or sigma is None:
        raise TypeError(f"{type(bottleneck).__name__} samples in eval mode but gives no mu and sigma to sample from")
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return latents.z_eval, model.decode(mu + sigma * eps)


def decode_latents(model: TripodAutoencoder, latents: Tensor, batch_size: int | None = None) -> Tensor:
    """Images in [-1, 1] (float32, N x 3 x H x W) decoded from ``latents`` in batches, like
    :func:`encode_and_reconstruct`: eval mode, inference mode, the model's device and dtype, no autocast."""
    device, dtype = _device_of(model), _dtype_of(model)
    batch_size = batch_size or default_batch_size(device)
    with eval_mode(model), torch.inference_mode(), torch.autocast(device.type, enabled=False):
        parts = [
            model.decode(latents[i : i + batch_size].to(device, dtype)).float()
            for i in range(0, latents.shape[0], batch_size)
        ]
    return torch.cat(parts)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _local(metric: Metric) -> Metric:
    """``metric`` computing from this process's states alone: one rank evaluates, the others do not join."""
    metric.sync_on_compute = False
    metric._to_sync = False  # what torchmetrics' compute() reads
    return metric


def build_metrics(
    specs: Sequence[str | dict[str, Any] | Metric],
    discrete: bool,
    backend: str = "torch",
    infoe_protocol: str = "paper",
) -> dict[str, Metric]:
    """The metrics of ``specs`` (names, dotted paths, ``{"class_path", "init_args"}`` dicts or instances;
    :func:`tripod_pl.metrics.registry.build_metric`) by short name, given the evaluation's ``discrete``,
    ``backend`` and ``infoe_protocol`` where their constructors take them. ``infomec`` must be one of them (the
    figures, the console summary and the selection read it)."""
    built: dict[str, Metric] = {}
    for spec in specs:
        name = type(spec).__name__.lower() if isinstance(spec, Metric) else metric_name(spec)
        if name in built:
            raise ValueError(f"metrics: {name!r} is listed twice")
        context = {"discrete": discrete, "backend": backend, "infoe_protocol": infoe_protocol}
        built[name] = _local(build_metric(spec, **context))
    if "infomec" not in built:
        raise ValueError(f"metrics must include 'infomec' (figures, summary and selection read it), got {list(built)}")
    return built


def evaluate_model(
    model: TripodAutoencoder,
    images: Tensor,
    sources: Tensor,
    dci: bool = True,
    backend: str = "torch",
    batch_size: int | None = None,
    infoe_protocol: str = "paper",
    hessian_samples: int = 0,
    metrics: Sequence[str | dict[str, Any] | Metric] | None = None,
    hessian_activations: Sequence[str] | None = None,
) -> Evaluation:
    """InfoMEC, DCI and reconstruction PSNR of ``model`` on uint8 ``images`` (N x H x W x 3) with ``sources``
    (N x K integer indices), computed on the model's device. ``infoe_protocol``: ``"paper"`` (the authors'
    iteration-limited fit and unweighted log-loss, for numbers comparable with the paper's) or ``"converged"``
    (:func:`tripod_pl.metrics.infomec`). ``hessian_samples > 0`` adds the exact decoder Hessian statistics of
    :func:`decoder_hessian_stats` on that many samples to the scalars (``hessian/...``), of the decoder
    activations ``hessian_activations`` (default: all).

    ``metrics``: the metrics computed (:func:`build_metrics`; default :data:`DEFAULT_METRICS`); ``dci=False``
    drops ``dci`` from them. Every float or 0-d entry of a metric's ``compute()`` becomes a scalar of that
    name; two metrics giving the same name is an error."""
    if images.shape[0] != sources.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {sources.shape[0]} rows of sources")
    specs = [s for s in (DEFAULT_METRICS if metrics is None else metrics) if dci or metric_name(s) != "dci"]
    built = build_metrics(specs, bool(model.discrete_latents), backend, infoe_protocol)
    t0 = time.perf_counter()
    latents, psnr, psnr_paper, _ = _encode_and_reconstruct(model, images, batch_size)
    device = latents.device
    _synchronize(device)
    timings = {"encode": time.perf_counter() - t0}
    sources = torch.as_tensor(sources).to(device)
    outputs: dict[str, dict] = {}
    for name, metric in built.items():
        start = time.perf_counter()
        metric = metric.to(device)
        metric.reset()
        metric.update(latents, sources)
        outputs[name] = metric.compute()
        metric.reset()
        timings[name] = time.perf_counter() - start
    info = outputs["infomec"]
    active = to_numpy(info["active"], dtype=bool)
    scalars = {
        "num_active": float(active.sum()),
        "psnr": float(psnr.mean()),
        "psnr_paper": float(psnr_paper.mean()),
        **{f"weight_norm/{name}": _weight_norm(getattr(model, name)) for name in ("encoder", "decoder")},
    }
    for name, out in outputs.items():
        for key, value in out.items():
            if isinstance(value, (int, float, np.floating)) or (isinstance(value, Tensor) and value.numel() == 1):
                if key in scalars:
                    raise ValueError(f"metrics: {name!r} gives {key!r}, which another metric gives too")
                scalars[key] = float(value)
    scalars = {
        **{k: scalars[k] for k in SCALARS if k in scalars},
        **{k: v for k, v in scalars.items() if k not in SCALARS},
    }
    importance = to_numpy(outputs["dci"]["importance"], dtype=np.float64) if "dci" in outputs else None
    if hessian_samples > 0:
        start = time.perf_counter()
        scalars.update(decoder_hessian_stats(model, latents, hessian_samples, hessian_activations))
        timings["hessian"] = time.perf_counter() - start
    nmi = to_numpy(info["nmi"], dtype=np.float64)
    return Evaluation(scalars, nmi, active, importance, latents, time.perf_counter() - t0, timings, outputs)


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
    model: TripodAutoencoder,
    latents: Tensor,
    num_samples: int = 8,
    names: Sequence[str] | None = None,
    hessian_chunk: int = 4,
) -> dict[str, float]:
    """Exact Hessians of the decoder's named activations with respect to the latents, at the first
    ``num_samples`` rows of ``latents`` (``torch.func.jacfwd`` twice; every activation in one decoder pass,
    ``hessian_chunk`` samples at a time under ``vmap``), summarized by :func:`hessian_summary` with ``s`` the
    std of ``latents`` (+1e-6) and averaged over the samples. Keys ``hessian/<activation>/<raw|rescaled>/
    <statistic>``; every activation of the decoder by default. The authors' evaluation does this on 100
    samples; memory grows as units x n_z^2 x ``hessian_chunk``."""
    device, dtype = _device_of(model), _dtype_of(model)
    decoder = model.decoder
    names = tuple(names or decoder.names)
    z = latents[:num_samples].to(device, dtype)
    std = latents.to(device, dtype).std(0, unbiased=False) + 1e-6

    def units(zi: Tensor) -> Tensor:  # every requested activation of one sample, flattened, in one pass
        return torch.cat([a[0].reshape(-1) for a in decoder.activations(zi[None], list(names))])

    hessians_of = torch.func.vmap(torch.func.jacfwd(torch.func.jacfwd(units)))  # samples x units x n_z x n_z
    totals: dict[str, float] = {}
    with eval_mode(model), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        sizes = [a[0].numel() for a in decoder.activations(z[:1], list(names))]
        for start in range(0, len(z), hessian_chunk):
            chunk = hessians_of(z[start : start + hessian_chunk]).detach().double()
            for hessians in chunk:
                for name, part in zip(names, hessians.split(sizes)):
                    for key, value in hessian_summary(part, std.double()).items():
                        full = f"hessian/{name}/{key}"
                        totals[full] = totals.get(full, 0.0) + value / len(z)
    return totals
