"""The Lightning glue: an autoencoder whose latent space is shaped by a list of legs.

``loss = BCE(decoder(z), x) + sum_legs sum_terms weight * term`` (DESIGN §2–§3), every term logged under
``train/`` and ``val/`` with the reconstruction PSNR. The method is chosen by the legs alone, e.g. Tripod is
``bottleneck=FSQ(12), regularizers=[KLM(1e-4), NHP(1e-2)]``.

Example:
    >>> model = TripodModule(FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2)], n_z=12)
    >>> z = model.encode(torch.rand(2, 3, 64, 64) * 2 - 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tripod_pl.legs.base import Bottleneck, Leg, Regularizer, StepContext
from tripod_pl.legs.registry import build_leg
from tripod_pl.nets import Decoder, Encoder

__all__ = ["TripodModule", "load_model"]


class TripodModule(L.LightningModule):
    """Encoder -> bottleneck leg -> decoder, trained with reconstruction plus the legs' weighted terms.

    Args:
        bottleneck: the leg mapping encoder features to latents (FSQ, codebook, Gaussian, identity...).
        regularizers: legs adding loss terms (KLM, NHP, Hessian penalty, beta-TC, plugins...).
        n_z: number of latents; default ``2 * num_sources``.
        num_sources: number of ground-truth sources of the dataset (linked from the data by the CLI).
        dataset_size: number of training images (linked from the data; beta-TC's N).
        encoder_widths: channels of the encoder stages (paper: 32, 64, 128, 256).
        decoder_widths: channels of the decoder stages (paper: 512, 256, 128, 64).
        cond_dim: width of the decoder's conditioning MLP.
        image_size: side of the square input images.
        activation_norm: non-affine GroupNorm after the decoder's upsamples (naive Hessian penalty).
        lr, betas: AdamW parameters.
        weight_decay: AdamW weight decay on the encoder and decoder parameters only (legs never decay).
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
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["bottleneck", "regularizers"])
        if n_z is None:
            if num_sources is None:
                raise ValueError("set n_z, or num_sources (n_z = 2 x num_sources)")
            n_z = 2 * num_sources
        self.n_z = n_z
        self.bottleneck = build_leg(bottleneck)
        self.regularizers = nn.ModuleList(build_leg(r) for r in regularizers)
        if not isinstance(self.bottleneck, Bottleneck):
            raise TypeError(f"bottleneck must be a Bottleneck leg, got {type(self.bottleneck).__name__}")
        for reg in self.regularizers:
            if not isinstance(reg, Regularizer):
                raise TypeError(f"regularizers must be Regularizer legs, got {type(reg).__name__}")
        for leg in self.legs:
            leg.build(n_z, dataset_size)
        # the legs as plain data, so a checkpoint rebuilds them (plugins included) without pickling
        self.hparams["bottleneck"] = self.bottleneck.spec()
        self.hparams["regularizers"] = [r.spec() for r in self.regularizers]
        self.encoder = Encoder(self.bottleneck.encoder_features(n_z), widths=encoder_widths)
        self.decoder = Decoder(
            n_z,
            widths=decoder_widths,
            cond_dim=cond_dim,
            image_size=image_size,
            activation_norm=activation_norm,
        )

    @property
    def legs(self) -> list[Leg]:
        return [self.bottleneck, *self.regularizers]

    @property
    def discrete_latents(self) -> bool:
        """Whether the evaluation latents are quantized (histogram MI) or continuous (kNN MI)."""
        return self.bottleneck.discrete

    # ---- inference API -------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Evaluation latents (quantized values, ``mu`` or ``z``) for images ``x`` in [-1, 1], N x 3 x H x W."""
        return self.bottleneck(self.encoder(x)).z_eval

    def decode(self, z: Tensor) -> Tensor:
        """Images in [-1, 1] (N x 3 x H x W) decoded from latents ``z`` (N x n_z)."""
        return torch.sigmoid(self.decoder(z).float()) * 2 - 1

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x`` in [-1, 1]."""
        return self.decode(self.bottleneck(self.encoder(x)).z)

    # ---- training ------------------------------------------------------------------------------------
    def compute_terms(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """``(loss, unweighted terms, logits)`` for a batch of images in [-1, 1]."""
        latents = self.bottleneck(self.encoder(x))
        logits = self.decoder(latents.z)
        target = (x.float() + 1) / 2
        terms = {"reconstruction": F.binary_cross_entropy_with_logits(logits.float(), target)}
        weights = {"reconstruction": 1.0}
        ctx = StepContext(x=x, latents=latents, decoder=self.decoder)
        for leg, leg_terms in [(self.bottleneck, latents.terms), *((r, r(ctx)) for r in self.regularizers)]:
            for name, value in leg_terms.items():
                if name in terms:
                    raise KeyError(f"loss term {name!r} of {type(leg).__name__} is already taken by another leg")
                terms[name] = value
                weights[name] = leg.weights.get(name, 1.0)
        loss = sum(weights[name] * value for name, value in terms.items())
        return loss, terms, logits

    @staticmethod
    def psnr(logits: Tensor, x: Tensor) -> Tensor:
        """Mean over images of ``10 log10(1 / MSE)`` between the reconstruction and the image in [0, 1]."""
        mse = ((torch.sigmoid(logits.float()) - (x.float() + 1) / 2) ** 2).flatten(1).mean(1)
        return (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean()

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        x = batch["image"]
        loss, terms, logits = self.compute_terms(x)
        logs = {f"{stage}/{name}": value.detach() for name, value in terms.items()}
        logs[f"{stage}/loss"] = loss.detach()
        logs[f"{stage}/psnr"] = self.psnr(logits.detach(), x)
        training = stage == "train"
        self.log_dict(
            logs,
            on_step=training,
            on_epoch=not training,
            batch_size=x.shape[0],
            sync_dist=True,  # terms averaged over DDP ranks, training steps included
            prog_bar=False,
        )
        if training:
            self.log("loss", loss.detach(), prog_bar=True, logger=False, batch_size=x.shape[0])
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        z = self.encode(batch["image"])
        out = {"latents": z}
        if "sources" in batch:
            out["sources"] = batch["sources"]
        return out

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        nets = [p for m in (self.encoder, self.decoder) for p in m.parameters() if p.requires_grad]
        legs = [p for leg in self.legs for p in leg.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": nets, "weight_decay": hp.weight_decay}]
        if legs:
            groups.append({"params": legs, "weight_decay": 0.0})
        return torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))


def load_model(ckpt_path: str, map_location: str | torch.device | None = "cpu") -> TripodModule:
    """A :class:`TripodModule` restored from a checkpoint, in eval mode."""
    model = TripodModule.load_from_checkpoint(ckpt_path, map_location=map_location)
    return model.eval()
