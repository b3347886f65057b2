"""Properties of `infomec` (docs/evaluation.md) that hold whatever the estimator noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripod_pl.metrics import infomec
from tripod_pl.metrics._common import active_latents, infom_infoc

from ._data import make_latents, make_sources

N = 1500


@pytest.fixture(scope="module")
def sources():
    return make_sources(N)


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_disentangled_latents_score_near_one(sources, discrete):
    out = infomec(sources, make_latents("disentangled", sources, discrete), discrete)
    assert out["infom"] > 0.95 and out["infoc"] > 0.95 and out["infoe"] > 0.95
    np.testing.assert_array_equal(out["active"], [True] * 3 + [False] * 3)  # collapsed latents are inactive


def test_random_latents_explain_nothing(sources):
    out = infomec(sources, make_latents("random", sources, False), False)
    assert out["infoe"] < 0.03 and out["nmi"].max() < 0.03


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_permuting_latents_permutes_nmi_columns_and_keeps_the_scores(sources, discrete):
    latents = make_latents("rotated", sources, discrete)
    perm = np.array([4, 2, 0, 5, 1, 3])
    a = infomec(sources, latents, discrete)
    b = infomec(sources, latents[:, perm], discrete)
    np.testing.assert_allclose(b["nmi"], a["nmi"][:, perm], atol=1e-3)
    np.testing.assert_array_equal(b["active"], a["active"][perm])
    for key in ("infom", "infoc", "infoe"):
        assert b[key] == pytest.approx(a[key], abs=2e-3)


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_collapsed_model_scores_zero_and_never_nan(sources, discrete):
    latents = np.full((N, 6), 0.25)
    out = infomec(sources, latents, discrete)
    assert (out["infom"], out["infoc"], out["infoe"]) == (0.0, 0.0, 0.0)
    assert not out["active"].any() and np.isfinite(out["nmi"]).all()


def test_a_constant_source_is_left_out_of_the_scores(sources):
    latents = make_latents("noisy", sources, True)
    with_constant = np.concatenate([sources, np.full((N, 1), 7)], 1)
    a, b = infomec(sources, latents, True), infomec(with_constant, latents, True)
    assert (b["infom"], b["infoc"], b["infoe"]) == pytest.approx((a["infom"], a["infoc"], a["infoe"]), abs=1e-9)
    assert b["nmi"].shape == (4, 6) and (b["nmi"][3] == 0).all()


def test_numpy_and_torch_inputs_give_the_same_result(sources):
    latents = make_latents("noisy", sources, False)
    a = infomec(sources, latents, False)
    b = infomec(torch.as_tensor(sources, dtype=torch.int32), torch.as_tensor(latents, dtype=torch.float64), False)
    assert (a["infom"], a["infoc"], a["infoe"]) == (b["infom"], b["infoc"], b["infoe"])
    np.testing.assert_array_equal(a["nmi"], b["nmi"])


def test_result_types_follow_the_contract(sources):
    out = infomec(torch.as_tensor(sources), torch.as_tensor(make_latents("rotated", sources, True)), True)
    assert set(out) == {"infom", "infoc", "infoe", "nmi", "active"}
    assert all(type(out[k]) is float for k in ("infom", "infoc", "infoe"))
    assert out["nmi"].dtype == np.float64 and out["nmi"].shape == (3, 6)
    assert out["active"].dtype == np.bool_ and out["active"].shape == (6,)
    ref = infomec(sources, make_latents("rotated", sources, True), True, backend="sklearn")
    assert set(ref) == set(out) and all(type(ref[k]) is float for k in ("infom", "infoc", "infoe"))


def test_bad_inputs_are_refused(sources):
    with pytest.raises(ValueError, match="backend"):
        infomec(sources, sources.astype(float), True, backend="jax")
    with pytest.raises(ValueError, match="samples"):
        infomec(sources[:10], np.zeros((11, 2)), True)


def test_infom_infoc_formula_on_a_hand_made_nmi_matrix():
    nmi = np.array([[0.8, 0.2, 0.0, 0.5], [0.0, 0.6, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    active = np.array([True, True, True, False])
    valid = np.array([True, True, True])
    infom, infoc = infom_infoc(nmi, active, valid)
    # latents: 0.8/0.8 = 1, 0.6/0.8 = 0.75, 0/0 -> chance 1/3; mean 0.69444; (x - 1/3) / (2/3)
    assert infom == pytest.approx(((1 + 0.75 + 1 / 3) / 3 - 1 / 3) / (2 / 3))
    # sources: 0.8/1.0, 0.6/0.6, 0/0 -> chance 1/3; L = 3
    assert infoc == pytest.approx(((0.8 + 1 + 1 / 3) / 3 - 1 / 3) / (2 / 3))
    assert infom_infoc(nmi, np.zeros(4, bool), valid) == (0.0, 0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_cuda_tensors_compute_on_the_gpu_and_agree_with_cpu(sources, discrete):
    latents = make_latents("noisy", sources, discrete)
    gpu = infomec(torch.as_tensor(sources).cuda(), torch.as_tensor(latents).cuda(), discrete)
    cpu = infomec(sources, latents, discrete)
    for key in ("infom", "infoc", "infoe"):
        assert gpu[key] == pytest.approx(cpu[key], abs=2e-3)


def test_active_latent_rule_is_shared_by_both_backends():
    iqr = np.array([0.05, 0.1, 0.11, 2.0])
    assert active_latents(iqr, discrete=True).tolist() == [False, False, True, True]
    assert active_latents(iqr, discrete=False).tolist() == [False, False, False, True]  # > max / 10 = 0.2
    assert active_latents(np.zeros(3), discrete=False).tolist() == [False] * 3  # collapsed: none active
    z = np.random.default_rng(0).normal(size=(400, 3)) * np.array([1.0, 0.05, 0.2])
    s = np.random.default_rng(1).integers(0, 3, size=(400, 2))
    for backend in ("torch", "sklearn"):
        assert infomec(s, z, discrete=False, backend=backend)["active"].tolist() == [True, False, True], backend
