"""The Lightning glue around :class:`~tripod_pl.model.TripodAutoencoder`: steps, logging, optimizer.

Every loss term is logged under ``train/`` and ``val/`` (``test/``) with the total ``loss`` and the
reconstruction PSNR, both ``psnr`` and the reference's uint8 ``psnr_paper`` (docs/architecture.md,
docs/evaluation.md "PSNR"). The constructor's arguments are those of the model plus the
optimizer's, flat and typed, so LightningCLI configures and documents both (``tripod-train fit --print_config``).

Example:
    >>> module = TripodModule(FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2)], n_z=12)
    >>> L.Trainer(max_steps=1000).fit(module, datamodule=HDF5DataModule("data/procedural.h5"))
    >>> z = module.encode(images)   # module.model is the plain nn.Module
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from tripod_pl.legs.base import Bottleneck, Regularizer
from tripod_pl.legs.schedules import CosineAnnealing, Schedule
from tripod_pl.metrics.reconstruction import psnr, psnr_paper
from tripod_pl.model import LossTerms, TripodAutoencoder

__all__ = ["TripodModule", "load_model"]


class TripodModule(L.LightningModule):
    """Trains a :class:`~tripod_pl.model.TripodAutoencoder` (``self.model``) with AdamW.

    Args:
        bottleneck, regularizers, n_z, num_sources, dataset_size, encoder_widths, decoder_widths, cond_dim,
            image_size, activation_norm, gelu_approximate, encoder_type, reconstruction_loss: the model's, see
            :class:`~tripod_pl.model.TripodAutoencoder` (``num_sources`` and ``dataset_size`` are linked from
            the data by the CLI).
        weight_schedules: term name -> schedule of its weight over the global step (the model's, see
            :class:`~tripod_pl.model.TripodAutoencoder`); each scheduled weight is logged as ``weights/<term>``.
        channels_last, compile: speed options of the model, see :class:`~tripod_pl.model.TripodAutoencoder`.
        lr, betas: AdamW parameters.
        weight_decay: AdamW weight decay on the encoder's and decoder's weights; their biases and the legs'
            parameters never decay (:meth:`~tripod_pl.model.TripodAutoencoder.parameter_groups`).
        lr_schedule, lr_decay_steps, lr_final_ratio: ``"constant"`` keeps ``lr``; ``"cosine"`` multiplies it,
            every optimizer step, by :class:`~tripod_pl.legs.schedules.CosineAnnealing` from 1 to
            ``r = lr_final_ratio`` over ``T = lr_decay_steps`` steps (``None``: the trainer's total steps):
            ``lr_t = lr * (r + (1 - r) * (1 + cos(pi * min(t, T) / T)) / 2)``. Every parameter group (a leg's
            own group included) follows the same factor. Checkpoints keep the curve, its length included, so a
            resumed run continues it even with a larger ``max_steps``: to lengthen a run later, set
            ``lr_decay_steps`` from the start.
    """

    def __init__(
        self,
        bottleneck: Bottleneck,
        regularizers: Sequence[Regularizer] = (),
        n_z: int | None = None,
        num_sources: int | None = None,
        dataset_size: int | None = None,
        encoder_widths: Sequence[int] = (32, 64, 128, 256),
        decoder_widths: Sequence[int] = (512, 256, 128, 64),
        cond_dim: int = 256,
        image_size: int = 64,
        activation_norm: bool = False,
        gelu_approximate: str = "tanh",
        encoder_type: str = "residual",
        reconstruction_loss: str = "bce",
        weight_schedules: Mapping[str, Schedule] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        lr_decay_steps: int | None = None,
        lr_final_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        if lr_decay_steps is not None and lr_decay_steps < 1:
            raise ValueError(f"lr_decay_steps must be a positive number of steps, got {lr_decay_steps}")
        if not 0.0 <= lr_final_ratio <= 1.0:
            raise ValueError(f"lr_final_ratio must lie in [0, 1], got {lr_final_ratio}")
        self.save_hyperparameters(ignore=["bottleneck", "regularizers", "weight_schedules"])
        self.model = TripodAutoencoder(
            bottleneck,
            regularizers,
            n_z=n_z,
            num_sources=num_sources,
            dataset_size=dataset_size,
            encoder_widths=encoder_widths,
            decoder_widths=decoder_widths,
            cond_dim=cond_dim,
            image_size=image_size,
            activation_norm=activation_norm,
            gelu_approximate=gelu_approximate,
            encoder_type=encoder_type,
            reconstruction_loss=reconstruction_loss,
            weight_schedules=weight_schedules,
            channels_last=channels_last,
            compile=compile,
        )
        # non-finite training losses since the last check, a flag on the device (see training_step)
        self._nonfinite: Tensor | None = None
        self._unchecked_steps = 0
        # the resolved values: the number of latents, and the legs as plain data, so a checkpoint rebuilds them
        # (plugins included) without pickling; through save_hyperparameters, so hparams.yaml records them too
        schedules = {"weight_schedules": self.model.schedule_specs()} if self.model.weight_schedules else {}
        self.save_hyperparameters({"n_z": self.model.n_z, **self.model.leg_specs(), **schedules})

    # ---- the model's inference API ------------------------------------------------------------------
    @property
    def n_z(self) -> int:
        return self.model.n_z

    @property
    def discrete_latents(self) -> bool:
        """Whether the evaluation latents are quantized (histogram MI) or continuous (kNN MI)."""
        return self.model.discrete_latents

    def encode(self, x: Tensor) -> Tensor:
        """Evaluation latents for images ``x`` in [-1, 1] (see :meth:`TripodAutoencoder.encode`)."""
        return self.model.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        """Images in [-1, 1] decoded from latents ``z`` (see :meth:`TripodAutoencoder.decode`)."""
        return self.model.decode(z)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of images ``x`` in [-1, 1]."""
        return self.model.reconstruct(x)

    def compute_terms(self, x: Tensor) -> LossTerms:
        """``(loss, unweighted terms, logits)`` of the model for a batch of images in [-1, 1]."""
        return self.model.compute_terms(x)

    # ---- steps --------------------------------------------------------------------------------------
    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        x = batch["image"]
        # the step only where a schedule reads it (a changing Python int would retrace a compiled model)
        loss, terms, logits = self.model(x, step=self.global_step if self.model.weight_schedules else None)
        training = stage == "train"
        if training:
            self.log("loss", loss.detach(), prog_bar=True, logger=False, batch_size=x.shape[0])
            if not self._loggers_write_this_step():
                return loss
        logs = {f"{stage}/{name}": value.detach() for name, value in terms.items()}
        logs[f"{stage}/loss"] = loss.detach()
        recon = torch.sigmoid(logits.detach().float())
        logs[f"{stage}/psnr"] = psnr(recon, (x.float() + 1) / 2).mean()
        logs[f"{stage}/psnr_paper"] = psnr_paper(recon * 2 - 1, x.float()).mean()  # the paper's thresholds' scale
        for reg in self.model.regularizers:  # per-activation diagnostics of this step (legs with diagnostics=True)
            logs.update({f"{stage}/{name}": value for name, value in getattr(reg, "last_diagnostics", {}).items()})
        self.log_dict(
            logs,
            on_step=training,
            on_epoch=not training,
            batch_size=x.shape[0],
            sync_dist=True,  # terms averaged over DDP ranks, training steps included
            prog_bar=False,
        )
        if training and self.model.weight_schedules:  # python floats of the global step: no device sync
            weights = self.model.scheduled_weights(self.global_step)
            self.log_dict({f"weights/{name}": w for name, w in weights.items()}, on_step=True, batch_size=x.shape[0])
        return loss

    def _loggers_write_this_step(self) -> bool:
        """Whether this training step's logged values reach the loggers: Lightning writes ``on_step`` values
        every ``trainer.log_every_n_steps`` steps and the last step's at the end of an epoch; it drops the
        others. A training step computes and logs its metrics (PSNR, terms, diagnostics) only then, and at the
        last step of training (for ``trainer.callback_metrics``): they cost about 4% of a small model's CPU
        step. A callback reading ``train/`` metrics from ``callback_metrics`` sees those of the latest such
        step. Outside a trainer, or where the loop cannot say, always."""
        trainer = self._trainer
        if trainer is None:
            return True
        try:
            loop = trainer.fit_loop.epoch_loop
            if trainer._logger_connector.should_update_logs or loop._num_ready_batches_reached():
                return True
        except AttributeError:  # a Lightning whose loops differ: log every step, as Lightning itself allows
            return True
        return trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step + 1

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        self._check_finite(loss)
        return loss

    def _check_finite(self, loss: Tensor) -> None:
        """Raises ``FloatingPointError`` once a training loss was NaN or infinite, without making the host wait
        for the device every step: a flag accumulates on the device and is read only every
        ``trainer.log_every_n_steps`` steps, when the loggers read the logged values anyway (so a failure is
        reported at most that many steps late)."""
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        self._unchecked_steps += 1
        trainer = self._trainer
        every = trainer.log_every_n_steps if trainer is not None else 1
        if self._unchecked_steps >= every:
            failed, steps = bool(self._nonfinite), self._unchecked_steps
            self._nonfinite, self._unchecked_steps = None, 0
            if failed:
                raise FloatingPointError(
                    f"non-finite training loss within the {steps} steps up to step {self.global_step}"
                )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        out = {"latents": self.model.encode(batch["image"])}
        if "sources" in batch:
            out["sources"] = batch["sources"]
        return out

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        hp = self.hparams
        groups = self.model.parameter_groups(weight_decay=hp.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))
        if hp.lr_schedule == "constant":
            return optimizer
        total = hp.lr_decay_steps or self._total_steps()
        # a callable object, not a function: LambdaLR saves its attributes (the curve's length) in checkpoints
        factor = CosineAnnealing(steps=total, start=1.0, end=hp.lr_final_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _total_steps(self) -> int:
        """The trainer's number of optimizer steps, for a schedule without ``lr_decay_steps``."""
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else math.inf
        if not math.isfinite(total):
            raise ValueError("lr_schedule 'cosine' needs lr_decay_steps, or a trainer with max_steps or max_epochs")
        return int(total)


def load_model(ckpt_path: str, map_location: str | torch.device | None = "cpu") -> TripodModule:
    """A :class:`TripodModule` restored from a checkpoint, in eval mode (``.model`` is the plain nn.Module).

    Its ``encode`` takes the data file's uint8 images as they are (``N x H x W x 3``) or float images in [-1, 1]
    (:func:`tripod_pl.data.transforms.as_model_input`), and returns latents without gradients.
    """
    model = TripodModule.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=True)
    return model.eval()
