"""Evaluation metrics: InfoMEC and DCI (docs/evaluation.md), with a torch backend that runs on the inputs' device
and a scikit-learn reference backend (`backend="sklearn"`); MIG, SAP, modularity / explicitness (functions and
`torchmetrics.Metric` classes) and the FactorVAE and BetaVAE intervention scores, on the device, with
disentanglement_lib's definitions. InfoMEC and DCI are `torchmetrics.Metric` classes too (`metrics.classes`); every
class is known by a short name to `metrics.registry`, which plugins extend (entry-point group `tripod_pl.metrics`)."""

from tripod_pl.metrics.classes import DCI, InfoMEC
from tripod_pl.metrics.dci import dci
from tripod_pl.metrics.infomec import infomec
from tripod_pl.metrics.intervention import betavae_score, factorvae_score
from tripod_pl.metrics.mig import MIG, mig
from tripod_pl.metrics.modularity import Modularity, modularity
from tripod_pl.metrics.sap import SAP, sap

__all__ = [
    "DCI",
    "MIG",
    "InfoMEC",
    "SAP",
    "Modularity",
    "betavae_score",
    "dci",
    "factorvae_score",
    "infomec",
    "mig",
    "modularity",
    "sap",
]
