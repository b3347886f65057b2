"""``tripod-train evaluate``: the paper's metrics of a checkpoint, written as JSON and Markdown.

The model and the data module are both restored from the checkpoint with Lightning's ``load_from_checkpoint``
(LightningCLI saves the data module's arguments in every checkpoint); ``--data.<option>`` overrides any of them,
e.g. ``--data.path`` evaluates on another file. The metrics are those of
:func:`tripod_pl.evaluation.evaluate_model` (docs/evaluation.md), computed on ``--device`` (default: CUDA when
available), and the report goes next to the checkpoint or to ``--out_dir`` (:mod:`tripod_pl.cli.report`).
``--interventions true`` adds the FactorVAE and BetaVAE scores (:mod:`tripod_pl.metrics.intervention`), drawn from
the full factorial grid of the data file, with disentanglement_lib's settings by default: ``--intervention_train``
10,000 and ``--intervention_eval`` 5,000 votes (points) of ``--intervention_batch`` 64 images, and
``--intervention_variance`` 10,000 images for the FactorVAE score's latent variances.

Example::

    tripod-train evaluate --ckpt_path runs/quickstart/checkpoints/best-infom.ckpt
"""

from __future__ import annotations

import inspect
import os
import time
from typing import Any, get_type_hints

import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from jsonargparse.typing import PositiveInt, restricted_number_type

from tripod_pl.cli.report import markdown_report, report_paths, write_report
from tripod_pl.data import HDF5DataModule
from tripod_pl.data.interventions import InterventionSampler
from tripod_pl.evaluation import default_batch_size, evaluate_model
from tripod_pl.metrics.intervention import betavae_score, factorvae_score
from tripod_pl.module import TripodModule

__all__ = [
    "CheckpointError",
    "evaluate_checkpoint",
    "evaluate_parser",
    "intervention_scores",
    "restore_datamodule",
    "run_evaluate",
]

#: a sample variance needs two values
AtLeastTwo = restricted_number_type("AtLeastTwo", int, (">=", 2))

DESCRIPTION = "Compute InfoMEC, DCI and PSNR of a checkpoint on its evaluation subset; write them as JSON + Markdown"


class CheckpointError(Exception):
    """A checkpoint that cannot be evaluated; the message is one line naming the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{os.fspath(path)}: {problem}")


def restore_datamodule(ckpt_path: str, **overrides: Any) -> HDF5DataModule:
    """The data module a checkpoint was trained with (its saved arguments), with ``overrides`` applied."""
    try:
        return HDF5DataModule.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True, **overrides)
    except TypeError as err:
        if "path" in str(err) and "path" not in overrides:
            raise CheckpointError(
                ckpt_path, "holds no data options (trained without the CLI); pass --data.path"
            ) from None
        raise


def intervention_scores(
    model: torch.nn.Module,
    path: str,
    device: str | torch.device,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    batch_size: int | None = None,
    in_memory: bool = False,
    votes_batch: int = 64,
    num_variance: int = 10_000,
) -> dict[str, float]:
    """The FactorVAE and BetaVAE scores of ``model.encode`` on the full factorial grid of the file ``path``, with
    disentanglement_lib's protocol (``num_train`` training and ``num_eval`` evaluation votes / points of
    ``votes_batch`` images, ``num_variance`` images for the variances); ``batch_size`` images per encoder call.
    Adds ``intervention_seconds``."""
    t0 = time.perf_counter()
    sampler = InterventionSampler(path, in_memory=in_memory)
    try:
        common = {"num_train": num_train, "num_eval": num_eval, "batch_size": votes_batch, "device": device}
        common["encode_batch"] = batch_size or default_batch_size(torch.device(device))
        scores = {
            **factorvae_score(model.encode, sampler, num_variance_estimate=num_variance, **common),
            **betavae_score(model.encode, sampler, **common),
        }
    finally:
        sampler.close()
    return {**scores, "intervention_seconds": round(time.perf_counter() - t0, 3)}


def _informativeness(dci_output: dict | None) -> dict[str, list[float]]:
    """DCI's per-source accuracies (from all latents together) and their chance levels, as JSON lists."""
    if not dci_output or "accuracy" not in dci_output:
        return {}
    return {
        "informativeness": [float(a) for a in dci_output["accuracy"]],
        "informativeness_chance": [float(a) for a in dci_output["chance"]],
    }


