"""Figures, histograms and animations for any Lightning logger: :class:`FigureWriter`.

Scalars go to every logger through Lightning's ``log_metrics``; images have no common Lightning interface.
:class:`FigureWriter` takes the calls of a TensorBoard ``SummaryWriter`` (``add_figure``, ``add_histogram``,
``add_video``) and sends each to every logger of the run in the form it takes:

========================  ===========================  ====================  =================================
logger                    figures                      histograms            animations (GIF)
========================  ===========================  ====================  =================================
``TensorBoardLogger``     image                        histogram             animated image (no moviepy needed)
``WandbLogger``           ``wandb.Image``              ``wandb.Histogram``   ``wandb.Video``
``MLFlowLogger``          ``log_image`` (key, step)    --                    artifact ``<tag>/step_N.gif``
``CSVLogger``             ``<log_dir>/figures/<tag>/step_N.png``  --         ``.../step_N.gif``
anything else             skipped, with one warning    --                    --
========================  ===========================  ====================  =================================

A figure is rendered once (Agg, no ``pyplot``) and the same pixels go to every logger.

Example::

    writer = FigureWriter(trainer.loggers)
    if writer.takes_figures:
        writer.add_figure("eval/nmi", fig, step)
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tripod_pl.animation import gif_bytes
from tripod_pl.io import atomic_path
from tripod_pl.tensors import to_numpy

__all__ = ["FigureWriter", "figure_pixels", "logger_kind"]

#: the loggers :class:`FigureWriter` knows, by class name (no import of optional packages needed to tell them)
KINDS = {"TensorBoardLogger": "tensorboard", "WandbLogger": "wandb", "MLFlowLogger": "mlflow", "CSVLogger": "csv"}


def logger_kind(logger: Any) -> str | None:
    """``"tensorboard"``, ``"wandb"``, ``"mlflow"`` or ``"csv"`` for those Lightning loggers (and subclasses),
    else None."""
    for cls in type(logger).__mro__:
        if cls.__name__ in KINDS:
            return KINDS[cls.__name__]
    return None


def figure_pixels(fig: Figure) -> np.ndarray:
    """A matplotlib figure rendered with Agg, as H x W x 3 uint8 (the figure is not registered anywhere)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _file_tag(tag: str) -> str:
    """A tag as a relative folder path: ``"eval/nmi"`` stays, anything but ``[A-Za-z0-9_.-]`` becomes ``_``."""
    return "/".join(re.sub(r"[^A-Za-z0-9_.-]", "_", part) or "_" for part in tag.split("/"))


class FigureWriter:
    """``SummaryWriter``-like sink that sends figures, histograms and animations to every logger that shows them.

    Args:
        loggers: the run's loggers (``trainer.loggers``); only global rank 0 should write.
    """

    def __init__(self, loggers: Sequence[Any]) -> None:
        self.loggers = list(loggers)
        for logger in self.loggers:
            if logger_kind(logger) is None:
                warnings.warn(
                    f"{type(logger).__name__} is not a logger tripod_pl sends figures to "
                    f"(TensorBoard, W&B, MLflow, CSV): its run gets the scalars only",
                    stacklevel=2,
                )

    @property
    def takes_figures(self) -> bool:
        """Whether any logger of the run shows figures."""
        return any(logger_kind(logger) is not None for logger in self.loggers)

    # ---- the SummaryWriter interface -----------------------------------------------------------------
    def add_figure(self, tag: str, figure: Figure, global_step: int | None = None) -> None:
        """Logs a matplotlib figure as an image under ``tag`` at ``global_step``."""
        self.add_image(tag, figure_pixels(figure), global_step)

    def add_image(self, tag: str, image: np.ndarray, global_step: int | None = None) -> None:
        """Logs an H x W x 3 uint8 image."""
        step = int(global_step or 0)
        for logger in self.loggers:
            kind = logger_kind(logger)
            if kind == "tensorboard":
                logger.experiment.add_image(tag, image, step, dataformats="HWC")
            elif kind == "wandb":
                logger.log_image(tag, [image], step=step)
            elif kind == "mlflow":
                self._mlflow_image(logger, tag, image, step)
            elif kind == "csv":
                from PIL import Image

                with atomic_path(self._csv_file(logger, tag, step, ".png")) as tmp:
                    Image.fromarray(image).save(tmp, format="PNG")

    def add_histogram(self, tag: str, values: Any, global_step: int | None = None) -> None:
        """Logs the distribution of ``values`` (TensorBoard and W&B; the other loggers have no histograms)."""
        step = int(global_step or 0)
        values = to_numpy(values, dtype=np.float64).ravel()
        for logger in self.loggers:
            kind = logger_kind(logger)
            if kind == "tensorboard":
                logger.experiment.add_histogram(tag, values, step)
            elif kind == "wandb":
                import wandb

                logger.log_metrics({tag: wandb.Histogram(values)}, step=step)

    def add_video(self, tag: str, frames: np.ndarray, global_step: int | None = None, fps: float = 10.0) -> None:
        """Logs an animation (F x H x W x 3 uint8 frames) as a looping GIF.

        TensorBoard shows it as an animated image (what ``SummaryWriter.add_video`` writes, but encoded with
        Pillow, so moviepy is not needed).
        """
        step = int(global_step or 0)
        data = gif_bytes(frames, fps)
        height, width = np.asarray(frames).shape[1:3]
        for logger in self.loggers:
            kind = logger_kind(logger)
            if kind == "tensorboard":
                from tensorboard.compat.proto.summary_pb2 import Summary

                image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
                summary = Summary(value=[Summary.Value(tag=tag, image=image)])
                logger.experiment._get_file_writer().add_summary(summary, step)
            elif kind in ("wandb", "mlflow"):
                with tempfile.TemporaryDirectory() as folder:
                    path = os.path.join(folder, f"step_{step:07d}.gif")
                    Path(path).write_bytes(data)
                    if kind == "wandb":
                        logger.log_video(tag, [path], step=step, format=["gif"])
                    else:
                        logger.experiment.log_artifact(logger.run_id, path, artifact_path=_file_tag(tag))
            elif kind == "csv":
                with atomic_path(self._csv_file(logger, tag, step, ".gif")) as tmp:
                    tmp.write_bytes(data)

    # ---- per logger ----------------------------------------------------------------------------------
    @staticmethod
    def _csv_file(logger: Any, tag: str, step: int, suffix: str) -> Path:
        """``<log_dir>/figures/<tag>/step_<step>.<suffix>``; says where the figures go when it creates the folder."""
        root = Path(logger.log_dir) / "figures"
        if not root.exists():
            print(f"CSVLogger takes no images: figures are saved under {root}", flush=True)
        return root / _file_tag(tag) / f"step_{step:07d}{suffix}"

    @staticmethod
    def _mlflow_image(logger: Any, tag: str, image: np.ndarray, step: int) -> None:
        client, run_id = logger.experiment, logger.run_id
        try:  # MLflow >= 2.12: images with a key and a step (shown with a step slider)
            client.log_image(run_id, image, key=tag, step=step)
        except TypeError:
            client.log_image(run_id, image, artifact_file=f"{_file_tag(tag)}/step_{step:07d}.png")
