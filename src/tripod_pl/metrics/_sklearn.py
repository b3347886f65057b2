"""The scikit-learn reference backend of `infomec` and `dci` (`backend="sklearn"`), on the host.

It computes the quantities of docs/evaluation.md with sklearn's own estimators, as the Tripod paper's code does
(where that code differs, see docs/reference.md): `mutual_info_score` (plug-in MI, discrete latents),
`mutual_info_classif(n_neighbors=10)` (Ross 2014 kNN MI, continuous latents; `random_state=seed` fixes its
tie-breaking noise), `LogisticRegression` (lbfgs, unpenalized, balanced class weights) for InfoE -- with
`infoe_protocol="paper"` exactly as the paper's code (sklearn's default `max_iter=100, tol=1e-4`, scored by
the unweighted `log_loss`, the null model fitted on all-zero features), with `"converged"` fitted to
convergence (`max_iter=1000, tol=1e-6`) and scored with the balanced sample weights -- and
`RandomForestClassifier(100, criterion="entropy", max_depth=10, random_state=seed, n_jobs=-1)` (trees on
threads, as in the paper's code; the kNN MI runs sequentially as there, not in joblib processes). The
aggregation into scores is shared with the torch backend (`_common.py`).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, mutual_info_score
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from tripod_pl.metrics import _common as common

LOGISTIC_MAX_ITER = 1000
LOGISTIC_TOL = 1e-6


def _label_codes(x: np.ndarray) -> np.ndarray:
    return np.stack([LabelEncoder().fit_transform(col) for col in x.T], axis=1)


#: sklearn's defaults, which the paper's code keeps (`LogisticRegression(max_iter=100, tol=1e-4)`)
PAPER_MAX_ITER = 100
PAPER_TOL = 1e-4


def _log_loss(features, y: np.ndarray, protocol: str) -> float:
    paper = protocol == "paper"
    model = LogisticRegression(
        C=np.inf,
        class_weight="balanced",
        solver="lbfgs",
        max_iter=PAPER_MAX_ITER if paper else LOGISTIC_MAX_ITER,
        tol=PAPER_TOL if paper else LOGISTIC_TOL,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # separable sources never converge
        model.fit(features, y)
    weights = None if paper else compute_sample_weight("balanced", y)
    return float(log_loss(y, model.predict_proba(features), sample_weight=weights))


def infomec(
    sources, latents, discrete: bool, n_neighbors: int = 10, seed: int = 0, infoe_protocol: str = "paper"
) -> dict:
    s = _label_codes(common.as_numpy(sources))
    z = common.as_numpy(latents).astype(np.float64)
    common.check_shapes(s, z)
    n_values = s.max(0) + 1
    valid = common.valid_sources(n_values)
    k, n_z = s.shape[1], z.shape[1]

    nmi = np.zeros((k, n_z))
    z_std = StandardScaler().fit_transform(z)
    z_codes = _label_codes(z) if discrete else None
    for i in np.flatnonzero(valid):
        entropy = mutual_info_score(s[:, i], s[:, i])
        if discrete:
            mi = np.array([mutual_info_score(s[:, i], z_codes[:, j]) for j in range(n_z)])
        else:
            mi = mutual_info_classif(
                z_std, s[:, i], discrete_features=False, n_neighbors=n_neighbors, random_state=seed
            )
        nmi[i] = mi / entropy

    q25, q75 = np.quantile(z, [0.25, 0.75], axis=0)
    active = common.active_latents(q75 - q25, discrete)
    infom, infoc = common.infom_infoc(nmi, active, valid)
    infoe = 0.0
    if active.any() and valid.any():
        features = OneHotEncoder().fit_transform(z) if discrete else z_std
        ratios = []
        for i in np.flatnonzero(valid):
            h_pred = _log_loss(features, s[:, i], infoe_protocol)
            h_null = _log_loss(np.zeros_like(z), s[:, i], infoe_protocol)
            ratios.append((h_null - h_pred) / h_null)
        infoe = float(np.mean(ratios))
    return {"infom": infom, "infoc": infoc, "infoe": infoe, "nmi": nmi, "active": active}


def dci(sources, latents, n_estimators: int = 100, max_depth: int = 10, test_size: float = 0.1, seed: int = 0):
    s = _label_codes(common.as_numpy(sources))
    z = common.as_numpy(latents).astype(np.float64)
    common.check_shapes(s, z)
    valid = common.valid_sources(s.max(0) + 1)
    z = StandardScaler().fit_transform(z)
    train, test = common.train_test_indices(len(z), test_size, seed)
    importance = np.zeros((z.shape[1], s.shape[1]))
    accuracy = np.ones(s.shape[1])
    for i in np.flatnonzero(valid):
        model = RandomForestClassifier(
            n_estimators=n_estimators, criterion="entropy", max_depth=max_depth, n_jobs=-1, random_state=seed
        )
        model.fit(z[train], s[train, i])
        importance[:, i] = model.feature_importances_
        accuracy[i] = np.mean(model.predict(z[test]) == s[test, i])
    chance = common.majority_accuracy(s[train], s[test])
    scores = common.dci_scores(importance, accuracy, valid)
    return {**scores, "importance": importance, "accuracy": accuracy, "chance": chance}
