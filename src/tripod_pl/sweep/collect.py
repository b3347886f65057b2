"""Collecting a sweep: every finished run's evaluation into one table, as JSON, Markdown and a figure.

Each run contributes its ``metrics.json`` (the evaluation of its selected checkpoint, see
:func:`tripod_pl.sweep.runner.finish_run`). Per run, a source's *best NMI* is the largest NMI any active latent
has with it, and the source is *captured* when that is at least 0.5. The table gives, per dataset and
method, the mean ± standard deviation over seeds (``ddof=1``; a single run shows no spread) of InfoM, InfoC,
InfoE, D, C, I, PSNR and the number of captured sources, then the mean best NMI of every source and, where the
evaluations recorded it, the accuracy of predicting each source from all latents together (DCI's per-source
informativeness) beside its chance level: a source below the capture threshold may still be held, entangled. The figure
shows one NMI heatmap per method (its first seed), latents ordered by the source they explain best.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tripod_pl.evaluation import CAPTURED_NMI, best_active_latents
from tripod_pl.io import atomic_path, atomic_write_text
from tripod_pl.sweep.runner import record_result
from tripod_pl.sweep.spec import SweepSpec

__all__ = ["CAPTURED_NMI", "SCORES", "collect", "markdown_table", "nmi_figure", "write_results"]

#: the scores of the table, in order
SCORES = ("infom", "infoc", "infoe", "d", "c", "i", "psnr")


def _best_nmi(metrics: dict[str, Any]) -> dict[str, float]:
    _, best = best_active_latents(metrics["nmi"], metrics["active"])
    return {str(name): float(v) for name, v in zip(metrics["source_names"], best)}


def collect(spec: SweepSpec) -> list[dict[str, Any]]:
    """One row per finished run: ``dataset, method, seed``, the scores, ``captured``, ``source_nmi`` (best NMI
    per source), ``nmi`` and ``active`` (for the figure), ``checkpoint`` and ``global_step``."""
    rows = []
    for job in spec.jobs():
        if job.record_path is not None and not job.record_path.is_file():
            record_result(job)  # finished elsewhere (e.g. a SLURM task): keep its record too
        if not job.done:
            continue
        metrics = json.loads(job.result_path.read_text())
        best = _best_nmi(metrics)
        rows.append(
            {
                "dataset": job.dataset,
                "method": job.method,
                "seed": job.seed,
                **{key: metrics.get(key) for key in SCORES},
                "captured": sum(v >= CAPTURED_NMI for v in best.values()),
                "num_sources": len(best),
                "source_nmi": best,
                "checkpoint": Path(metrics["checkpoint"]).name,
                "global_step": metrics.get("global_step"),
                "nmi": metrics["nmi"],
                "active": metrics["active"],
                **_source_accuracy(metrics),
            }
        )
    return rows


def _source_accuracy(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``source_accuracy`` and ``source_chance`` by source name, when the evaluation recorded them."""
    acc, chance = metrics.get("informativeness"), metrics.get("informativeness_chance")
    if acc is None or chance is None:
        return {}
    names = [str(n) for n in metrics["source_names"]]
    return {
        "source_accuracy": dict(zip(names, map(float, acc), strict=True)),
        "source_chance": dict(zip(names, map(float, chance), strict=True)),
    }


def _mean_std(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1):.2f}"


