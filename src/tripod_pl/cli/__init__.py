"""``tripod-train``: LightningCLI's ``fit``, ``validate``, ``test`` and ``predict``, plus ``evaluate``.

:class:`TripodCLI` (:mod:`tripod_pl.cli.lightning_cli`) configures everything through typed ``__init__``
signatures; ``evaluate`` (:mod:`tripod_pl.cli.evaluate`) computes the paper's metrics of a checkpoint and writes
the report (:mod:`tripod_pl.cli.report`).
"""

from tripod_pl.cli.lightning_cli import TripodCLI, main, run

__all__ = ["TripodCLI", "main", "run"]
