"""Evaluation metrics: InfoMEC and DCI (docs/evaluation.md), with a torch backend that runs on the inputs' device
and a scikit-learn reference backend (`backend="sklearn"`)."""

from tripod_pl.metrics.dci import dci
from tripod_pl.metrics.infomec import infomec

__all__ = ["dci", "infomec"]
