"""tripod_pl: PyTorch Lightning framework for disentangled representation learning built around Tripod.

Example:
    >>> from tripod_pl import TripodModule
    >>> from tripod_pl.legs import FSQ, KLM, NHP
    >>> model = TripodModule(FSQ(n_q=12), [KLM(weight=1e-4), NHP(weight=1e-2)], n_z=12)
"""

from tripod_pl.module import TripodModule, load_model

__all__ = ["TripodModule", "load_model"]
__version__ = "0.1.0"
