"""The FactorVAE (Kim & Mnih 2018) and BetaVAE (Higgins et al. 2017) scores and their sampler
(docs/evaluation.md, "FactorVAE and BetaVAE scores") on the tiny procedural file: a perfect encoder scores 1,
a random one near chance, and an imperfect one what a slow per-vote NumPy / scikit-learn transcription of
disentanglement_lib's protocol gives on the same draws."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from tripod_pl.data.interventions import InterventionSampler
from tripod_pl.data.layout import DatasetError, open_hdf5
from tripod_pl.data.prepare import write_dataset
from tripod_pl.metrics import betavae_score, factorvae_score

SMALL = {"batch_size": 16, "num_train": 120, "num_eval": 60}


@pytest.fixture(scope="module")
def sampler(tiny_h5):
    return InterventionSampler(tiny_h5, in_memory=True)


class LookupEncoder:
    """Recognizes each image of the grid (nearest random projection) and returns `f(its sources, its row)`."""

    def __init__(self, sampler: InterventionSampler, latents: np.ndarray) -> None:
        grid = np.stack(np.unravel_index(np.arange(len(latents)), sampler.source_sizes), axis=1)
        self.projection = torch.randn(3 * 64 * 64, 8, generator=torch.Generator().manual_seed(0))
        self.keys = sampler.images(grid).flatten(1) @ self.projection
        self.latents = torch.as_tensor(latents, dtype=torch.float64)
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.latents[torch.cdist(x.flatten(1) @ self.projection, self.keys).argmin(1)]


def grid_sources(sampler: InterventionSampler) -> np.ndarray:
    n = int(np.prod(sampler.source_sizes))
    return np.stack(np.unravel_index(np.arange(n), sampler.source_sizes), axis=1)


def noisy_latents(sampler: InterventionSampler) -> np.ndarray:
    """Sources plus a fixed noise per image, and a pure-noise latent: scores between chance and 1."""
    s = grid_sources(sampler).astype(np.float64)
    rng = np.random.default_rng(3)
    return np.concatenate([s + 0.6 * rng.standard_normal(s.shape), rng.standard_normal((len(s), 1))], 1)


def factorvae_reference(encode, sampler, batch_size, num_train, num_eval, num_var, threshold=0.05, seed=0):
    """disentanglement_lib's compute_factor_vae, one vote at a time, on the draws the implementation makes."""
    rng = np.random.default_rng(seed)
    z = encode(sampler.images(sampler.sample_sources(num_var, rng))).numpy()
    global_var = np.var(z, axis=0, ddof=1)
    active = np.sqrt(global_var) >= threshold
    k = sampler.num_sources

    def votes(n):
        fixed = rng.integers(0, k, n)
        batches = sampler.sample_sources(n * batch_size, rng).reshape(n, batch_size, k)
        counts = np.zeros((k, active.sum()), dtype=np.int64)
        for p in range(n):
            s = batches[p].copy()
            s[:, fixed[p]] = s[0, fixed[p]]
            local = np.var(encode(sampler.images(s)).numpy(), axis=0, ddof=1)
            counts[fixed[p], np.argmin(local[active] / global_var[active])] += 1
        return counts

    train = votes(num_train)
    classifier = np.argmax(train, axis=0)
    cols = np.arange(train.shape[1])
    held_out = votes(num_eval)
    return held_out[classifier, cols].sum() / held_out.sum(), train[classifier, cols].sum() / train.sum()


