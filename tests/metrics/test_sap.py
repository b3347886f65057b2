"""`sap` and `SAP` (Kumar et al. 2018, disentanglement_lib's definition; docs/evaluation.md, "SAP") against a
slow scikit-learn transcription (LinearSVC per latent and source; the R^2 of np.cov)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC

from tripod_pl.metrics import SAP, sap

from ._data import KINDS, make_latents, make_sources

N = 1500


def sap_reference(sources: np.ndarray, latents: np.ndarray, continuous: bool = False) -> float:
    """disentanglement_lib's `compute_score_matrix` and `compute_avg_diff_top_two`, transcribed (the split is
    sklearn's train_test_split with a third held out)."""
    z = latents.astype(np.float64)
    n_z, k = z.shape[1], sources.shape[1]
    score = np.zeros((n_z, k))
    z_tr, z_te, s_tr, s_te = train_test_split(z, sources, test_size=1 / 3, random_state=0)
    for j in range(n_z):
        for i in range(k):
            if continuous:
                cov = np.cov(z[:, j], sources[:, i], ddof=1)
                score[j, i] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]) if cov[0, 0] > 1e-12 else 0.0
            else:
                svc = LinearSVC(C=0.01, class_weight="balanced", tol=1e-8, max_iter=100_000)
                svc.fit(z_tr[:, j : j + 1], s_tr[:, i])
                score[j, i] = np.mean(svc.predict(z_te[:, j : j + 1]) == s_te[:, i])
    top = np.sort(score, axis=0)
    return float(np.mean(top[-1] - top[-2]))


@pytest.fixture(scope="module")
def sources():
    s = make_sources(N)
    return np.concatenate([s, s[:, :1] % 2], 1)  # a binary source: LinearSVC's single-problem case


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_classification_equals_the_transcription(sources, kind, discrete):
    latents = make_latents(kind, sources, discrete)
    # liblinear stops at a tolerance: a test sample on a decision boundary may flip (1 of 500 = 0.0005 per cell)
    assert sap(sources, latents)["sap"] == pytest.approx(sap_reference(sources, latents), abs=2e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_r2_equals_the_transcription(sources, kind):
    latents = make_latents(kind, sources, False)
    out = sap(sources, latents, continuous_sources=True)["sap"]
    assert out == pytest.approx(sap_reference(sources, latents, continuous=True), abs=1e-9)


def test_disentangled_scores_high_and_random_low(sources):
    disentangled = make_latents("disentangled", sources[:, :3], False)
    random = make_latents("random", sources[:, :3], False)
    assert sap(sources[:, :3], disentangled, continuous_sources=True)["sap"] > 0.85
    assert sap(sources[:, :3], random, continuous_sources=True)["sap"] < 0.02
    # one-vs-rest linear classifiers on one latent find the extreme values only: high is ~0.4 here
    assert sap(sources[:, :3], disentangled)["sap"] > 0.3
    assert sap(sources[:, :3], random)["sap"] < 0.03


def test_a_constant_source_is_left_out_and_one_latent_is_an_error(sources):
    latents = make_latents("noisy", sources, True)
    with_constant = np.concatenate([sources, np.full((N, 1), 3)], 1)
    assert sap(with_constant, latents)["sap"] == pytest.approx(sap(sources, latents)["sap"])
    with pytest.raises(ValueError, match="at least two latents"):
        sap(sources, latents[:, :1])


def test_metric_class_equals_the_function(sources):
    latents = make_latents("rotated", sources, False)
    metric = SAP()
    for part in np.array_split(np.arange(N), 4):
        metric.update(torch.as_tensor(latents[part]), torch.as_tensor(sources[part]))
    assert metric.compute()["sap"] == pytest.approx(sap(sources, latents)["sap"], abs=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_equals_cpu(sources):
    latents = make_latents("noisy", sources, False)
    for continuous in (False, True):
        cuda = sap(torch.as_tensor(sources).cuda(), torch.as_tensor(latents).cuda(), continuous)["sap"]
        assert cuda == pytest.approx(sap(sources, latents, continuous)["sap"], abs=1e-9)
