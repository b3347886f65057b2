"""Latent traversal animations (docs/evaluation.md): every traversed latent swept back and forth across its range.

As disentanglement_lib's visualizer animates a latent (Locatello et al., ICML 2019, ``minmax_interval_cycle``):
the latent starts at the sample's own value, rises to its maximum over the evaluation subset, falls to its
minimum and returns, in ``num_frames`` frames (one period of a triangle wave, so the GIF loops without a jump);
the other latents keep the sample's values. Quantized latents (FSQ, codebooks) step through the values they take
on the subset, so every frame decodes a code the decoder was trained on; continuous latents move linearly.

A frame is a grid: a row per sample, a column per traversed latent, a header naming each latent. Nothing here
imports Lightning; the GIFs are written with Pillow.

Example:
    >>> result = evaluate_model(model, images, sources, dci=False)
    >>> dims = [int(j) for j in np.flatnonzero(result.active)]
    >>> decoded = traversal_animation(model, result.latents, dims, torch.arange(4), discrete=True)
    >>> save_gif(animation_frames(decoded, [f"z{j}" for j in dims]), "traversals.gif", fps=10)
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from tripod_pl.evaluation import decode_latents
from tripod_pl.io import atomic_path
from tripod_pl.model import TripodAutoencoder

__all__ = [
    "animation_frames",
    "cycle_positions",
    "cycle_values",
    "gif_bytes",
    "header_labels",
    "save_gif",
    "traversal_animation",
]


def cycle_positions(start: Tensor, num_frames: int) -> Tensor:
    """One period of a triangle wave on [0, 1] from ``start`` (any shape, in [0, 1]), rising first:
    ``u_k = fold(start + 2k / F)``, ``k = 0..F-1``, with ``fold(p) = p mod 2`` mirrored into [0, 1]
    (``2 - p`` above 1). Returns ``start.shape + (F,)``."""
    if num_frames < 2:
        raise ValueError(f"an animation needs at least 2 frames, got num_frames={num_frames}")
    k = torch.arange(num_frames, dtype=torch.float64, device=start.device)
    p = torch.remainder(start.double()[..., None] + 2.0 * k / num_frames, 2.0)
    return torch.where(p <= 1.0, p, 2.0 - p)


def cycle_values(latents: Tensor, picked: Tensor, dims: Sequence[int], num_frames: int, discrete: bool) -> Tensor:
    """The values each picked sample's traversed latents take in the animation: S x D x F.

    ``latents`` (N x n_z) sets each latent's range: ``[min, max]`` over the N samples; the cycle
    (:func:`cycle_positions`) starts at the sample's own value. Discrete latents snap to the ``L`` distinct
    values latent ``j`` takes on the N samples: position ``u`` shows value ``round(u (L - 1))`` in sorted order
    (a latent with one value stays there). ``picked`` indexes the S samples in ``latents``.
    """
    picked = torch.as_tensor(picked, device=latents.device).long()
    values = torch.empty(len(picked), len(dims), num_frames, dtype=latents.dtype, device=latents.device)
    for row, dim in enumerate(dims):
        column, own = latents[:, dim], latents[picked, dim]
        if discrete:
            levels = torch.unique(column)  # sorted
            span = len(levels) - 1
            start = torch.searchsorted(levels, own).clamp_max(span).double() / max(span, 1)
            index = torch.round(cycle_positions(start, num_frames) * span).long()
            values[:, row] = levels[index]
        else:
            lo, hi = column.min(), column.max()
            width = (hi - lo).double()
            start = ((own - lo).double() / width).nan_to_num(0.0) if width > 0 else torch.zeros_like(own).double()
            values[:, row] = (lo + cycle_positions(start, num_frames) * width).to(latents.dtype)
    return values


def traversal_animation(
    model: TripodAutoencoder,
    latents: Tensor,
    dims: Sequence[int],
    picked: Tensor,
    num_frames: int = 20,
    discrete: bool | None = None,
    batch_size: int = 500,
) -> Tensor:
    """Decoded animation frames, S x D x F x C x H x W in [-1, 1]: picked sample ``s`` with latent ``dims[d]`` at
    its ``f``-th value of :func:`cycle_values` (``discrete`` defaults to ``model.discrete_latents``)."""
    if not dims:
        raise ValueError("no latents to animate")
    from tripod_pl.callbacks.figures import traversal_latents  # here: tripod_pl.callbacks imports this module

    discrete = bool(model.discrete_latents) if discrete is None else discrete
    picked = torch.as_tensor(picked, device=latents.device).long()
    values = cycle_values(latents, picked, dims, num_frames, discrete)
    z = traversal_latents(latents[picked], values, dims)
    decoded = decode_latents(model, z.reshape(-1, z.shape[-1]), batch_size)
    return decoded.reshape(*z.shape[:3], *decoded.shape[1:]).cpu()


def header_labels(
    dims: Sequence[int], nmi: np.ndarray | None = None, source_names: Sequence[str] | None = None
) -> list[str]:
    """Column headers: ``"z3"``, and with the NMI matrix (K x n_z) a second line with the largest NMI of the
    latent with a source and that source, e.g. ``"z3\\n.82 shape"`` (names longer than a cell are cut there)."""
    labels = []
    for j in dims:
        label = f"z{j}"
        if nmi is not None and source_names is not None:
            column = np.asarray(nmi)[:, j]
            i = int(np.argmax(column))
            label += "\n" + f"{column[i]:.2f} {source_names[i]}".removeprefix("0")
        labels.append(label)
    return labels


def animation_frames(
    images: Tensor, labels: Sequence[str] | None = None, pad: int = 2, header: int | None = None
) -> np.ndarray:
    """The frames of an animation as one grid each: F x H' x W' x 3 uint8.

    ``images`` is S x D x F x C x H x W in [-1, 1] (C = 1 or 3): row ``s``, column ``d`` of frame ``f`` shows
    ``images[s, d, f]``, on a white background with ``pad`` pixels between cells; ``labels`` (D strings, may hold
    a newline) are written above the columns in a header of ``header`` pixels (default: 12 per line), each line
    cut to the column's width.
    """
    s, d, f, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {c}")
    if labels is not None and len(labels) != d:
        raise ValueError(f"{len(labels)} labels for {d} animated latents")
    if header is None:
        header = 0 if labels is None else 12 * max(label.count("\n") + 1 for label in labels) + pad
    pix = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pix = pix.expand(s, d, f, 3, h, w) if c == 1 else pix
    pix = pix.permute(2, 0, 4, 1, 5, 3).numpy()  # F x S x H x D x W x 3
    height, width = header + s * (h + pad) + pad, d * (w + pad) + pad
    frames = np.full((f, height, width, 3), 255, dtype=np.uint8)
    for si in range(s):
        y0 = header + pad + si * (h + pad)
        for di in range(d):
            x0 = pad + di * (w + pad)
            frames[:, y0 : y0 + h, x0 : x0 + w] = pix[:, si, :, di]
    if labels is not None and header > 0:
        strip = Image.fromarray(frames[0, :header])
        draw, font = ImageDraw.Draw(strip), ImageFont.load_default()
        for di, label in enumerate(labels):
            lines = [_fit(draw, font, line, w + pad - 2) for line in label.split("\n")]
            draw.multiline_text((pad + di * (w + pad) + 1, 1), "\n".join(lines), fill=(0, 0, 0), font=font, spacing=1)
        frames[:, :header] = np.asarray(strip)
    return frames


def _fit(draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont, text: str, width: int) -> str:
    """``text`` cut at the end to at most ``width`` pixels (at least one character)."""
    while len(text) > 1 and draw.textlength(text, font=font) > width:
        text = text[:-1]
    return text


def gif_bytes(frames: np.ndarray, fps: float = 10.0) -> bytes:
    """An endlessly looping GIF of ``frames`` (F x H x W x 3 uint8) at ``fps`` frames per second.

    GIF stores delays in hundredths of a second: ``fps`` above 50 plays at 50. Pillow merges identical
    consecutive frames into one longer frame, so the total duration, not the frame count, is ``F / fps``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be F x H x W x 3 uint8, got {frames.dtype} {frames.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    # one median-cut palette of 256 colours for all frames stacked, not one per frame (Pillow's default): twice
    # as fast on traversal frames, as close to them (mean error 2.0 against 1.6 levels), no flicker between frames
    palette = Image.fromarray(np.concatenate(list(frames), axis=0)).quantize(256)
    images = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    buffer = io.BytesIO()
    duration = max(20, round(1000 / fps / 10) * 10)
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buffer.getvalue()


def save_gif(frames: np.ndarray, path: str | os.PathLike[str], fps: float = 10.0) -> None:
    """Writes :func:`gif_bytes` to ``path`` atomically (creating its folder)."""
    data = gif_bytes(frames, fps)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
