"""Properties of `dci` (Eastwood & Williams 2018; docs/evaluation.md, "DCI")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from tripod_pl.metrics import dci
from tripod_pl.metrics._common import dci_scores, majority_accuracy, train_test_indices

from ._data import make_latents, make_sources

N = 1500


@pytest.fixture(scope="module")
def sources():
    return make_sources(N)


@pytest.fixture(scope="module")
def disentangled(sources):
    return dci(sources, make_latents("disentangled", sources, True))


def test_disentangled_latents_score_near_one(disentangled):
    assert disentangled["d"] > 0.85 and disentangled["c"] > 0.85 and disentangled["i"] > 0.99
    # each source's importance sits on its own latent; the collapsed latents get none
    np.testing.assert_array_equal(disentangled["importance"].argmax(0), [0, 1, 2])
    assert (disentangled["importance"][3:] == 0).all()


def test_random_latents_score_near_zero(sources):
    out = dci(sources, make_latents("random", sources, False))
    assert out["d"] < 0.1 and out["c"] < 0.1 and out["i"] < 0.35


def test_permuting_latents_permutes_importance_rows_and_keeps_the_scores(sources):
    latents = make_latents("rotated", sources, True)
    perm = np.array([4, 2, 0, 5, 1, 3])
    a, b = dci(sources, latents), dci(sources, latents[:, perm])
    np.testing.assert_allclose(b["importance"], a["importance"][perm], atol=0.03)  # forests draw anew
    for key in ("d", "c", "i"):
        assert b[key] == pytest.approx(a[key], abs=0.03)


def test_collapsed_model_scores_zero_and_never_nan(sources):
    out = dci(sources, np.zeros((N, 6)))
    assert (out["d"], out["c"]) == (0.0, 0.0) and np.isfinite(out["i"])
    assert (out["importance"] == 0).all()


def test_a_constant_source_gets_a_zero_column_and_is_left_out(sources):
    latents = make_latents("disentangled", sources, True)
    out = dci(np.concatenate([sources, np.zeros((N, 1), int)], 1), latents)
    assert out["importance"].shape == (6, 4) and (out["importance"][:, 3] == 0).all()
    assert out["d"] > 0.85 and out["i"] > 0.99


def test_numpy_and_torch_inputs_give_the_same_result(sources):
    latents = make_latents("noisy", sources, True)
    a = dci(sources, latents)
    b = dci(torch.as_tensor(sources), torch.as_tensor(latents, dtype=torch.float32))
    assert (a["d"], a["c"], a["i"]) == (b["d"], b["c"], b["i"])
    assert isinstance(b["d"], float) and b["importance"].dtype == np.float64 and b["importance"].shape == (6, 3)


def test_split_is_sklearns_train_test_split():
    train, test = train_test_indices(101, 0.1, seed=7)
    ref_train, ref_test = train_test_split(np.arange(101), test_size=0.1, random_state=7)
    np.testing.assert_array_equal(train, ref_train)
    np.testing.assert_array_equal(test, ref_test)


def test_dci_formula_on_hand_made_importances():
    valid = np.ones(3, bool)
    acc = np.array([1.0, 0.5, 0.0])
    assert dci_scores(np.eye(3), acc, valid) == {"d": 1.0, "c": 1.0, "i": 0.5}
    uniform = dci_scores(np.ones((3, 3)), acc, valid)
    assert uniform["d"] == pytest.approx(0.0) and uniform["c"] == pytest.approx(0.0)
    # one latent carries two sources equally (entropy log 2 in base 3), the other one source
    r = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = dci_scores(r, acc, valid)
    assert out["d"] == pytest.approx(2 / 3 * (1 - np.log(2) / np.log(3)) + 1 / 3 * 1)
    # each source sits on one latent of two: C = 1
    assert out["c"] == pytest.approx(1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_tensors_compute_on_the_gpu_and_agree_with_cpu(sources):
    latents = make_latents("noisy", sources, True)
    gpu = dci(torch.as_tensor(sources).cuda(), torch.as_tensor(latents).cuda())
    cpu = dci(sources, latents)
    for key in ("d", "c", "i"):
        assert gpu[key] == pytest.approx(cpu[key], abs=0.03)


def _guessing_accuracy(sources: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per source, the test accuracy of always naming its most frequent training value (Python counting)."""
    train, test = train_test_split(np.arange(len(sources)), test_size=0.1, random_state=seed)
    out = []
    for column in np.asarray(sources).T:
        counts: dict[int, int] = {}
        for value in column[train]:
            counts[int(value)] = counts.get(int(value), 0) + 1
        guess = max(sorted(counts), key=lambda v: counts[v])
        out.append(sum(int(v) == guess for v in column[test]) / len(test))
    return np.array(out)


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_per_source_accuracy_is_what_i_averages_and_chance_is_guessing_the_most_frequent_value(sources, backend):
    # sources 0, 1 live in latents 0, 1; source 2 is in no latent: its accuracy falls to guessing
    latents = make_latents("disentangled", sources, True)[:, :2]
    out = dci(sources, latents, backend)
    assert out["accuracy"].shape == out["chance"].shape == (3,)
    assert out["accuracy"].mean() == pytest.approx(out["i"])
    np.testing.assert_allclose(out["chance"], _guessing_accuracy(sources))
    assert (out["accuracy"][:2] > 0.99).all() and (out["chance"][:2] < 0.6).all()
    assert abs(out["accuracy"][2] - out["chance"][2]) < 0.12


def test_majority_accuracy_on_a_hand_made_split():
    train = np.array([[0, 2], [1, 2], [1, 0]])
    test = np.array([[1, 2], [0, 2], [1, 1], [1, 0]])
    np.testing.assert_allclose(majority_accuracy(train, test), [0.75, 0.5])
