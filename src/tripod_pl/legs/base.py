"""The leg abstraction (docs/architecture.md, "Legs"): a ``torch.nn.Module`` that returns named loss terms
and carries weights.

Exactly one leg of a model is a :class:`Bottleneck` (encoder output -> latents); any number are
:class:`Regularizer` s. Every leg records the arguments it was built with, so a model can be saved as plain
data (``spec()``) and rebuilt from it, including legs from third-party packages.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["Bottleneck", "Latents", "Leg", "Regularizer", "StepContext"]


@dataclass
class Latents:
    """What a bottleneck produces for a batch.

    Attributes:
        z: latents fed to the decoder (quantized values with straight-through gradients, or samples).
        z_c: continuous latents before quantization (their batch std ``s`` rescales KLM and NHP).
        z_eval: latents used for evaluation (quantized values, ``mu``, or ``z``).
        terms: the bottleneck's own loss terms, unweighted.
        mu, sigma: Gaussian posterior parameters (Gaussian bottleneck only).
    """

    z: Tensor
    z_c: Tensor
    z_eval: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    mu: Tensor | None = None
    sigma: Tensor | None = None


class _Activations:
    """Callable view of a decoder restricted to named activations (what the Hessian penalties differentiate).

    With ``dtype`` set (e.g. float64) the decoder runs with its parameters cast to that dtype and autocast off;
    gradients still reach the original parameters. Without, it runs as trained, through ``call(z, names)`` if
    given (the compiled decoder) or ``decoder.activations``.
    """

    def __init__(
        self,
        decoder: nn.Module,
        names: Sequence[str],
        dtype: torch.dtype | None = None,
        call: Callable[..., Sequence[Tensor]] | None = None,
    ) -> None:
        self.decoder, self.names, self.dtype, self.call = decoder, list(names), dtype, call

    def second_derivatives(self, z: Tensor, v: Tensor) -> list[Tensor] | None:
        """Exact ``d^2/dt^2`` of the activations at ``z + t v`` from the decoder's own Taylor propagation
        (``decoder.second_directional_derivatives``), where it has one for these names and the decoder runs
        in its parameters' dtype; ``None`` otherwise."""
        jets = getattr(self.decoder, "second_directional_derivatives", None)
        if jets is None:
            return None
        if self.dtype is None:
            return jets(z, v, self.names)
        param = next(self.decoder.parameters(), None)
        if param is None or param.dtype != self.dtype:
            return None
        with torch.autocast(z.device.type, enabled=False):
            return jets(z.to(self.dtype), v.to(self.dtype), self.names)

    def __call__(self, z: Tensor) -> list[Tensor]:
        if self.dtype is None:
            return list(self.call(z, self.names)) if self.call is not None else self.decoder.activations(z, self.names)
        state = {name: t.to(self.dtype) for name, t in self.decoder.named_parameters()}
        state.update({name: t.to(self.dtype) for name, t in self.decoder.named_buffers()})
        with torch.autocast(z.device.type, enabled=False):
            return functional_call(self.decoder, state, (z.to(self.dtype),), {"names": self.names})


@dataclass
class StepContext:
    """Everything a regularizer may look at in one training step.

    Attributes:
        x: input images, B x C x H x W in [-1, 1].
        latents: the bottleneck output.
        decoder: the decoder; ``decoder.activations(z, names)`` gives named activations.
        decoder_call: the decoder as the model runs it, ``decoder_call(z, names)`` (compiled with
            ``compile: true``); ``None``: the decoder itself.
    """

    x: Tensor
    latents: Latents
    decoder: nn.Module
    decoder_call: Callable[..., Any] | None = None

    def activations(self, names: Sequence[str], dtype: torch.dtype | None = None) -> Callable[[Tensor], list[Tensor]]:
        """``f(z) -> [activation for name in names]``, running the decoder no further than needed, in
        ``dtype`` if given (default: as trained, compiled if the model is)."""
        return _Activations(self.decoder, names, dtype, self.decoder_call)

    @property
    def num_pixels(self) -> int:
        return int(self.x[0].numel())


class Leg(nn.Module):
    """Base class of all legs.

    Subclasses declare typed ``__init__`` arguments (LightningCLI configures them) and implement ``forward``.
    The arguments are recorded automatically; :meth:`spec` returns them as ``{"class_path", "init_args"}``.
    Legs whose shape depends on the model (e.g. one codebook per latent) create their parameters in
    :meth:`build`, which the model calls once with the number of latents and the dataset size.
    """

    #: short name in the leg registry (set by ``register_leg``).
    leg_name: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Leg, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            if type(self).__init__ is recording_init:  # the most-derived class records its own arguments
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop("self")
                for name, param in signature.parameters.items():
                    if param.kind is param.VAR_KEYWORD:
                        arguments.update(arguments.pop(name, {}))
                self._init_args = arguments

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def build(self, n_z: int, dataset_size: int | None = None) -> None:
        """Create model-dependent state; called once by the model before training. Default: nothing."""

    @property
    def weights(self) -> dict[str, float]:
        """Weight of each named term this leg returns (a term not listed has weight 1)."""
        return {}

    def spec(self) -> dict[str, Any]:
        """The leg as plain data: ``{"class_path": "pkg.module.Class", "init_args": {...}}``."""
        cls = type(self)
        args = {k: list(v) if isinstance(v, tuple) else v for k, v in self._init_args.items()}
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": args}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in getattr(self, "_init_args", {}).items())


class Bottleneck(Leg):
    """A leg mapping encoder output ``h`` to :class:`Latents`."""

    #: whether the evaluation latents take finitely many values (quantized) — decides how they are evaluated.
    discrete: bool = False

    def encoder_features(self, n_z: int) -> int:
        """Number of encoder outputs this bottleneck needs for ``n_z`` latents."""
        return n_z

    def forward(self, h: Tensor) -> Latents:  # pragma: no cover - abstract
        raise NotImplementedError


class Regularizer(Leg):
    """A leg adding loss terms computed from a :class:`StepContext`."""

    #: under mixed precision the model calls the leg with autocast off, so its statistics of the (float32)
    #: latents stay in float32; legs that run networks at the training precision (the Hessian penalties'
    #: decoder passes) set this to ``False``
    full_precision: ClassVar[bool] = True

    def forward(self, ctx: StepContext) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
