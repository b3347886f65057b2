"""``tripod-train traverse``: latent traversal animations of a checkpoint, as looping GIFs.

The model and the data module are restored from the checkpoint as by ``tripod-train evaluate``
(``--data.<option>`` overrides any data option). The evaluation subset is encoded to find the active latents,
their ranges (quantized latents: the values they take) and the source each latent shares the most NMI with;
then ``--num_samples`` seeded samples (the figures' samples) have each active latent cycled from their own
value to its maximum, its minimum and back (:mod:`tripod_pl.animation`, as disentanglement_lib's visualizer).

Written into ``--out`` (default: ``<checkpoint>.traversals/`` next to the checkpoint):

- ``traversals.gif``: every active latent at once, a row per sample and a column per latent;
- ``z<j>.gif``: latent ``j`` alone, a row per sample.

Example::

    tripod-train traverse --ckpt_path runs/quickstart/checkpoints/last.ckpt --fps 10 --num_frames 20
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np
import torch
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from tripod_pl.animation import animation_frames, header_labels, save_gif, traversal_animation
from tripod_pl.callbacks.evaluation import figure_samples
from tripod_pl.cli.evaluate import CheckpointError, restore_datamodule
from tripod_pl.data import HDF5DataModule
from tripod_pl.evaluation import evaluate_model
from tripod_pl.module import TripodModule

__all__ = [
    "DESCRIPTION",
    "TraverseOptionError",
    "default_out_dir",
    "run_traverse",
    "traverse_checkpoint",
    "traverse_parser",
]

DESCRIPTION = "Animate a checkpoint's latent traversals: one looping GIF per active latent and one of all of them"


class TraverseOptionError(ValueError):
    """An option of ``traverse`` out of its range; the message is one line naming it."""


def check_options(fps: float, num_frames: int, num_samples: int) -> None:
    """Raises :class:`TraverseOptionError` for an option out of its range."""
    if num_frames < 2:
        raise TraverseOptionError(f"--num_frames must be at least 2, got {num_frames}")
    if num_samples < 1:
        raise TraverseOptionError(f"--num_samples must be at least 1, got {num_samples}")
    if fps <= 0:
        raise TraverseOptionError(f"--fps must be positive, got {fps}")


def default_out_dir(ckpt_path: str | os.PathLike[str]) -> Path:
    """``runs/x/checkpoints/last.ckpt`` -> ``runs/x/checkpoints/last.traversals``."""
    path = Path(ckpt_path)
    return path.with_name(path.stem + ".traversals")


def traverse_checkpoint(
    ckpt_path: str,
    data: HDF5DataModule | None = None,
    out: str | os.PathLike[str] | None = None,
    fps: float = 10.0,
    num_frames: int = 20,
    num_samples: int = 5,
    all_latents: bool = False,
    device: str | None = None,
    batch_size: int = 500,
) -> list[Path]:
    """Writes the traversal GIFs of a checkpoint (see the module) and returns their paths, the grid first.

    ``all_latents`` animates every latent, not only the active ones (all of them when none is active).
    """
    if not os.path.isfile(ckpt_path):
        raise CheckpointError(ckpt_path, "no such checkpoint file")
    check_options(fps, num_frames, num_samples)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data = data if data is not None else restore_datamodule(ckpt_path)
    module = TripodModule.load_from_checkpoint(ckpt_path, map_location=device, weights_only=True).eval()
    images, sources = data.eval_subset()
    result = evaluate_model(module.model, images, sources, dci=False, batch_size=batch_size)
    n_z = result.latents.shape[1]
    dims = [int(j) for j in np.flatnonzero(result.active)]
    if all_latents or not dims:
        dims = list(range(n_z))
    picked = figure_samples(int(images.shape[0]), num_samples)
    cycled = traversal_animation(module.model, result.latents, dims, picked, num_frames, batch_size=batch_size)
    labels = header_labels(dims, result.nmi, [str(n) for n in data.source_names])
    out = Path(out) if out is not None else default_out_dir(ckpt_path)
    paths = [out / "traversals.gif"]
    save_gif(animation_frames(cycled, labels), paths[0], fps)
    for d, j in enumerate(dims):
        paths.append(out / f"z{j}.gif")
        save_gif(animation_frames(cycled[:, d : d + 1], labels[d : d + 1]), paths[-1], fps)
    return paths


def traverse_parser(**kwargs: Any) -> ArgumentParser:
    """The options of ``tripod-train traverse``; every ``--data.<option>`` defaults to the checkpoint's."""
    parser = ArgumentParser(description=DESCRIPTION, **kwargs)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file with any of these options")
    parser.add_argument("--ckpt_path", type=str, required=True, help="the checkpoint to animate")
    parser.add_argument(
        "--out", type=str | None, default=None,
        help="folder for the GIFs (default: <checkpoint name>.traversals next to the checkpoint)",
    )  # fmt: skip
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second")
    parser.add_argument("--num_frames", type=int, default=20, help="frames of one cycle min -> max -> min")
    parser.add_argument("--num_samples", type=int, default=5, help="samples animated (rows)")
    parser.add_argument("--all_latents", type=bool, default=False, help="animate the inactive latents too")
    parser.add_argument("--device", type=str | None, default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--batch_size", type=int, default=500, help="images per encoder/decoder call")
    hints = get_type_hints(HDF5DataModule.__init__)
    for name in list(inspect.signature(HDF5DataModule.__init__).parameters)[1:]:
        parser.add_argument(
            f"--data.{name}", type=hints[name] | None, default=None, help="default: as in the checkpoint"
        )
    return parser


def run_traverse(cfg: Namespace) -> list[Path]:
    """Runs the command for parsed options; prints where the GIFs are."""
    data_cfg = cfg.get("data") or Namespace()
    overrides = {k: v for k, v in vars(data_cfg).items() if v is not None}
    if not os.path.isfile(cfg.ckpt_path):
        raise CheckpointError(cfg.ckpt_path, "no such checkpoint file")
    check_options(cfg.fps, cfg.num_frames, cfg.num_samples)
    data = restore_datamodule(cfg.ckpt_path, **overrides)
    paths = traverse_checkpoint(
        cfg.ckpt_path, data, out=cfg.out, fps=cfg.fps, num_frames=cfg.num_frames, num_samples=cfg.num_samples,
        all_latents=cfg.all_latents, device=cfg.device, batch_size=cfg.batch_size,
    )  # fmt: skip
    print(f"wrote {len(paths)} GIFs into {paths[0].parent}: {', '.join(p.name for p in paths)}")
    return paths
