"""``tripod-train``: LightningCLI's ``fit``, ``validate``, ``test`` and ``predict``, plus ``evaluate``.

:class:`TripodCLI` (:mod:`tripod_pl.cli.lightning_cli`) configures everything through typed ``__init__``
signatures; ``evaluate`` (:mod:`tripod_pl.cli.evaluate`) computes the paper's metrics of a checkpoint and writes
the report (:mod:`tripod_pl.cli.report`). :func:`main` (:mod:`tripod_pl.cli.entry`) answers the top-level help
without importing Lightning; the other names are imported when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tripod_pl.cli.entry import main

if TYPE_CHECKING:
    from tripod_pl.cli.lightning_cli import TripodCLI, run

__all__ = ["TripodCLI", "main", "run"]


def __getattr__(name: str) -> Any:
    if name in ("TripodCLI", "run"):
        return getattr(importlib.import_module("tripod_pl.cli.lightning_cli"), name)
    raise AttributeError(f"module 'tripod_pl.cli' has no attribute {name!r}")
