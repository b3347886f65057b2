"""Legs: the bottleneck and the regularizers that shape the latent space (docs/legs.md).

Every leg is a thin ``torch.nn.Module`` over a function of :mod:`tripod_pl.legs.functional` (or of its own module: the
VAE baselines' ``betavae``, ``dipvae``, ``infovae``, ``factorvae``), registered by a
short name; third-party packages add legs through the ``tripod_pl.legs`` entry-point group.
"""

from tripod_pl.legs import functional
from tripod_pl.legs.base import Bottleneck, Latents, Leg, Regularizer, StepContext
from tripod_pl.legs.betavae import KL
from tripod_pl.legs.bottlenecks import FSQ, GaussianBottleneck, IdentityBottleneck, ScalarCodebook
from tripod_pl.legs.dipvae import DIPVAE
from tripod_pl.legs.factorvae import FactorTC
from tripod_pl.legs.infovae import MMD
from tripod_pl.legs.registry import build_leg, get_leg, list_legs, load_plugins, register_leg
from tripod_pl.legs.regularizers import KLM, NHP, BetaTC, HessianPenalty
from tripod_pl.legs.schedules import Constant, CosineAnnealing, Cyclic, LinearWarmup, Schedule, build_schedule

__all__ = [
    "DIPVAE",
    "KL",
    "KLM",
    "MMD",
    "NHP",
    "FSQ",
    "BetaTC",
    "Bottleneck",
    "Constant",
    "CosineAnnealing",
    "Cyclic",
    "FactorTC",
    "GaussianBottleneck",
    "HessianPenalty",
    "IdentityBottleneck",
    "Latents",
    "LinearWarmup",
    "Leg",
    "Regularizer",
    "ScalarCodebook",
    "Schedule",
    "StepContext",
    "build_leg",
    "build_schedule",
    "functional",
    "get_leg",
    "list_legs",
    "load_plugins",
    "register_leg",
]
