"""The autoencoder itself, in plain PyTorch: encoder -> bottleneck leg -> decoder, plus regularizer legs.

``loss = BCE(decoder(z), (x + 1) / 2) + sum_legs sum_terms weight * term`` (or DSSIM in place of the BCE,
``reconstruction_loss="dssim"``) where ``z`` is what the bottleneck leg makes of the encoder's output and each
regularizer leg adds its named terms (docs/architecture.md; the legs' mathematics in docs/legs.md). The
method is chosen by the legs alone: Tripod is ``FSQ(n_q=12)`` with ``[KLM(1e-4), NHP(1e-2)]``, QLAE a
``ScalarCodebook`` with weight decay, and so on.

Nothing here imports Lightning: the model trains in any loop, and :class:`tripod_pl.TripodModule` is only the
Lightning glue around it (steps, logging, optimizer).

Example:
    >>> model = TripodAutoencoder(FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2)], n_z=12)
    >>> loss, terms, logits = model(images)     # images in [-1, 1], N x 3 x 64 x 64
    >>> loss.backward()
    >>> z = model.encode(images)                # evaluation latents, N x 12
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tripod_pl.data.transforms import as_model_input
from tripod_pl.legs import functional as LF
from tripod_pl.legs.base import Bottleneck, Leg, Regularizer, StepContext
from tripod_pl.legs.registry import build_leg
from tripod_pl.legs.schedules import Schedule, build_schedule
from tripod_pl.nets import CompiledCall, Decoder, Encoder, MLPEncoder

__all__ = ["RECONSTRUCTION_LOSSES", "LossTerms", "TripodAutoencoder"]

#: the reconstruction terms a model can train with (``reconstruction_loss``)
RECONSTRUCTION_LOSSES = ("bce", "dssim")


class LossTerms(NamedTuple):
    """One forward pass of :meth:`TripodAutoencoder.compute_terms`.

    Attributes:
        loss: the weighted sum to minimise (a scalar).
        terms: every term by name, unweighted: ``reconstruction`` and the legs' own.
        logits: the decoder's output logits, N x 3 x H x W (``sigmoid`` gives the image in [0, 1]).
    """

    loss: Tensor
    terms: dict[str, Tensor]
    logits: Tensor


def _run(leg: Regularizer, ctx: StepContext) -> dict[str, Tensor]:
    """The leg's terms; with autocast off unless the leg runs at the training precision (``full_precision``)."""
    if not leg.full_precision:
        return leg(ctx)
    with torch.autocast(ctx.x.device.type, enabled=False):
        return leg(ctx)


