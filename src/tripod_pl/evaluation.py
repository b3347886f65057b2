"""The paper's evaluation protocol (DESIGN §6) as plain functions, and ``tripod-train evaluate``.

:func:`evaluate_model` encodes the fixed evaluation subset (uint8 images and their sources) with a model's
evaluation latents (quantized values, ``mu`` or ``z``), reconstructs it, and computes InfoMEC
(:func:`tripod_pl.metrics.infomec`), DCI (:func:`tripod_pl.metrics.dci`) and the reconstruction PSNR
``mean_images 10 log10(1 / MSE)`` on images mapped to [0, 1] -- all on the model's device.
:func:`evaluate_checkpoint` does that for a checkpoint and writes the result as JSON and a Markdown table.
:class:`~tripod_pl.callbacks.EvaluationCallback` runs the same :func:`evaluate_model` during training.

Example:
    >>> data = HDF5DataModule("data/shapes3d.h5", batch_size=64)
    >>> metrics = evaluate_checkpoint("runs/shapes3d/tripod/.../best-infom.ckpt", data)
    >>> metrics["infom"], metrics["infoc"], metrics["infoe"], metrics["psnr"]
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from tripod_pl import metrics as _metrics
from tripod_pl.data.transforms import to_float_images

if TYPE_CHECKING:
    from tripod_pl.data import HDF5DataModule

__all__ = [
    "SCALARS",
    "Evaluation",
    "decode_latents",
    "encode_and_reconstruct",
    "evaluate_checkpoint",
    "evaluate_main",
    "evaluate_model",
    "eval_mode",
    "markdown_report",
    "report_paths",
    "write_report",
]

#: the scalar results of an evaluation, in report order
SCALARS = ("infom", "infoc", "infoe", "d", "c", "i", "num_active", "psnr")


class Autoencoder(Protocol):
    """What the evaluation needs of a model (``TripodModule`` has it; so can any ``nn.Module``)."""

    discrete_latents: bool

    def encode(self, x: Tensor) -> Tensor: ...

    def decode(self, z: Tensor) -> Tensor: ...


@dataclass
class Evaluation:
    """The result of :func:`evaluate_model`.

    Attributes:
        scalars: ``infom, infoc, infoe, num_active, psnr`` and, with DCI, ``d, c, i`` (plain floats).
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
    model: Autoencoder, images: Tensor, batch_size: int = 500, keep: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Evaluation latents and per-image reconstruction PSNR of uint8 images (N x H x W x 3), in batches.

    Runs in eval mode under ``no_grad`` on the model's device, in the model's parameter dtype, outside any
    autocast. Returns ``(latents N x n_z float32, psnr N float32, reconstructions of the first `keep` images
    in [-1, 1])``, all on the model's device.
    """
    device, dtype = _device_of(model), _dtype_of(model)
    latents, psnr, recons = [], [], []
    with eval_mode(model), torch.autocast(device.type, enabled=False):
        for start in range(0, images.shape[0], batch_size):
            x = to_float_images(images[start : start + batch_size].to(device, non_blocking=True), dtype)
            z = model.encode(x)
            r = model.decode(z).float()
            mse = (((r + 1) / 2 - (x.float() + 1) / 2) ** 2).flatten(1).mean(1)
            latents.append(z.float())
            psnr.append(10 * torch.log10(1 / mse.clamp_min(1e-10)))
            if start < keep:
                recons.append(r[: keep - start])
    empty = torch.empty(0, 3, *images.shape[1:3], device=device)
    return torch.cat(latents), torch.cat(psnr), torch.cat(recons) if recons else empty


def decode_latents(model: Autoencoder, latents: Tensor, batch_size: int = 500) -> Tensor:
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
    model: Autoencoder,
    images: Tensor,
    sources: Tensor,
    dci: bool = True,
    backend: str = "torch",
    batch_size: int = 500,
) -> Evaluation:
    """InfoMEC, DCI and reconstruction PSNR of ``model`` on uint8 ``images`` (N x H x W x 3) with ``sources``
    (N x K integer indices), computed on the model's device."""
    if images.shape[0] != sources.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {sources.shape[0]} rows of sources")
    t0 = time.perf_counter()
    latents, psnr, _ = encode_and_reconstruct(model, images, batch_size)
    sources = torch.as_tensor(sources).to(latents.device)
    info = _metrics.infomec(sources, latents, discrete=bool(model.discrete_latents), backend=backend)
    active = np.asarray(_to_numpy(info["active"]), dtype=bool)
    scalars = {
        "infom": float(info["infom"]),
        "infoc": float(info["infoc"]),
        "infoe": float(info["infoe"]),
        "num_active": float(active.sum()),
        "psnr": float(psnr.mean()),
    }
    importance = None
    if dci:
        out = _metrics.dci(sources, latents, backend=backend)
        scalars.update(d=float(out["d"]), c=float(out["c"]), i=float(out["i"]))
        importance = np.asarray(_to_numpy(out["importance"]), dtype=np.float64)
    scalars = {k: scalars[k] for k in SCALARS if k in scalars}
    nmi = np.asarray(_to_numpy(info["nmi"]), dtype=np.float64)
    return Evaluation(scalars, nmi, active, importance, latents, time.perf_counter() - t0)


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


