"""`modularity` and `Modularity` (Ridgeway & Mozer 2018, disentanglement_lib's definition; docs/evaluation.md,
"Modularity and explicitness") against a slow scikit-learn transcription."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MultiLabelBinarizer

from tripod_pl.metrics import Modularity, modularity

from ._data import KINDS, make_latents, make_sources

N = 1000


def modularity_reference(sources: np.ndarray, latents: np.ndarray, num_bins: int = 20) -> tuple[float, float]:
    """disentanglement_lib's `modularity` and `explicitness_per_factor`, transcribed (MI on all samples; the
    classifiers on sklearn's train_test_split with a third held out, fitted to convergence)."""
    z = latents.astype(np.float64)
    binned = np.stack([np.digitize(col, np.histogram(col, num_bins)[1][:-1]) for col in z.T], axis=1)
    mi = np.array([[mutual_info_score(s, b) for s in sources.T] for b in binned.T])  # n_z x K
    sq = mi**2
    top = sq.max(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_latent = 1 - (sq.sum(1) - top) / (top * (sq.shape[1] - 1))
    per_latent[top == 0] = 0
    z_tr, z_te, s_tr, s_te = train_test_split(z, sources, test_size=1 / 3, random_state=0)
    mean, std = z_tr.mean(0), z_tr.std(0)
    z_tr, z_te = (z_tr - mean) / std, (z_te - mean) / std
    aucs = []
    for i in range(sources.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = LogisticRegression(max_iter=10_000, tol=1e-10).fit(z_tr, s_tr[:, i])
        labels = MultiLabelBinarizer().fit_transform(s_te[:, i : i + 1])
        aucs.append(roc_auc_score(labels, clf.predict_proba(z_te)))
    return float(per_latent.mean()), float(np.mean(aucs))


@pytest.fixture(scope="module")
def sources():
    s = make_sources(N)
    return np.concatenate([s, s[:, :1] % 2], 1)  # a binary source: sklearn's sigmoid model


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_equals_the_transcription(sources, kind, discrete):
    latents = make_latents(kind, sources, discrete)
    out = modularity(sources, latents)
    ref_modularity, ref_explicitness = modularity_reference(sources, latents)
    assert out["modularity"] == pytest.approx(ref_modularity, abs=1e-9)
    assert out["explicitness"] == pytest.approx(ref_explicitness, abs=1e-4)  # both fits stop near the optimum


def test_disentangled_scores_high_and_random_low(sources):
    s = sources[:, :3]
    informative = make_latents("disentangled", s, False)[:, :3]  # the collapsed latents would score 0
    out = modularity(s, informative)
    assert out["modularity"] > 0.95 and out["explicitness"] > 0.99
    out = modularity(s, make_latents("random", s, False))
    assert out["modularity"] < 0.7 and abs(out["explicitness"] - 0.5) < 0.03


def test_collapsed_latents_score_zero_and_chance(sources):
    out = modularity(sources, np.zeros((N, 4)))
    assert out == {"modularity": 0.0, "explicitness": 0.5}


def test_metric_class_equals_the_function(sources):
    latents = make_latents("noisy", sources, True)
    metric = Modularity()
    for part in np.array_split(np.arange(N), 3):
        metric.update(torch.as_tensor(latents[part]), torch.as_tensor(sources[part]))
    out, expected = metric.compute(), modularity(sources, latents)
    assert out == pytest.approx(expected, abs=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_equals_cpu(sources):
    latents = make_latents("noisy", sources, False)
    metric = Modularity().cuda()
    metric.update(torch.as_tensor(latents).cuda(), torch.as_tensor(sources).cuda())
    assert metric.compute() == pytest.approx(modularity(sources, latents), abs=1e-6)
