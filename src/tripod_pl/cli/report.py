"""The evaluation report of ``tripod-train evaluate``: the metrics as JSON and as a short Markdown table.

Both files are written atomically (:func:`tripod_pl.io.atomic_write_text`): a reader sees the previous report or
the complete new one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from tripod_pl.evaluation import best_active_latents
from tripod_pl.io import atomic_write_text

__all__ = ["OPTIONAL_ROWS", "markdown_report", "report_paths", "write_report"]

#: rows shown only when the metrics hold them (``evaluate --interventions true``, the metric registry's extras)
OPTIONAL_ROWS = (
    ("mig", "MIG"),
    ("sap", "SAP"),
    ("modularity", "Modularity"),
    ("explicitness", "Explicitness"),
    ("factorvae", "FactorVAE score"),
    ("betavae", "BetaVAE score"),
)


def report_paths(ckpt_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """Where the report goes: ``out_dir/metrics.{json,md}`` when ``out_dir`` is given, else next to the checkpoint
    as ``<checkpoint stem>.metrics.{json,md}`` (several checkpoints share a folder)."""
    if out_dir is not None:
        return Path(out_dir) / "metrics.json", Path(out_dir) / "metrics.md"
    ckpt = Path(ckpt_path)
    return ckpt.with_name(f"{ckpt.stem}.metrics.json"), ckpt.with_name(f"{ckpt.stem}.metrics.md")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown_report(metrics: dict[str, Any]) -> str:
    """A short Markdown summary: the scalar metrics (``psnr_paper``, the reference's uint8 PSNR, beside ``psnr``,
    and the :data:`OPTIONAL_ROWS` when present), then each source's most informative active latent (and, with
    DCI, the accuracy of predicting the source from all latents beside its chance level)."""
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
        *((name, _fmt(metrics[key])) for key, name in OPTIONAL_ROWS if key in metrics),
        ("active latents", f"{int(metrics['num_active'])} / {metrics['n_z']}"),
        ("PSNR (dB)", _fmt(metrics.get("psnr"), 2)),
    ]
    if metrics.get("psnr_paper") is not None:  # the reference's uint8 PSNR, the scale of the paper's thresholds
        rows.append(("PSNR, paper's uint8 computation (dB)", _fmt(metrics["psnr_paper"], 2)))
    lines = [title, "", "| metric | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    names, nmi, active = metrics.get("source_names"), metrics.get("nmi"), metrics.get("active")
    if names and nmi is not None:
        latents, values = best_active_latents(nmi, active)
        acc, chance = metrics.get("informativeness"), metrics.get("informativeness_chance")
        held = acc is not None and chance is not None  # how much of each source all latents hold, against guessing
        header = "| source | best active latent | NMI |" + (" accuracy from all latents (chance) |" if held else "")
        lines += ["", header, "|---" * header.count(" |") + "|"]
        for i, (name, j, value) in enumerate(zip(names, latents, values)):
            row = f"| {name} | z{j} | {value:.3f} |" if j >= 0 else f"| {name} | – | – |"
            lines.append(f"{row} {acc[i]:.2f} ({chance[i]:.2f}) |" if held else row)
    data = metrics.get("data")
    kind = "discrete" if metrics.get("discrete") else "continuous"
    lines += [
        "",
        f"{metrics['num_samples']:,} evaluation samples of `{data}`; {kind} latents; "
        f"backend `{metrics.get('backend', 'torch')}`.",
    ]
    return "\n".join(lines) + "\n"


def write_report(metrics: dict[str, Any], json_path: str | os.PathLike[str], md_path: str | os.PathLike[str]) -> None:
    """Writes ``metrics`` as JSON and as :func:`markdown_report`, each atomically."""
    atomic_write_text(json_path, json.dumps(metrics, indent=2) + "\n")
    atomic_write_text(md_path, markdown_report(metrics))