def evaluate_checkpoint(
    ckpt_path: str,
    data: HDF5DataModule | None = None,
    out_dir: str | None = None,
    backend: str = "torch",
    device: str | None = None,
    batch_size: int | None = None,
    dci: bool = True,
    interventions: bool = False,
    intervention_train: int = 10_000,
    intervention_eval: int = 5_000,
    intervention_batch: int = 64,
    intervention_variance: int = 10_000,
) -> dict[str, Any]:
    """All metrics of a checkpoint on ``data``'s evaluation subset (default: the data it was trained on),
    written as JSON and Markdown (see :func:`~tripod_pl.cli.report.report_paths`). With ``interventions`` also
    the FactorVAE and BetaVAE scores on the data file's grid (:func:`intervention_scores`).

    Returns the metrics: the scalars of :data:`tripod_pl.evaluation.SCALARS`, ``nmi`` (K x n_z), ``active``,
    ``importance`` (n_z x K), ``informativeness`` and ``informativeness_chance`` (K each: DCI's per-source
    forest accuracy from all latents, and that of guessing the most frequent value; with DCI), and
    ``checkpoint, global_step, epoch, data, num_samples, source_names, n_z, discrete, backend, seconds``; with
    ``interventions`` also ``factorvae, factorvae_train, factorvae_active, betavae, betavae_train,
    intervention_seconds``.
    """
    if not os.path.isfile(ckpt_path):
        raise CheckpointError(ckpt_path, "no such checkpoint file")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = data if data is not None else restore_datamodule(ckpt_path)
    module = TripodModule.load_from_checkpoint(ckpt_path, map_location=device, weights_only=True).eval()
    counters = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    images, sources = data.eval_subset()
    result = evaluate_model(module.model, images, sources, dci=dci, backend=backend, batch_size=batch_size)
    metrics: dict[str, Any] = {
        "checkpoint": os.path.abspath(ckpt_path),
        "global_step": counters.get("global_step"),
        "epoch": counters.get("epoch"),
        "data": str(data.path),
        "num_samples": int(images.shape[0]),
        "source_names": [str(n) for n in data.source_names],
        "n_z": int(result.latents.shape[1]),
        "discrete": bool(module.discrete_latents),
        "backend": backend,
        **result.scalars,
        "num_active": int(result.scalars["num_active"]),
        "active": result.active.tolist(),
        "nmi": result.nmi.tolist(),
        "importance": None if result.importance is None else result.importance.tolist(),
        **_informativeness(result.outputs.get("dci")),
        "seconds": round(result.seconds, 3),
    }
    if interventions:
        in_memory = bool(getattr(data, "hparams", {}).get("in_memory", False))
        metrics.update(
            intervention_scores(
                module.model,
                str(data.path),
                device,
                num_train=intervention_train,
                num_eval=intervention_eval,
                batch_size=batch_size,
                in_memory=in_memory,
                votes_batch=intervention_batch,
                num_variance=intervention_variance,
            )  # fmt: skip
        )
    write_report(metrics, *report_paths(ckpt_path, out_dir))
    return metrics


def evaluate_parser(**kwargs: Any) -> ArgumentParser:
    """The options of ``tripod-train evaluate``; every ``--data.<option>`` defaults to the checkpoint's."""
    parser = ArgumentParser(description=DESCRIPTION, **kwargs)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file with any of these options")
    parser.add_argument("--ckpt_path", type=str, required=True, help="the checkpoint to evaluate")
    parser.add_argument(
        "--out_dir", type=str | None, default=None, help="folder for metrics.json and metrics.md "
        "(default: next to the checkpoint, as <checkpoint name>.metrics.json/.md)"
    )  # fmt: skip
    parser.add_argument("--backend", type=str, default="torch", help="metrics backend: torch or sklearn")
    parser.add_argument("--device", type=str | None, default=None, help="torch device (default: cuda if available)")
    parser.add_argument(
        "--batch_size",
        type=int | None,
        default=None,
        help="images per encoder/decoder call (default: 128 on a CPU, 1024 on a GPU)",
    )
    parser.add_argument("--dci", type=bool, default=True, help="also compute D, C, I")
    parser.add_argument(
        "--interventions", type=bool, default=False,
        help="also compute the FactorVAE and BetaVAE scores on the data file's full factorial grid",
    )  # fmt: skip
    parser.add_argument(
        "--intervention_train", type=PositiveInt, default=10_000, help="training votes (points) of the scores"
    )  # fmt: skip
    parser.add_argument(
        "--intervention_eval", type=PositiveInt, default=5_000, help="evaluation votes (points) of the scores"
    )  # fmt: skip
    parser.add_argument("--intervention_batch", type=AtLeastTwo, default=64, help="images per vote (point)")
    parser.add_argument(
        "--intervention_variance", type=AtLeastTwo, default=10_000, help="images for the FactorVAE variances"
    )  # fmt: skip
    hints = get_type_hints(HDF5DataModule.__init__)
    for name in list(inspect.signature(HDF5DataModule.__init__).parameters)[1:]:
        parser.add_argument(
            f"--data.{name}", type=hints[name] | None, default=None, help="default: as in the checkpoint"
        )
    return parser


def run_evaluate(cfg: Namespace) -> dict[str, Any]:
    """Runs the command for parsed options; prints the Markdown table and where the files are."""
    data_cfg = cfg.get("data") or Namespace()
    overrides = {k: v for k, v in vars(data_cfg).items() if v is not None}
    if not os.path.isfile(cfg.ckpt_path):
        raise CheckpointError(cfg.ckpt_path, "no such checkpoint file")
    data = restore_datamodule(cfg.ckpt_path, **overrides)
    metrics = evaluate_checkpoint(
        cfg.ckpt_path, data, out_dir=cfg.out_dir, backend=cfg.backend, device=cfg.device,
        batch_size=cfg.batch_size, dci=cfg.dci, interventions=cfg.interventions,
        intervention_train=cfg.intervention_train, intervention_eval=cfg.intervention_eval,
        intervention_batch=cfg.intervention_batch, intervention_variance=cfg.intervention_variance,
    )  # fmt: skip
    print(markdown_report(metrics))
    for path in report_paths(cfg.ckpt_path, cfg.out_dir):
        print(f"wrote {path}")
    return metrics