class TripodAutoencoder(nn.Module):
    """Encoder, bottleneck leg, decoder and regularizer legs; ``forward`` returns the loss and its terms.

    Args:
        bottleneck: the leg mapping encoder features to latents (FSQ, codebook, Gaussian, identity, ...), or
            its spec ``{"class_path": ..., "init_args": {...}}``.
        regularizers: legs adding loss terms (KLM, NHP, Hessian penalty, beta-TC, plugins, ...), or specs.
        n_z: number of latents; default ``2 * num_sources``.
        num_sources: number of ground-truth sources of the dataset (only to default ``n_z``).
        dataset_size: number of training images (beta-TC's N).
        encoder_widths: channels of the encoder stages (paper: 32, 64, 128, 256).
        decoder_widths: channels of the decoder stages (paper: 512, 256, 128, 64).
        cond_dim: width of the decoder's conditioning MLP.
        image_size: side of the square input images.
        activation_norm: non-affine GroupNorm after the decoder's upsamples (naive Hessian penalty).
        gelu_approximate: the form of every GELU, ``"tanh"`` (the reference's ``jax.nn.gelu``) or ``"none"``
            (exact erf form).
        encoder_type: ``"residual"`` (the paper's convolutional encoder, ``encoder_widths``) or ``"mlp"`` (the
            reference's ``MlpEncoder``: flattened image -> 512 -> features; ``encoder_widths`` unused).
        reconstruction_loss: ``"bce"`` (binary cross-entropy of the logits against ``(x + 1) / 2``, the paper's)
            or ``"dssim"`` (``mean_batch (1 - SSIM(sigmoid(logits), (x + 1) / 2)) / 2``, the reference's
            ``structural_dissimilarity_index_measure``; :func:`tripod_pl.legs.functional.dssim`).
        weight_schedules: term name -> :class:`~tripod_pl.legs.schedules.Schedule` (or its spec): the term's
            weight is multiplied by ``schedule(step)`` when :meth:`compute_terms` gets the training step
            (docs/legs.md, "Weight schedules").
        channels_last: keep the networks' convolution weights and the training images in the channels-last
            memory format (faster convolutions on tensor-core GPUs; docs/architecture.md, "Speed options").
        compile: run the encoder and the decoder (its Hessian-penalty passes included) through
            ``torch.compile`` in training; where compiling fails, one warning says why and they run eagerly
            (:class:`~tripod_pl.nets.CompiledCall`). Inference (``encode``, ``decode``) stays eager.
    """

    def __init__(
        self,
        bottleneck: Bottleneck | dict[str, Any],
        regularizers: Sequence[Regularizer | dict[str, Any]] = (),
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
        weight_schedules: Mapping[str, Schedule | dict[str, Any]] | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.weight_schedules = {name: build_schedule(s) for name, s in (weight_schedules or {}).items()}
        if encoder_type not in ("residual", "mlp"):
            raise ValueError(f"encoder_type must be 'residual' or 'mlp', got {encoder_type!r}")
        if reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(
                f"reconstruction_loss must be one of {', '.join(map(repr, RECONSTRUCTION_LOSSES))}, "
                f"got {reconstruction_loss!r}"
            )
        self.reconstruction_loss = reconstruction_loss
        if n_z is None:
            if num_sources is None:
                raise ValueError("set n_z, or num_sources (n_z = 2 x num_sources)")
            n_z = 2 * num_sources
        self.n_z = int(n_z)
        self.bottleneck = build_leg(bottleneck)
        self.regularizers = nn.ModuleList(build_leg(r) for r in regularizers)
        if not isinstance(self.bottleneck, Bottleneck):
            raise TypeError(f"bottleneck must be a Bottleneck leg, got {type(self.bottleneck).__name__}")
        for reg in self.regularizers:
            if not isinstance(reg, Regularizer):
                raise TypeError(f"regularizers must be Regularizer legs, got {type(reg).__name__}")
        for leg in self.legs:
            leg.build(self.n_z, dataset_size)
        features = self.bottleneck.encoder_features(self.n_z)
        if encoder_type == "mlp":
            self.encoder = MLPEncoder(features, image_size=image_size, gelu_approximate=gelu_approximate)
        else:
            self.encoder = Encoder(features, widths=encoder_widths, gelu_approximate=gelu_approximate)
        self.decoder = Decoder(
            self.n_z,
            widths=decoder_widths,
            cond_dim=cond_dim,
            image_size=image_size,
            activation_norm=activation_norm,
            gelu_approximate=gelu_approximate,
        )
        self.channels_last, self.compile_networks = bool(channels_last), bool(compile)
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)
        # the compiled networks as training calls them, in a plain dict (not submodules: the state dict is unchanged)
        self._compiled: dict[str, CompiledCall] = {}
        if compile:
            self._compiled = {
                "encoder": CompiledCall(self.encoder, "encoder"),
                "decoder": CompiledCall(self.decoder, "decoder"),
                "penalty": CompiledCall(self.decoder, "decoder's Hessian-penalty passes"),
            }

    @property
    def legs(self) -> list[Leg]:
        """The bottleneck, then the regularizers."""
        return [self.bottleneck, *self.regularizers]

    @property
    def discrete_latents(self) -> bool:
        """Whether the evaluation latents are quantized (histogram MI) or continuous (kNN MI)."""
        return self.bottleneck.discrete

    def leg_specs(self) -> dict[str, Any]:
        """The legs as plain data (``bottleneck`` and ``regularizers``), from which a checkpoint rebuilds them."""
        return {"bottleneck": self.bottleneck.spec(), "regularizers": [r.spec() for r in self.regularizers]}

    def schedule_specs(self) -> dict[str, Any]:
        """The weight schedules as plain data, by term."""
        return {name: s.spec() for name, s in self.weight_schedules.items()}

    def scheduled_weights(self, step: int) -> dict[str, float]:
        """The weight at ``step`` of every scheduled term: its leg's weight (1 if the leg lists none) times
        ``schedule(step)``."""
        base = {name: w for leg in self.legs for name, w in leg.weights.items()}
        return {name: base.get(name, 1.0) * s(step) for name, s in self.weight_schedules.items()}

    # ---- inference ----------------------------------------------------------------------------------
    # Inference: without gradients (training goes through compute_terms). Images may be uint8 pixels as the
    # dataset files hold them (N x H x W x 3) or channels first, or float in [-1, 1]: see as_model_input.
    def _images(self, x: Tensor) -> Tensor:
        return self._memory_format(as_model_input(x, dtype=next(self.encoder.parameters()).dtype))

    def _memory_format(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Evaluation latents (quantized values, ``mu`` or ``z``), N x n_z, of a batch of images.

        ``x``: uint8 ``N x H x W x 3`` (as in the dataset files) or ``N x 3 x H x W``, or float in [-1, 1]
        (:func:`~tripod_pl.data.transforms.as_model_input`). No gradients: training uses :meth:`compute_terms`.
        """
        return self.bottleneck(self.encoder(self._images(x))).z_eval

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Images in [-1, 1] (float32, N x 3 x H x W) decoded from latents ``z`` (N x n_z); no gradients."""
        if z.ndim != 2 or z.shape[1] != self.n_z:
            raise ValueError(f"expected latents N x {self.n_z}, got shape {tuple(z.shape)}")
        return torch.sigmoid(self.decoder(z).float()) * 2 - 1

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Reconstruction of images ``x`` (as for :meth:`encode`) through the latents the decoder is trained on."""
        return self.decode(self.bottleneck(self.encoder(self._images(x))).z)

    # ---- training -----------------------------------------------------------------------------------
    def compute_terms(self, x: Tensor, step: int | None = None) -> LossTerms:
        """``(loss, unweighted terms, logits)`` for a batch of images in [-1, 1].

        The reconstruction term is the binary cross-entropy between the logits and ``(x + 1) / 2``, averaged
        over pixels (``reconstruction_loss="bce"``), or the structural dissimilarity ``(1 - SSIM) / 2`` of
        ``sigmoid(logits)`` and ``(x + 1) / 2`` averaged over images (``"dssim"``); each leg's term enters the
        loss multiplied by its weight (``leg.weights``, default 1), times its weight schedule at the training
        ``step`` if it has one and ``step`` is given (without a step, the legs' weights as configured).
        """
        encoder, decoder = self._compiled.get("encoder", self.encoder), self._compiled.get("decoder", self.decoder)
        latents = self.bottleneck(encoder(self._memory_format(x)))
        logits = decoder(latents.z)
        target = (x.float() + 1) / 2
        if self.reconstruction_loss == "dssim":
            reconstruction = LF.dssim(torch.sigmoid(logits.float()), target)
        else:
            reconstruction = F.binary_cross_entropy_with_logits(logits.float(), target)
        terms = {"reconstruction": reconstruction}
        weights = {"reconstruction": 1.0}
        ctx = StepContext(x=x, latents=latents, decoder=self.decoder, decoder_call=self._compiled.get("penalty"))
        for leg, leg_terms in [(self.bottleneck, latents.terms), *((r, _run(r, ctx)) for r in self.regularizers)]:
            for name, value in leg_terms.items():
                if name in terms:
                    raise KeyError(f"loss term {name!r} of {type(leg).__name__} is already taken by another leg")
                terms[name] = value
                weights[name] = leg.weights.get(name, 1.0)
        if self.weight_schedules:
            unknown = sorted(set(self.weight_schedules) - set(terms))
            if unknown:
                raise ValueError(
                    f"weight_schedules: no leg returns the term(s) {unknown}; the terms are {sorted(terms)}"
                )
            if step is not None:
                weights.update(self.scheduled_weights(step))
        loss = sum(weights[name] * value for name, value in terms.items())
        return LossTerms(loss, terms, logits)

    def forward(self, x: Tensor, step: int | None = None) -> LossTerms:
        """Same as :meth:`compute_terms` (so hooks, DDP wrappers and ``torch.compile`` see the training pass)."""
        return self.compute_terms(x, step)

    def parameter_groups(self, weight_decay: float = 0.0) -> list[dict[str, Any]]:
        """Optimizer groups: ``decay`` (``weight_decay``) and ``no_decay`` (0).

        As latent_quantization applies QLAE's weight decay (``AE.param_labels`` in its
        ``disentangle/models/ae.py``: every array named ``bias``, and the latent codebook, go to plain Adam):
        the encoder's and decoder's weights decay -- convolution and linear weights, normalization scales
        and the decoder's learned input -- while their biases (normalization shifts included) and every leg
        parameter (the codebook) do not. Tripod's reference trains with weight decay 0, so the split matters
        only where ``weight_decay`` is set (docs/reference.md, "QLAE").

        A leg with an ``optimizer_groups()`` method (FactorVAE's discriminator) adds the groups it returns, with
        their own hyper-parameters (``lr``, ``betas``, ``weight_decay``) overriding the optimizer's defaults; its
        parameters in them are left out of ``no_decay``.
        """
        own = [g for leg in self.legs if hasattr(leg, "optimizer_groups") for g in leg.optimizer_groups()]
        owned = {id(p) for g in own for p in g["params"]}
        decay, no_decay = [], []
        for module in (self.encoder, self.decoder):
            for name, param in module.named_parameters():
                if param.requires_grad:
                    (no_decay if name.rsplit(".", 1)[-1] == "bias" else decay).append(param)
        no_decay += [p for leg in self.legs for p in leg.parameters() if p.requires_grad and id(p) not in owned]
        return [
            {"name": "decay", "params": decay, "weight_decay": weight_decay},
            {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
            *own,
        ]
