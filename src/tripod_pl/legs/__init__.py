"""Legs: the bottleneck and the regularizers that shape the latent space (docs/legs.md).

Every leg is a thin ``torch.nn.Module`` over a function of :mod:`tripod_pl.legs.functional`, registered by a
short name; third-party packages add legs through the ``tripod_pl.legs`` entry-point group.
"""

from tripod_pl.legs import functional
from tripod_pl.legs.base import Bottleneck, Latents, Leg, Regularizer, StepContext
from tripod_pl.legs.bottlenecks import FSQ, GaussianBottleneck, IdentityBottleneck, ScalarCodebook
from tripod_pl.legs.registry import build_leg, get_leg, list_legs, load_plugins, register_leg
from tripod_pl.legs.regularizers import KLM, NHP, BetaTC, HessianPenalty

__all__ = [
    "KLM",
    "NHP",
    "FSQ",
    "BetaTC",
    "Bottleneck",
    "GaussianBottleneck",
    "HessianPenalty",
    "IdentityBottleneck",
    "Latents",
    "Leg",
    "Regularizer",
    "ScalarCodebook",
    "StepContext",
    "build_leg",
    "functional",
    "get_leg",
    "list_legs",
    "load_plugins",
    "register_leg",
]