# ---- reports -----------------------------------------------------------------------------------------
def report_paths(ckpt_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Where :func:`evaluate_checkpoint` writes: ``out_dir/metrics.{json,md}`` when ``out_dir`` is given,
    else next to the checkpoint as ``<checkpoint stem>.metrics.{json,md}`` (several checkpoints share a folder)."""
    if out_dir is not None:
        return Path(out_dir) / "metrics.json", Path(out_dir) / "metrics.md"
    ckpt = Path(ckpt_path)
    return ckpt.with_name(f"{ckpt.stem}.metrics.json"), ckpt.with_name(f"{ckpt.stem}.metrics.md")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown_report(metrics: dict[str, Any]) -> str:
    """A short Markdown summary: the scalar metrics, then each source's most informative latent."""
    ckpt = metrics.get("checkpoint")
    title = f"# Evaluation of `{Path(ckpt).name}`" if ckpt else "# Evaluation"
    if metrics.get("global_step") is not None:
        title += f" (step {metrics['global_step']})"
    rows = [
        ("InfoM", _fmt(metrics.get("infom"))),
        ("InfoC", _fmt(metrics.get("infoc"))),
        ("InfoE", _fmt(metrics.get("infoe"))),
        ("D", _fmt(metrics.get("d"))),
        ("C", _fmt(metrics.get("c"))),
        ("I", _fmt(metrics.get("i"))),
        ("active latents", f"{int(metrics['num_active'])} / {metrics['n_z']}"),
        ("PSNR (dB)", _fmt(metrics.get("psnr"), 2)),
    ]
    lines = [title, "", "| metric | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    names, nmi, active = metrics.get("source_names"), metrics.get("nmi"), metrics.get("active")
    if names and nmi is not None:
        nmi_arr = np.asarray(nmi, dtype=np.float64)
        masked = np.where(np.asarray(active, dtype=bool)[None, :], nmi_arr, -np.inf)
        lines += ["", "| source | best active latent | NMI |", "|---|---|---|"]
        for i, name in enumerate(names):
            if np.isfinite(masked[i]).any():
                j = int(np.argmax(masked[i]))
                lines.append(f"| {name} | z{j} | {nmi_arr[i, j]:.3f} |")
            else:
                lines.append(f"| {name} | – | – |")
    data = metrics.get("data")
    kind = "discrete" if metrics.get("discrete") else "continuous"
    lines += [
        "",
        f"{metrics['num_samples']:,} evaluation samples of `{data}`; {kind} latents; "
        f"backend `{metrics.get('backend', 'torch')}`.",
    ]
    return "\n".join(lines) + "\n"


def write_report(metrics: dict[str, Any], json_path: str | os.PathLike[str], md_path: str | os.PathLike[str]) -> None:
    """Writes ``metrics`` as JSON and as :func:`markdown_report`, each atomically (temporary file + rename)."""
    _atomic_write_text(Path(json_path), json.dumps(metrics, indent=2) + "\n")
    _atomic_write_text(Path(md_path), markdown_report(metrics))


# ---- checkpoints -------------------------------------------------------------------------------------
def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_checkpoint(
    ckpt_path: str,
    data: HDF5DataModule,
    out_dir: str | None = None,
    backend: str = "torch",
    device: str | None = None,
    batch_size: int = 500,
    dci: bool = True,
) -> dict[str, Any]:
    """All metrics of DESIGN §6 for a checkpoint on ``data``'s evaluation subset, written as JSON and Markdown.

    Loads the :class:`~tripod_pl.TripodModule` onto ``device`` (default: CUDA when available), evaluates it with
    :func:`evaluate_model` and writes ``metrics.json``/``metrics.md`` (see :func:`report_paths`). Returns the
    metrics: the scalars of :data:`SCALARS`, ``nmi`` (K x n_z), ``active``, ``importance`` (n_z x K), and
    ``checkpoint, global_step, epoch, data, num_samples, source_names, n_z, discrete, backend, seconds``.
    """
    from tripod_pl.module import TripodModule

    device = device or _default_device()
    ckpt = _read_checkpoint(ckpt_path)
    model = TripodModule.load_from_checkpoint(ckpt_path, map_location=device, weights_only=True).eval()
    images, sources = data.eval_subset()
    result = evaluate_model(model, images, sources, dci=dci, backend=backend, batch_size=batch_size)
    metrics: dict[str, Any] = {
        "checkpoint": os.path.abspath(ckpt_path),
        "global_step": ckpt.get("global_step"),
        "epoch": ckpt.get("epoch"),
        "data": str(getattr(data, "path", "")) or None,
        "num_samples": int(images.shape[0]),
        "source_names": [str(n) for n in data.source_names],
        "n_z": int(result.latents.shape[1]),
        "discrete": bool(model.discrete_latents),
        "backend": backend,
        **result.scalars,
        "num_active": int(result.scalars["num_active"]),
        "active": result.active.tolist(),
        "nmi": result.nmi.tolist(),
        "importance": None if result.importance is None else result.importance.tolist(),
        "seconds": round(result.seconds, 3),
    }
    json_path, md_path = report_paths(ckpt_path, out_dir)
    write_report(metrics, json_path, md_path)
    return metrics


def evaluate_main(args: Sequence[str] | None = None) -> dict[str, Any]:
    """``tripod-train evaluate --ckpt_path CKPT [--data.path H5] [--out_dir D] [--device cuda] ...``.

    The data options are those of :class:`~tripod_pl.data.HDF5DataModule`; they default to the ones the
    checkpoint was trained with (LightningCLI stores them in it), so ``--data.path`` is needed only to
    evaluate on another file or when the checkpoint has none. Prints the Markdown table and the file paths.
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    from tripod_pl.data import HDF5DataModule

    argv = list(sys.argv[1:] if args is None else args)
    parser = ArgumentParser(
        prog="tripod-train evaluate",
        description="Compute InfoMEC, DCI and PSNR of a checkpoint on the evaluation subset and write them as "
        "JSON and Markdown. The --data.* options default to those the checkpoint was trained with.",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file with any of these options")
    parser.add_argument("--ckpt_path", type=str, required=True, help="the checkpoint to evaluate")
    parser.add_argument(
        "--out_dir",
        type=str | None,
        default=None,
        help="folder for metrics.json and metrics.md (default: next to the checkpoint)",
    )
    parser.add_argument("--backend", type=str, default="torch", help="metrics backend")
    parser.add_argument("--device", type=str | None, default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--batch_size", type=int, default=500, help="images per encoder/decoder call")
    parser.add_argument("--dci", type=bool, default=True, help="also compute D, C, I")
    parser.add_class_arguments(HDF5DataModule, "data", fail_untyped=False)
    ckpt_path = _peek_ckpt_path(argv)
    if ckpt_path is not None and os.path.isfile(ckpt_path):
        stored = _stored_datamodule_hparams(ckpt_path)
        known = {k.split(".", 1)[1] for k in parser.get_defaults().as_flat().__dict__ if k.startswith("data.")}
        defaults = {f"data.{k}": v for k, v in stored.items() if k in known}
        if defaults:
            parser.set_defaults(defaults)
    cfg = parser.parse_args(argv)
    data = parser.instantiate_classes(cfg).data
    metrics = evaluate_checkpoint(
        cfg.ckpt_path,
        data,
        out_dir=cfg.out_dir,
        backend=cfg.backend,
        device=cfg.device,
        batch_size=cfg.batch_size,
        dci=cfg.dci,
    )
    json_path, md_path = report_paths(cfg.ckpt_path, cfg.out_dir)
    print(markdown_report(metrics))
    print(f"wrote {json_path}\nwrote {md_path}")
    return metrics


def _peek_ckpt_path(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--ckpt_path="):
            return arg.split("=", 1)[1]
        if arg == "--ckpt_path" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _read_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A checkpoint's contents, memory-mapped (the weights are not read), loaded ``weights_only``: tensors and
    plain data only, never arbitrary pickled objects."""
    return torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)


def _stored_datamodule_hparams(ckpt_path: str) -> dict[str, Any]:
    """The datamodule's init arguments saved in a checkpoint (empty when it has none)."""
    stored = _read_checkpoint(ckpt_path).get("datamodule_hyper_parameters") or {}
    return {k: v for k, v in dict(stored).items() if not k.startswith("_")}
