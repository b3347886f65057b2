"""Figures of an evaluation (docs/evaluation.md): NMI heatmap, reconstructions, latent traversals, latent histograms,
pairwise 2-D latent histograms and the decoder Hessians' diagonal vs off-diagonal mass.

Pure functions of arrays and tensors, no Lightning: each returns a :class:`matplotlib.figure.Figure` built
without ``pyplot`` (no global figure registry, no GUI backend, safe in a training process) or an image tensor
for ``SummaryWriter.add_image``. :class:`~tripod_pl.callbacks.EvaluationCallback` logs them to every logger that
takes images (:class:`~tripod_pl.callbacks.loggers.FigureWriter`).

Example:
    >>> fig = nmi_heatmap(result.nmi, result.active, ["shape", "scale"])
    >>> writer.add_figure("eval/nmi", fig, global_step=step)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from tripod_pl.tensors import to_numpy

__all__ = [
    "hessian_figure",
    "histogram_edges",
    "latent_histograms",
    "latent_labels",
    "nmi_heatmap",
    "pairwise_latent_histograms",
    "reconstruction_figure",
    "reconstruction_grid",
    "traversal_grid",
    "traversal_latents",
]

_INACTIVE = "0.55"  # grey of everything that marks an inactive latent


def latent_labels(nmi: np.ndarray, active: np.ndarray, source_names: Sequence[str]) -> list[str]:
    """``"z3: shape (NMI 0.82)"`` per latent: the source it shares the most NMI with, and that NMI;
    ``"z3: inactive"`` when inactive."""
    nmi, active = np.asarray(nmi), np.asarray(active, dtype=bool)
    labels = []
    for j in range(nmi.shape[1]):
        if not active[j]:
            labels.append(f"z{j}: inactive")
        else:
            i = int(np.argmax(nmi[:, j]))
            labels.append(f"z{j}: {source_names[i]} (NMI {nmi[i, j]:.2f})")
    return labels


def nmi_heatmap(nmi: np.ndarray | Tensor, active: np.ndarray | Tensor, source_names: Sequence[str]) -> Figure:
    """Heatmap of the NMI matrix (sources x latents, 0..1), values written in, inactive latents hatched grey."""
    nmi, active = to_numpy(nmi), to_numpy(active).astype(bool)
    k, n_z = nmi.shape
    if len(source_names) != k:
        raise ValueError(f"{len(source_names)} source names for an NMI matrix with {k} rows")
    fig = Figure(figsize=(1.2 + 0.55 * n_z + 0.08 * max(map(len, source_names), default=0), 0.9 + 0.45 * k))
    ax = fig.add_subplot()
    im = ax.imshow(nmi, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    if n_z * k <= 600:
        for i in range(k):
            for j in range(n_z):
                ax.text(
                    j,
                    i,
                    f"{nmi[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if nmi[i, j] > 0.6 else "white",
                )
    for j in np.flatnonzero(~active):
        ax.add_patch(
            Rectangle((j - 0.5, -0.5), 1, k, facecolor=(1, 1, 1, 0.55), edgecolor=_INACTIVE, hatch="//", linewidth=0)
        )
    ax.set_xticks(range(n_z), [f"z{j}" for j in range(n_z)], fontsize=8)
    for j, tick in enumerate(ax.get_xticklabels()):
        if not active[j]:
            tick.set_color(_INACTIVE)
    ax.set_yticks(range(k), list(source_names), fontsize=8)
    ax.set_xlabel(f"latents ({int(active.sum())} of {n_z} active; hatched: inactive)")
    ax.set_title("NMI(source; latent)", fontsize=9)
    fig.tight_layout()
    return fig


def reconstruction_grid(originals: Tensor, reconstructions: Tensor, ncols: int = 8, pad: int = 2) -> Tensor:
    """One image (3 x H' x W', floats in [0, 1]) with originals in a row and their reconstructions beneath.

    ``originals`` and ``reconstructions`` are N x 3 x H x W in [-1, 1]; more than ``ncols`` images wrap
    into further row pairs.
    """
    if originals.shape != reconstructions.shape:
        raise ValueError(f"shapes differ: {tuple(originals.shape)} vs {tuple(reconstructions.shape)}")
    n, c, h, w = originals.shape
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    grid = torch.ones(c, 2 * nrows * (h + pad) + pad, ncols * (w + pad) + pad)
    for idx in range(n):
        r, col = divmod(idx, ncols)
        x0 = pad + col * (w + pad)
        for k, img in enumerate((originals[idx], reconstructions[idx])):
            y0 = pad + (2 * r + k) * (h + pad)
            grid[:, y0 : y0 + h, x0 : x0 + w] = (img.detach().float().cpu().clamp(-1, 1) + 1) / 2
    return grid


def traversal_latents(latents: Tensor, values: Tensor, dims: Sequence[int]) -> Tensor:
    """Latent codes of a traversal: S x D x T x n_z, where sample ``s``'s latent ``dims[d]`` takes ``values[d, t]``.

    ``latents`` is S x n_z (the samples to traverse), ``values`` D x T (the values swept for each traversed dim,
    the same for every sample) or S x D x T (each sample its own sweep, as the animations' cycles).
    """
    s, n_z = latents.shape
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[0] != s):
        raise ValueError(f"values must be D x T or {s} x D x T, got shape {tuple(values.shape)}")
    d, t = values.shape[-2:]
    if d != len(dims):
        raise ValueError(f"{d} rows of values for {len(dims)} traversed latents")
    z = latents[:, None, None, :].expand(s, d, t, n_z).clone()
    for row, dim in enumerate(dims):
        z[:, row, :, dim] = values[..., row, :].to(z)
    return z


def reconstruction_figure(
    originals: Tensor, reconstructions: Tensor, psnr: Tensor | np.ndarray | None = None, ncols: int = 8
) -> Figure:
    """:func:`reconstruction_grid` as a figure: rows labelled "original" / "reconstruction", and the PSNR of
    the shown images (dB, one per image) in the title when given."""
    grid = reconstruction_grid(originals, reconstructions, ncols=ncols)
    n, _, h, _ = originals.shape
    pair_rows = -(-n // max(1, min(ncols, n)))
    px, left, top = 80.0, 1.1, 0.35
    width, height = grid.shape[2] / px + left + 0.05, grid.shape[1] / px + top + 0.05
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((left / width, 0.05 / height, grid.shape[2] / px / width, grid.shape[1] / px / height))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    pad = 2
    centers = [pad + (2 * r + k) * (h + pad) + h / 2 for r in range(pair_rows) for k in (0, 1)]
    ax.set_yticks(centers, ["original", "reconstruction"] * pair_rows, fontsize=8)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    title = f"{n} evaluation images (seeded random sample)"
    if psnr is not None:
        values = to_numpy(psnr, dtype=np.float64)
        title += f": PSNR {values.mean():.1f} dB (min {values.min():.1f}, max {values.max():.1f})"
    ax.set_title(title, fontsize=9)
    return fig


def traversal_grid(
    images: Tensor,
    row_labels: Sequence[str],
    values: Tensor | np.ndarray | None = None,
    originals: Tensor | None = None,
    pad: int = 1,
    sample_gap: int = 8,
) -> Figure:
    """Latent traversals as one figure: a block per sample side by side, a row per latent, columns sweeping it.

    ``images`` is S x D x T x 3 x H x W in [-1, 1] (samples, traversed latents, steps); ``row_labels`` names
    the D rows (e.g. from :func:`latent_labels`). With ``values`` (D x T, the swept latent values) each cell
    shows its value above it; with ``originals`` (S x 3 x H x W in [-1, 1]) each block starts with the sample's
    input image. The axes are laid out to the pixel, so the figure has no empty margins.
    """
    s, d, t, c, h, w = images.shape
    if len(row_labels) != d:
        raise ValueError(f"{len(row_labels)} row labels for {d} traversed latents")
    if values is not None and tuple(values.shape) != (d, t):
        raise ValueError(f"values must be {d} x {t}, got {tuple(values.shape)}")
    first = 0 if originals is None else 1
    text_px = 0 if values is None else 9
    block_w = (t + first) * (w + pad) - pad
    row_h = h + text_px
    height = d * (row_h + pad) - pad
    width = s * block_w + (s - 1) * sample_gap
    canvas = np.ones((height, width, c), dtype=np.float32)
    pix = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 1, 2, 4, 5, 3).numpy()
    if originals is not None:
        orig = ((originals.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    cells = []  # (x0, y0, row, step) of every traversal cell, for the value labels
    for si in range(s):
        x_block = si * (block_w + sample_gap)
        for di in range(d):
            y0 = di * (row_h + pad) + text_px
            if originals is not None:
                canvas[y0 : y0 + h, x_block : x_block + w] = orig[si]
            for ti in range(t):
                x0 = x_block + (first + ti) * (w + pad)
                canvas[y0 : y0 + h, x0 : x0 + w] = pix[si, di, ti]
                cells.append((x0, y0, di, ti))
    px = 80.0  # canvas pixels per inch
    left = 0.07 * max(map(len, row_labels), default=0) + 0.15
    top, margin = 0.3, 0.05
    fig_w, fig_h = width / px + left + margin, height / px + top + margin
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)
    ax = fig.add_axes((left / fig_w, margin / fig_h, width / px / fig_w, height / px / fig_h))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_yticks([di * (row_h + pad) + text_px + h / 2 for di in range(d)], list(row_labels), fontsize=7)
    ax.set_xticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if values is not None:
        vals = to_numpy(values, dtype=np.float64)
        for x0, y0, di, ti in cells:
            ax.text(x0 + w / 2, y0 - 1, f"{vals[di, ti]:.2g}", fontsize=4.5, ha="center", va="bottom")
    what = "first column: the input; then " if originals is not None else ""
    ax.set_title(f"latent traversals of {s} samples ({what}each latent swept min -> max in {t} steps)", fontsize=8)
    return fig


def latent_histograms(latents: Tensor | np.ndarray, active: Tensor | np.ndarray, bins: int = 40) -> Figure:
    """Small multiples: the distribution of each latent over the evaluation subset (inactive ones in grey)."""
    z, active = to_numpy(latents), to_numpy(active).astype(bool)
    n_z = z.shape[1]
    ncols = min(n_z, 6)
    nrows = -(-n_z // ncols)
    width, height = 2.0 * ncols, 1.5 * nrows
    fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(
        nrows,
        ncols,
        left=0.1 / width,
        right=1 - 0.1 / width,
        bottom=0.3 / height,
        top=1 - 0.3 / height,
        wspace=0.12,
        hspace=0.75,
    )  # a fixed layout: tight_layout took most of the figure's time
    for j in range(n_z):
        ax = fig.add_subplot(grid[j // ncols, j % ncols])
        color = "tab:blue" if active[j] else _INACTIVE
        ax.hist(z[:, j], bins=bins, color=color)
        ax.set_title(f"z{j}" + ("" if active[j] else " (inactive)"), fontsize=8, color="black" if active[j] else color)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    return fig


def histogram_edges(values: np.ndarray, bins: int = 30) -> np.ndarray:
    """Bin edges for one latent: one bin per distinct value (edges at the midpoints between consecutive values,
    the outer ones half the smallest gap beyond) when it takes at most ``bins`` values, as quantized latents
    do; else ``bins`` equal bins from its minimum to its maximum."""
    u = np.unique(np.asarray(values, dtype=np.float64))
    if len(u) == 1:
        return np.array([u[0] - 0.5, u[0] + 0.5])
    if len(u) <= bins:
        half = np.diff(u).min() / 2
        return np.concatenate([[u[0] - half], (u[1:] + u[:-1]) / 2, [u[-1] + half]])
    return np.linspace(u[0], u[-1], bins + 1)


def pairwise_latent_histograms(
    latents: Tensor | np.ndarray, active: Tensor | np.ndarray, bins: int = 30, panel_inches: float = 1.3
) -> Figure:
    """2-D histograms of every pair of active latents (all latents when none is active), as the Tripod authors'
    ``pairwise_latents``: panel ``(z_i, z_j)``, ``i < j``, in row ``i`` and column ``j`` of the upper triangle,
    counts ``c = |{n : z_ni in bin a, z_nj in bin b}|`` coloured by ``1 + log10 c`` (empty bins white), bins from
    :func:`histogram_edges`. Factorized latents fill a product of their marginals; dependent ones a curve."""
    z, active = to_numpy(latents, dtype=np.float64), to_numpy(active).astype(bool)
    dims = [int(j) for j in np.flatnonzero(active)] or list(range(z.shape[1]))
    d = len(dims)
    if d < 2:
        fig = Figure(figsize=(3.0, 1.0))
        fig.text(0.5, 0.5, f"pairwise latent histograms need 2 latents; {d} active", ha="center", va="center")
        return fig
    edges = {j: histogram_edges(z[:, j], bins) for j in dims}
    n = d - 1
    # a fixed layout and only the upper triangle's axes: tight_layout and the hidden lower triangle took
    # most of the time of a 12-latent figure, which every evaluation draws
    title = f"pairwise histograms of the {d} active latents (log counts)"
    if n < 4:  # a narrow figure: the title on two lines
        title = title.replace(" of the", ",\n")
    width, height = panel_inches * n + 0.6, panel_inches * n + 0.6 + 0.2 * title.count("\n")
    fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(
        n, n, left=0.45 / width, right=1 - 0.15 / width, bottom=0.35 / height,
        top=1 - (0.3 + 0.2 * title.count("\n")) / height, wspace=0.45, hspace=0.45,
    )  # fmt: skip
    for a in range(n):
        for b in range(a + 1, d):  # panel (dims[a], dims[b]), a < b, in row a and column b - 1
            ax = fig.add_subplot(grid[a, b - 1])
            i, j = dims[a], dims[b]
            counts, _, _ = np.histogram2d(z[:, i], z[:, j], bins=(edges[i], edges[j]))
            shown = np.ma.masked_equal(np.log10(np.maximum(counts, 1)) + (counts > 0), 0)
            ax.pcolormesh(edges[i], edges[j], shown.T, cmap="viridis", shading="flat")
            ax.set_xlabel(f"z{i}", fontsize=7, labelpad=1)
            ax.set_ylabel(f"z{j}", fontsize=7, labelpad=1)
            ax.tick_params(labelsize=5, length=2)
    fig.suptitle(title, fontsize=9)
    return fig


def hessian_figure(stats: dict[str, float]) -> Figure:
    """The exact decoder Hessians' structure per activation, from the scalars of
    :func:`tripod_pl.evaluation.decoder_hessian_stats` (keys ``[eval/]hessian/<activation>/<kind>/<statistic>``):
    left, the diagonal share ``diag / (diag + off)`` of ``|H|`` and of the std-rescaled ``|H * s s^T|`` (1: the
    latents act on every unit without interacting); right, the rescaled diagonal and off-diagonal means, log
    scale."""
    table: dict[str, dict[str, float]] = {}
    for key, value in stats.items():
        parts = key.split("/")
        if parts[0] == "eval":
            parts = parts[1:]
        if len(parts) == 4 and parts[0] == "hessian":
            table.setdefault(parts[1], {})[f"{parts[2]}/{parts[3]}"] = float(value)
    if not table:
        raise ValueError("no hessian/<activation>/<kind>/<statistic> entries in the statistics")
    names = list(table)
    x = np.arange(len(names))
    fig = Figure(figsize=(2.0 + 1.3 * len(names), 3.0))
    share, mass = fig.subplots(1, 2)
    for offset, kind in ((-0.2, "raw"), (0.2, "rescaled")):
        share.bar(x + offset, [table[n].get(f"{kind}/diagonal_share", np.nan) for n in names], 0.4, label=f"{kind}")
    share.set_ylim(0, 1)
    share.set_title("diagonal share of |H|", fontsize=9)
    for offset, stat in ((-0.2, "diagonal_mean"), (0.2, "off_diagonal_mean")):
        values = [table[n].get(f"rescaled/{stat}", np.nan) for n in names]
        mass.bar(x + offset, values, 0.4, label=stat.replace("_", " "))
    if any(v > 0 for n in names for k, v in table[n].items() if k.startswith("rescaled/") and "mean" in k):
        mass.set_yscale("log")
    mass.set_title("rescaled |H * s s^T|: mean entry", fontsize=9)
    for ax in (share, mass):
        ax.set_xticks(x, names, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