def betavae_reference(encode, sampler, batch_size, num_train, num_eval, seed=0):
    """disentanglement_lib's compute_beta_vae_sklearn, one point at a time, on the implementation's draws."""
    rng = np.random.default_rng(seed)
    k = sampler.num_sources

    def points(n):
        fixed = rng.integers(0, k, n)
        pairs = sampler.sample_sources(2 * n * batch_size, rng).reshape(2, n, batch_size, k)
        features = []
        for p in range(n):
            s1, s2 = pairs[0, p], pairs[1, p].copy()
            s2[:, fixed[p]] = s1[:, fixed[p]]
            z1, z2 = encode(sampler.images(s1)).numpy(), encode(sampler.images(s2)).numpy()
            features.append(np.mean(np.abs(z1 - z2), axis=0))
        return np.array(features), fixed

    x_train, y_train = points(num_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(max_iter=10_000, tol=1e-10).fit(x_train, y_train)
    x_eval, y_eval = points(num_eval)
    return model.score(x_eval, y_eval), model.score(x_train, y_train)


def test_sampler_finds_every_combination_by_row_major_arithmetic(sampler, tiny_h5):
    assert sampler.row_major
    grid = grid_sources(sampler)
    np.testing.assert_array_equal(sampler.rows(grid), np.arange(len(grid)))
    picks = grid[[5, 400, 5, 17]]
    with open_hdf5(tiny_h5) as f:  # unlocked, as every reader of the project (the sampler holds it open)
        np.testing.assert_array_equal(f["sources"][[5, 17, 400]], grid[[5, 17, 400]])  # the layout's claim
        expected = np.stack([f["images"][r] for r in (5, 400, 5, 17)])
    np.testing.assert_array_equal(sampler.uint8_images(picks), expected)
    x = sampler.images(picks)
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    with pytest.raises(ValueError, match="out of range"):
        sampler.rows(np.array([[9, 0, 0, 0, 0, 0, 0]]))


def test_sampler_reads_a_complete_grid_in_another_order_and_refuses_an_incomplete_one(sampler, tiny_h5, tmp_path):
    with open_hdf5(tiny_h5) as f:  # unlocked, as every reader of the project (the sampler holds it open)
        images, sources = f["images"][...], f["sources"][...]
    names, sizes = sampler.source_names, sampler.source_sizes
    perm = np.random.default_rng(0).permutation(len(images))
    write_dataset(tmp_path / "shuffled.h5", images[perm], sources[perm], names, sizes)
    shuffled = InterventionSampler(tmp_path / "shuffled.h5")
    assert not shuffled.row_major
    picks = grid_sources(sampler)[[3, 99, 431]]
    np.testing.assert_array_equal(shuffled.uint8_images(picks), sampler.uint8_images(picks))
    shuffled.close()

    write_dataset(tmp_path / "subset.h5", images[:-1], sources[:-1], names, sizes)
    with pytest.raises(DatasetError, match="subset.h5: has 431 images, but its source sizes"):
        InterventionSampler(tmp_path / "subset.h5")
    repeated = np.concatenate([sources[:1], sources[:-1]])
    write_dataset(tmp_path / "repeated.h5", images, repeated, names, sizes)
    with pytest.raises(DatasetError, match="repeated.h5: is not the full factorial grid: combination"):
        InterventionSampler(tmp_path / "repeated.h5")


def test_a_perfect_encoder_scores_one(sampler):
    perfect = LookupEncoder(sampler, grid_sources(sampler))
    out = factorvae_score(perfect, sampler, num_variance_estimate=200, **SMALL)
    assert out == {"factorvae": 1.0, "factorvae_train": 1.0, "factorvae_active": 7.0}
    out = betavae_score(perfect, sampler, **SMALL)
    assert out == {"betavae": 1.0, "betavae_train": 1.0}


def test_a_random_encoder_scores_near_chance(sampler):
    gen = torch.Generator().manual_seed(1)

    def random_encoder(x):
        return torch.randn(x.shape[0], 10, generator=gen)

    # 7 sources: chance is 1/7; majority voting over 10 latents, or a fit, overfits the training draws
    assert factorvae_score(random_encoder, sampler, num_variance_estimate=200, **SMALL)["factorvae"] < 0.3
    assert betavae_score(random_encoder, sampler, **SMALL)["betavae"] < 0.3


def test_collapsed_latents_are_pruned(sampler):
    latents = np.concatenate([grid_sources(sampler)[:, :3], np.full((432, 2), 0.5)], 1).astype(np.float64)
    latents[:, 2] *= 0.01  # standard deviation ~0.005 < 0.05: pruned with the constant ones
    out = factorvae_score(LookupEncoder(sampler, latents), sampler, num_variance_estimate=200, **SMALL)
    assert out["factorvae_active"] == 2.0
    out = factorvae_score(LookupEncoder(sampler, np.zeros((432, 3))), sampler, num_variance_estimate=200, **SMALL)
    assert out == {"factorvae": 0.0, "factorvae_train": 0.0, "factorvae_active": 0.0}


def test_factorvae_equals_the_per_vote_transcription(sampler):
    encoder = LookupEncoder(sampler, noisy_latents(sampler))
    out = factorvae_score(encoder, sampler, num_variance_estimate=200, encode_batch=100, **SMALL)
    ref_eval, ref_train = factorvae_reference(encoder, sampler, 16, 120, 60, 200)
    assert 0.3 < out["factorvae"] < 0.95  # neither chance nor perfect: the comparison means something
    assert out["factorvae"] == pytest.approx(ref_eval, abs=1e-12)
    assert out["factorvae_train"] == pytest.approx(ref_train, abs=1e-12)


def test_betavae_equals_the_per_point_transcription(sampler):
    encoder = LookupEncoder(sampler, noisy_latents(sampler))
    out = betavae_score(encoder, sampler, **SMALL)
    ref_eval, ref_train = betavae_reference(encoder, sampler, 16, 120, 60)
    assert 0.3 < out["betavae"] < 0.99
    assert out["betavae"] == pytest.approx(ref_eval, abs=1 / 60 + 1e-9)  # one near-tie point may flip
    assert out["betavae_train"] == pytest.approx(ref_train, abs=1 / 120 + 1e-9)


def test_bad_arguments_are_one_line_errors(sampler):
    encoder = LookupEncoder(sampler, grid_sources(sampler))
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        factorvae_score(encoder, sampler, batch_size=1)
    with pytest.raises(ValueError, match="num_train must be at least 1"):
        betavae_score(encoder, sampler, num_train=0)
    with pytest.raises(ValueError, match="encode must return N x n_z"):
        betavae_score(lambda x: torch.zeros(3), sampler, **SMALL)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_equals_cpu(sampler):
    encoder = LookupEncoder(sampler, noisy_latents(sampler))

    def on_device(x):
        return encoder(x.cpu()).to(x.device)

    for score in (factorvae_score, betavae_score):
        cuda = score(on_device, sampler, device="cuda", **SMALL)
        assert cuda == pytest.approx(score(encoder, sampler, **SMALL), abs=1e-9)
