"""Model selection as in the paper (docs/evaluation.md, "Model selection"): the checkpoint with the best InfoM
among those whose PSNR exceeds the dataset's threshold (38 / 42 / 34 / 40 dB on Shapes3D / MPI3D / Falcor3D /
Isaac3D). Those thresholds are on the scale of the authors' uint8 PSNR, so the PSNR compared is ``psnr_paper``
by default (:func:`tripod_pl.metrics.reconstruction.psnr_paper`); ``psnr_metric="psnr"`` selects on the
correct PSNR instead (docs/reference.md, "PSNR").

:class:`BestInfoMCheckpoint` pairs each evaluation of :class:`~tripod_pl.callbacks.EvaluationCallback`
(``eval/infom`` at step ``eval/step`` in ``trainer.callback_metrics``) with the PSNR of the *same weights*:
``val/<psnr_metric>`` from a validation run at the same global step (so validate at every evaluation step), or
``eval/<psnr_metric>``, the evaluation subset's own (``psnr_stage="eval"``). Eligible (PSNR > threshold) and
better than every earlier candidate, the weights are saved to ``dirpath/filename`` atomically
(:func:`~tripod_pl.callbacks.checkpoint_files.save_checkpoint_atomically`), so the file is always a complete
checkpoint. The best score travels in the callback's state, so a resumed run keeps
comparing against it. As a :class:`~lightning.pytorch.callbacks.Checkpoint`, Lightning runs it after the other
callbacks, hence after the evaluation of the same hook.

With ``EvaluationCallback(asynchronous=True)`` a score arrives steps after its weights were snapshotted; the
evaluation callback then saves a checkpoint at the snapshot's step and hands it to :meth:`consider`
(``psnr_stage="eval"`` only).

Example::

    callbacks = [EvaluationCallback(every_n_steps=10_000), BestInfoMCheckpoint(psnr_threshold=38.0)]
    BestInfoMCheckpoint(psnr_threshold=30.0, psnr_metric="psnr", psnr_stage="eval")  # correct PSNR, eval subset
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from tripod_pl.callbacks.checkpoint_files import checkpoint_dir, save_checkpoint_atomically
from tripod_pl.callbacks.evaluation import EVAL_STEP_KEY
from tripod_pl.io import atomic_path
from tripod_pl.metrics.reconstruction import PSNR_METRICS

__all__ = ["BestInfoMCheckpoint"]

INFOM_KEY = "eval/infom"
BEST_KEY = "eval/best_infom"


class BestInfoMCheckpoint(Checkpoint):
    """Keeps the checkpoint with the best InfoM among those with PSNR above ``psnr_threshold``.

    Args:
        psnr_threshold: minimum PSNR (dB, exclusive) for a checkpoint to be eligible.
        dirpath: folder of the checkpoint; default: the run's checkpoint folder (where the first
            ``ModelCheckpoint`` saves, else ``<default_root_dir>/checkpoints``).
        filename: file name of the checkpoint inside ``dirpath``.
        psnr_metric: which PSNR: ``"psnr_paper"`` (the authors' uint8 computation, the scale of the paper's
            thresholds) or ``"psnr"`` (the correct floating-point one).
        psnr_stage: where it is measured: ``"val"`` (validation at the evaluation's step) or ``"eval"`` (the
            evaluation subset, at once).
        every_n_steps: only evaluations after a multiple of this many steps are candidates; the others (say,
            a dense early schedule) are passed over without a warning. The reference saves checkpoints, its
            only candidates, every 10,000 steps. Default: every evaluation.

    ``best_model_path`` and ``best_model_score`` mirror ``ModelCheckpoint``'s, so ``trainer.test(ckpt_path="best")``
    works when this is the first checkpoint callback. Being a checkpoint callback, it needs
    ``enable_checkpointing=True``, and Lightning then adds no default ``ModelCheckpoint``: list one explicitly
    to keep ``last.ckpt`` (every config does).
    """

    def __init__(
        self,
        psnr_threshold: float,
        dirpath: str | None = None,
        filename: str = "best-infom.ckpt",
        psnr_metric: str = "psnr_paper",
        psnr_stage: str = "val",
        every_n_steps: int | None = None,
    ) -> None:
        super().__init__()
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be positive, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        if psnr_metric not in PSNR_METRICS:
            raise ValueError(f"psnr_metric must be one of {PSNR_METRICS}, got {psnr_metric!r}")
        if psnr_stage not in ("val", "eval"):
            raise ValueError(f"psnr_stage must be 'val' or 'eval', got {psnr_stage!r}")
        if os.sep in filename or (os.altsep and os.altsep in filename):
            raise ValueError(f"filename must be a plain file name, got {filename!r}; put folders in dirpath")
        self.psnr_threshold = float(psnr_threshold)
        self.dirpath = dirpath
        self.filename = filename
        self.psnr_metric, self.psnr_stage = psnr_metric, psnr_stage
        #: the ``trainer.callback_metrics`` key compared with the threshold
        self.psnr_key = f"{psnr_stage}/{psnr_metric}"
        # state (saved with every checkpoint)
        self.best_infom: float | None = None
        self.best_psnr: float | None = None
        self.best_step: int | None = None
        self.best_model_path: str = ""
        # per-run bookkeeping
        self._considered_step: int | None = None
        self._val_step: int | None = None
        self._unpaired: list[int] = []

    @property
    def best_model_score(self) -> torch.Tensor | None:
        return None if self.best_infom is None else torch.tensor(self.best_infom)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(psnr_threshold=self.psnr_threshold, filename=self.filename)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_infom": self.best_infom,
            "best_psnr": self.best_psnr,
            "best_step": self.best_step,
            "best_model_path": self.best_model_path,
            "psnr_threshold": self.psnr_threshold,
            "psnr_key": self.psnr_key,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("psnr_threshold", self.psnr_threshold) != self.psnr_threshold or (
            state_dict.get("psnr_key", self.psnr_key) != self.psnr_key
        ):
            rank_zero_warn(
                "BestInfoMCheckpoint: the checkpoint was selected with psnr_threshold="
                f"{state_dict.get('psnr_threshold')} on {state_dict.get('psnr_key')!r}, now "
                f"{self.psnr_threshold} on {self.psnr_key!r}; the best checkpoint so far is forgotten"
            )
            return
        self.best_infom = state_dict.get("best_infom")
        self.best_psnr = state_dict.get("best_psnr")
        self.best_step = state_dict.get("best_step")
        self.best_model_path = state_dict.get("best_model_path", "")

    # ---- Lightning hooks -----------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._considered_step = self._val_step = None
            self._unpaired = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > 0:  # a resumed run whose checkpoint's step was evaluated again at its start
            self.select(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.select(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self._val_step = trainer.global_step
        self.select(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.select(trainer)
        unpaired, self._unpaired = self._unpaired, []
        if unpaired:
            rank_zero_warn(
                f"BestInfoMCheckpoint: evaluations at steps {unpaired} had no {self.psnr_key!r} measured at the "
                "same step and were not considered; validate at the evaluation steps (trainer.val_check_interval"
                " and the evaluation schedule) or use psnr_stage='eval'"
            )

    # ---- selection -----------------------------------------------------------------------------------
    def select(self, trainer: L.Trainer) -> bool:
        """Considers the latest evaluation if it is of the current weights and has a PSNR of the same weights;
        saves the checkpoint when it is eligible and the best so far. Returns whether it saved."""
        if trainer.sanity_checking or trainer.fast_dev_run:
            return False
        metrics = trainer.callback_metrics
        step = trainer.global_step
        if EVAL_STEP_KEY not in metrics or int(metrics[EVAL_STEP_KEY]) != step or self._considered_step == step:
            return False
        if self.every_n_steps is not None and step % self.every_n_steps != 0:
            return False  # not a candidate step
        psnr_step = step if self.psnr_stage == "eval" else self._val_step
        if psnr_step != step or self.psnr_key not in metrics:
            if step not in self._unpaired:
                self._unpaired.append(step)
            return False
        self._considered_step = step
        if step in self._unpaired:
            self._unpaired.remove(step)
        infom, psnr = float(metrics[INFOM_KEY]), float(metrics[self.psnr_key])
        saved = False
        if psnr > self.psnr_threshold and (self.best_infom is None or infom > self.best_infom):
            self.best_infom, self.best_psnr, self.best_step = infom, psnr, step
            self.best_model_path = os.path.join(self.dirpath or checkpoint_dir(trainer), self.filename)
            save_checkpoint_atomically(trainer, self.best_model_path)
            saved = True
            rank_zero_info(
                f"BestInfoMCheckpoint: step {step} has the best InfoM {infom:.4f} with {self.psnr_key} {psnr:.2f} dB"
                f" > {self.psnr_threshold} dB; saved {self.best_model_path}"
            )
        self._log_best(trainer, step)
        return saved

    def consider(self, trainer: L.Trainer, step: int, candidate: str) -> bool:
        """Considers an asynchronous evaluation (``eval/step`` = ``step``, earlier than the current one) whose
        weights were saved to ``candidate`` at that step: copies that file to the best checkpoint when the
        evaluation is eligible and the best so far. ``psnr_stage="eval"`` only (a validation PSNR of those
        weights is not kept). Collective, like :meth:`select`; returns whether it saved."""
        metrics = trainer.callback_metrics
        if (
            self.psnr_stage != "eval"
            or EVAL_STEP_KEY not in metrics
            or int(metrics[EVAL_STEP_KEY]) != step
            or self._considered_step == step
            or self.psnr_key not in metrics
            or (self.every_n_steps is not None and step % self.every_n_steps != 0)
        ):
            return False
        self._considered_step = step
        infom, psnr = float(metrics[INFOM_KEY]), float(metrics[self.psnr_key])
        saved = False
        if psnr > self.psnr_threshold and (self.best_infom is None or infom > self.best_infom):
            self.best_infom, self.best_psnr, self.best_step = infom, psnr, step
            self.best_model_path = os.path.join(self.dirpath or checkpoint_dir(trainer), self.filename)
            if trainer.is_global_zero:
                _copy_with_state(candidate, self.best_model_path, self.state_key, self.state_dict())
            trainer.strategy.barrier("BestInfoMCheckpoint.consider")
            saved = True
            rank_zero_info(
                f"BestInfoMCheckpoint: step {step} has the best InfoM {infom:.4f} with {self.psnr_key} {psnr:.2f} dB"
                f" > {self.psnr_threshold} dB; saved its weights to {self.best_model_path}"
            )
        self._log_best(trainer, step)
        return saved

    def _log_best(self, trainer: L.Trainer, step: int) -> None:
        if self.best_infom is not None:
            trainer.callback_metrics[BEST_KEY] = torch.tensor(self.best_infom)
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.log_metrics({BEST_KEY: self.best_infom}, step=step)


def _copy_with_state(candidate: str, path: str, key: str, state: dict[str, Any]) -> None:
    """Writes the checkpoint ``candidate`` to ``path`` atomically, with this callback's state (``key``) replaced by
    ``state``: the candidate was saved before its score arrived, so it holds the selection of one best earlier."""
    checkpoint = torch.load(candidate, map_location="cpu", weights_only=False)
    checkpoint.setdefault("callbacks", {})[key] = state
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
