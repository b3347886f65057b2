"""The batched multinomial logistic regression behind InfoE."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.class_weight import compute_sample_weight

from tripod_pl.metrics._common import label_codes
from tripod_pl.metrics.logistic import balanced_log_loss, dense_features, one_hot_features, paper_log_loss


def _sklearn_loss(x, y) -> float:
    model = LogisticRegression(C=np.inf, class_weight="balanced", max_iter=5000, tol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y)
    return log_loss(y, model.predict_proba(x), sample_weight=compute_sample_weight("balanced", y))


@pytest.fixture
def problem():
    """Two targets with different class counts and unbalanced classes, three informative features."""
    rng = np.random.default_rng(0)
    n = 600
    y = np.stack([rng.choice(3, n, p=[0.6, 0.3, 0.1]), rng.integers(0, 5, n)], 1)
    x = np.stack([y[:, 0] + rng.standard_normal(n), y[:, 1] + 2 * rng.standard_normal(n), rng.standard_normal(n)], 1)
    return x, y


def test_dense_fit_matches_sklearn(problem):
    x, y = problem
    codes, n_classes = label_codes(torch.as_tensor(y))
    ours = balanced_log_loss(dense_features(torch.as_tensor(x)), codes, n_classes, tol=1e-7).numpy()
    np.testing.assert_allclose(ours, [_sklearn_loss(x, col) for col in y.T], atol=1e-4)


def test_one_hot_fit_matches_sklearn_and_both_layouts_agree(problem):
    x, y = problem
    z = np.round(x)  # few values per latent
    codes, n_classes = label_codes(torch.as_tensor(y))
    z_codes, z_n = label_codes(torch.as_tensor(z))
    dense = balanced_log_loss(one_hot_features(z_codes, z_n), codes, n_classes, tol=1e-7).numpy()
    indexed = balanced_log_loss(one_hot_features(z_codes, z_n, dense_limit=0), codes, n_classes, tol=1e-7).numpy()
    ref = [_sklearn_loss(OneHotEncoder().fit_transform(z), col) for col in y.T]
    np.testing.assert_allclose(dense, ref, atol=2e-3)
    np.testing.assert_allclose(indexed, dense, atol=1e-4)


def test_fitting_targets_together_equals_fitting_them_apart(problem):
    x, y = problem
    codes, n_classes = label_codes(torch.as_tensor(y))
    feats = dense_features(torch.as_tensor(x))
    together = balanced_log_loss(feats, codes, n_classes, tol=1e-7).numpy()
    apart = [balanced_log_loss(feats, codes[:, i : i + 1], n_classes[i : i + 1], tol=1e-7).item() for i in range(2)]
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_without_information_the_loss_is_log_of_the_class_count(problem):
    """The balanced null model is uniform, whatever the class frequencies: H_null = log C."""
    _, y = problem
    codes, n_classes = label_codes(torch.as_tensor(y))
    loss = balanced_log_loss(dense_features(torch.zeros(len(y), 1, dtype=torch.float64)), codes, n_classes)
    np.testing.assert_allclose(loss.numpy(), np.log([3, 5]), atol=1e-6)


def test_separable_target_reaches_near_zero_loss():
    y = np.repeat(np.arange(4), 50)[:, None]
    x = y + 0.1 * np.random.default_rng(0).standard_normal(y.shape)
    codes, n_classes = label_codes(torch.as_tensor(y))
    assert balanced_log_loss(dense_features(torch.as_tensor(x)), codes, n_classes).item() < 0.01


# ---- the paper protocol --------------------------------------------------------------------------------------


def _paper_loss(x, y) -> float:
    """Transcription of the Tripod authors' `logistic_regression` (disentangle/metrics/infomec.py): sklearn's
    default iteration limit and tolerance, balanced class weights in the fit, unweighted log-loss."""
    model = LogisticRegression(C=np.inf, class_weight="balanced", solver="lbfgs", max_iter=100, tol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y)
    return log_loss(y, model.predict_proba(x))


def test_paper_protocol_matches_sklearn_and_scores_unweighted(problem):
    x, y = problem
    codes, n_classes = label_codes(torch.as_tensor(y))
    paper = paper_log_loss(dense_features(torch.as_tensor(x)), codes, n_classes).numpy()
    np.testing.assert_allclose(paper, [_paper_loss(x, col) for col in y.T], atol=2e-4)
    # the skewed first target (60/30/10 %): the unweighted loss of the balanced fit is not its balanced loss
    balanced = balanced_log_loss(dense_features(torch.as_tensor(x)), codes, n_classes, tol=1e-7).numpy()
    assert abs(paper[0] - balanced[0]) > 0.005  # 0.0126 nats here


def test_paper_protocol_follows_sklearn_on_raw_one_hot_features():
    """One-hot codes of noisy copies of skewed targets plus uninformative latents, as the authors' code sees
    discrete latents (sklearn's 0/1 OneHotEncoder columns)."""
    rng = np.random.default_rng(0)
    n = 1000
    y = np.stack([rng.integers(0, 10, n), rng.choice(4, n, p=[0.55, 0.25, 0.15, 0.05])], 1)
    z = np.concatenate([y + (rng.random(y.shape) < 0.1) * rng.integers(-2, 3, y.shape), rng.integers(0, 12, (n, 2))], 1)
    codes, n_classes = label_codes(torch.as_tensor(y))
    z_codes, z_n = label_codes(torch.as_tensor(z))
    ours = paper_log_loss(one_hot_features(z_codes, z_n, scaled=False), codes, n_classes).numpy()
    ref = np.array([_paper_loss(OneHotEncoder().fit_transform(z), col) for col in y.T])
    np.testing.assert_allclose(ours, ref, atol=1e-3)