def markdown_table(rows: list[dict[str, Any]], title: str = "Results") -> str:
    """Per dataset: the scores' mean ± std over seeds per method, then each source's mean best NMI."""
    lines = [f"# {title}", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        runs = [r for r in rows if r["dataset"] == dataset]
        methods = list(dict.fromkeys(r["method"] for r in runs))
        header = ["method", "runs", "InfoM", "InfoC", "InfoE", "D", "C", "I", "PSNR (dB)", "sources captured"]
        lines += [f"## {dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method in methods:
            mine = [r for r in runs if r["method"] == method]
            k = mine[0]["num_sources"]
            cells = [method, str(len(mine)), *(_mean_std([r[s] for r in mine]) for s in SCORES)]
            cells.append(_mean_std([float(r["captured"]) for r in mine]) + f" / {k}")
            lines.append("| " + " | ".join(cells) + " |")
        sources = list(runs[0]["source_nmi"])
        lines += ["", f"Best NMI of each source (mean over seeds; captured at ≥ {CAPTURED_NMI}):", ""]
        lines += ["| method | " + " | ".join(sources) + " |", "|---|" + "---|" * len(sources)]
        for method in methods:
            mine = [r for r in runs if r["method"] == method]
            cells = [f"{np.mean([r['source_nmi'][s] for r in mine]):.2f}" for s in sources]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += _accuracy_table(runs, methods, sources)
        lines.append("")
    return "\n".join(lines)


def _accuracy_table(runs: list[dict[str, Any]], methods: list[str], sources: list[str]) -> list[str]:
    """Per method, each source's accuracy from all latents together (mean over the runs that recorded it),
    and a last row with guessing the most frequent value; nothing when no run recorded it."""
    have = [r for r in runs if "source_accuracy" in r]
    if not have:
        return []
    lines = [
        "",
        "Accuracy of predicting each source from all latents together (DCI's forests, held-out 10%; mean over",
        "the runs that recorded it): a source no latent holds sits at chance, the last row.",
        "",
    ]
    lines += ["| method | runs | " + " | ".join(sources) + " |", "|---|---|" + "---|" * len(sources)]
    for method in methods:
        mine = [r for r in have if r["method"] == method]
        if mine:
            cells = [f"{np.mean([r['source_accuracy'][s] for r in mine]):.2f}" for s in sources]
            lines.append(f"| {method} | {len(mine)} | " + " | ".join(cells) + " |")
    chance = [f"{have[0]['source_chance'][s]:.2f}" for s in sources]
    lines.append("| chance (most frequent value) | | " + " | ".join(chance) + " |")
    return lines


def nmi_figure(rows: list[dict[str, Any]]) -> Figure:
    """NMI heatmaps side by side: a row per dataset, a panel per method (its first seed), latents sorted by
    the source they explain best, inactive latents left out."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = {d: list(dict.fromkeys(r["method"] for r in rows if r["dataset"] == d)) for d in datasets}
    ncols = max(len(m) for m in methods.values())
    fig = Figure(figsize=(2.6 * ncols + 1.5, 2.4 * len(datasets)))
    axes = fig.subplots(len(datasets), ncols, squeeze=False)
    for di, dataset in enumerate(datasets):
        for mi in range(ncols):
            ax = axes[di, mi]
            if mi >= len(methods[dataset]):
                ax.set_visible(False)
                continue
            method = methods[dataset][mi]
            run = min((r for r in rows if r["dataset"] == dataset and r["method"] == method), key=lambda r: r["seed"])
            nmi = np.asarray(run["nmi"], dtype=np.float64)[:, np.asarray(run["active"], dtype=bool)]
            order = np.lexsort((-nmi.max(axis=0), nmi.argmax(axis=0))) if nmi.size else []
            ax.imshow(nmi[:, order] if nmi.size else np.zeros((nmi.shape[0], 1)), vmin=0, vmax=1, aspect="auto")
            ax.set_title(f"{method} (seed {run['seed']}): {run['captured']}/{run['num_sources']}", fontsize=8)
            ax.set_xticks([])
            names = list(run["source_nmi"])
            ax.set_yticks(range(len(names)), names if mi == 0 else [""] * len(names), fontsize=6)
            if mi == 0:
                ax.set_ylabel(dataset, fontsize=8)
    fig.suptitle("NMI(source; active latent), latents sorted by their best source", fontsize=9)
    fig.tight_layout()
    return fig


def write_results(spec: SweepSpec, out_dir: str | os.PathLike[str] = "results") -> list[Path]:
    """Writes ``<out_dir>/<name>.json`` (a list, one object per run), ``.md`` and ``.png``; returns the paths."""
    rows = collect(spec)
    if not rows:
        return []
    out = Path(out_dir)
    public = [{k: v for k, v in r.items() if k not in ("nmi", "active")} for r in rows]
    paths = [out / f"{spec.name}.json", out / f"{spec.name}.md", out / f"{spec.name}.png"]
    atomic_write_text(paths[0], json.dumps(public, indent=2) + "\n")
    atomic_write_text(paths[1], markdown_table(rows, title=f"{spec.name}: {len(rows)} runs"))
    with atomic_path(paths[2]) as tmp:
        nmi_figure(rows).savefig(tmp, format="png", dpi=120)
    return paths
