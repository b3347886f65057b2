"""tripod_pl: PyTorch Lightning framework for disentangled representation learning built around Tripod.

The model is plain PyTorch (:class:`tripod_pl.model.TripodAutoencoder`, usable without Lightning);
:class:`TripodModule` trains it with Lightning. Importing this package imports Lightning only when one of its
Lightning names is first used.

Example:
    >>> from tripod_pl import TripodAutoencoder, TripodModule
    >>> from tripod_pl.legs import FSQ, KLM, NHP
    >>> model = TripodAutoencoder(FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2)], n_z=12)
    >>> module = TripodModule(FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2)], n_z=12)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tripod_pl.model import TripodAutoencoder
    from tripod_pl.module import TripodModule, load_model

__all__ = ["TripodAutoencoder", "TripodModule", "load_model"]
__version__ = "0.1.0"

_LAZY = {"TripodAutoencoder": "tripod_pl.model", "TripodModule": "tripod_pl.module", "load_model": "tripod_pl.module"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tripod_pl' has no attribute {name!r}")
