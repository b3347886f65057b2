"""Mutual information and entropy estimators against obviously-correct NumPy formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_classif

from tripod_pl.metrics._common import label_codes, standardize
from tripod_pl.metrics.mutual_info import _count_within, histogram_mi, knn_mi, plugin_entropy


def _np_entropy(x: np.ndarray) -> float:
    p = np.unique(x, return_counts=True)[1] / len(x)
    return float(-(p * np.log(p)).sum())


def _np_mi(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) = sum p(a,b) log p(a,b) / (p(a) p(b)) from the joint histogram."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1)
    p = joint / len(a)
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (pa @ pb)[nz])).sum())


def _np_ross_mi(c: np.ndarray, d: np.ndarray, k: int) -> float:
    """Ross (2014) by brute force: all pairwise distances, no tie-breaking noise needed (no ties)."""
    n = len(c)
    dist = np.abs(c[:, None] - c[None, :])
    counts = np.array([np.sum(d == d[i]) for i in range(n)])
    keep = counts > 1
    kk = np.minimum(k, counts - 1)
    radius = np.empty(n)
    for i in np.flatnonzero(keep):
        same = np.flatnonzero((d == d[i]) & (np.arange(n) != i))
        radius[i] = np.sort(dist[i, same])[kk[i] - 1]
    m = (dist[keep] < radius[keep, None]).sum(1)  # strictly closer, the point itself included
    return max(0.0, digamma(keep.sum()) + digamma(kk[keep]).mean() - digamma(counts[keep]).mean() - digamma(m).mean())


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_label_codes_are_ranks_of_unique_values(rng):
    x = rng.choice([-1.5, 0.25, 3.0, 7.0], size=(200, 3))
    x[:, 2] = 5.0  # a constant column has one code
    codes, n_codes = label_codes(torch.as_tensor(x))
    for j in range(3):
        uniq, inv = np.unique(x[:, j], return_inverse=True)
        np.testing.assert_array_equal(codes[:, j].numpy(), inv)
        assert n_codes[j] == len(uniq)


def test_plugin_entropy_matches_numpy(rng):
    s = np.stack([rng.integers(0, 5, 300), rng.choice(3, 300, p=[0.7, 0.2, 0.1]), np.zeros(300, int)], 1)
    codes, n = label_codes(torch.as_tensor(s))
    ours = plugin_entropy(codes, n).numpy()
    np.testing.assert_allclose(ours, [_np_entropy(col) for col in s.T], atol=1e-12)
    assert ours[2] == 0.0


def test_histogram_mi_matches_numpy_formula(rng):
    s = np.stack([rng.integers(0, 4, 500), rng.integers(0, 3, 500)], 1)
    z = np.stack([s[:, 0] // 2, rng.integers(0, 6, 500), s[:, 0] + 4 * s[:, 1], np.full(500, 0.5)], 1)
    sc, sn = label_codes(torch.as_tensor(s))
    zc, zn = label_codes(torch.as_tensor(z))
    ours = histogram_mi(sc, sn, zc, zn).numpy()
    expected = np.array([[_np_mi(si, zj) for zj in z.T] for si in s.T])
    np.testing.assert_allclose(ours, expected, atol=1e-12)
    # sanity of the cases: z_2 determines s_0, so I(s_0; z_2) = H(s_0); a constant carries nothing
    assert ours[0, 2] == pytest.approx(_np_entropy(s[:, 0]))
    assert ours[0, 3] == 0.0 and ours[1, 3] == 0.0


def test_knn_mi_matches_bruteforce_ross_estimator(rng):
    n = 400
    s = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n)], 1)
    s[0, 1] = 5  # a class with a single sample is left out
    z = np.stack([s[:, 0] + 0.7 * rng.standard_normal(n), rng.standard_normal(n)], 1)
    sc, sn = label_codes(torch.as_tensor(s))
    for k in (3, 10):
        ours = knn_mi(sc, sn, torch.as_tensor(z), n_neighbors=k, jitter=False).numpy()
        expected = np.array([[_np_ross_mi(zj, si, k) for zj in z.T] for si in s.T])
        np.testing.assert_allclose(ours, expected, atol=1e-10)
    assert ours[0, 0] > 0.3  # the cases are not all clipped to zero


def test_knn_mi_matches_sklearn_mutual_info_classif(rng):
    n = 1500
    s = np.stack([rng.integers(0, 5, n), rng.integers(0, 3, n)], 1)
    z = np.stack([s[:, 0] + rng.standard_normal(n), s[:, 1] * 0.3 + rng.standard_normal(n), rng.random(n)], 1)
    z_std = standardize(torch.as_tensor(z))
    sc, sn = label_codes(torch.as_tensor(s))
    ours = knn_mi(sc, sn, z_std, n_neighbors=10).numpy()
    ref = np.stack([mutual_info_classif(z_std.numpy(), col, n_neighbors=10, random_state=0) for col in s.T])
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_knn_mi_is_zero_for_a_constant_latent(rng):
    s = rng.integers(0, 3, (300, 1))
    z = np.ones((300, 1))
    sc, sn = label_codes(torch.as_tensor(s))
    assert knn_mi(sc, sn, standardize(torch.as_tensor(z))).item() < 0.02


def test_count_within_includes_exact_boundary_and_nothing_beyond(rng):
    x = np.sort(rng.standard_normal((2, 300)).round(3), axis=1)  # many exact ties and equal gaps
    centres = np.ascontiguousarray(x[:, rng.integers(0, 300, 100)])
    radius = np.abs(x[:, rng.integers(0, 300, 100)] - centres)  # radii that are exact distances
    ours = _count_within(*(torch.as_tensor(np.ascontiguousarray(a)) for a in (x, centres, radius))).numpy()
    expected = (np.abs(x[:, None, :] - centres[:, :, None]) <= radius[:, :, None]).sum(2)
    np.testing.assert_array_equal(ours, expected)
