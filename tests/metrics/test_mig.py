"""`mig` and `MIG` (Chen et al. 2018, disentanglement_lib's definition; docs/evaluation.md, "MIG") against a
slow NumPy / scikit-learn transcription."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from tripod_pl.metrics import MIG, mig

from ._data import KINDS, make_latents, make_sources

N = 1500


def mig_reference(sources: np.ndarray, latents: np.ndarray, num_bins: int = 20) -> float:
    """disentanglement_lib's `_compute_mig`, transcribed: np.histogram edges, np.digitize, mutual_info_score."""
    z = latents.astype(np.float64)
    binned = np.stack([np.digitize(col, np.histogram(col, num_bins)[1][:-1]) for col in z.T], axis=1)
    ks = [k for k in range(sources.shape[1]) if len(np.unique(sources[:, k])) > 1]
    gaps = []
    for k in ks:
        mi = sorted((mutual_info_score(sources[:, k], b) for b in binned.T), reverse=True)
        gaps.append((mi[0] - mi[1]) / mutual_info_score(sources[:, k], sources[:, k]))
    return float(np.mean(gaps))


@pytest.fixture(scope="module")
def sources():
    return make_sources(N)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_equals_the_transcription(sources, kind, discrete):
    latents = make_latents(kind, sources, discrete)
    assert mig(sources, latents)["mig"] == pytest.approx(mig_reference(sources, latents), abs=1e-9)


def test_disentangled_scores_high_and_random_low(sources):
    assert mig(sources, make_latents("disentangled", sources, False))["mig"] > 0.9
    assert mig(sources, make_latents("rotated", sources, False))["mig"] < 0.4
    assert mig(sources, make_latents("random", sources, False))["mig"] < 0.02


def test_other_bin_counts_and_torch_inputs(sources):
    latents = make_latents("noisy", sources, False)
    out = mig(torch.as_tensor(sources), torch.as_tensor(latents, dtype=torch.float32), num_bins=7)["mig"]
    assert out == pytest.approx(mig_reference(sources, latents.astype(np.float32), 7), abs=1e-9)
    assert mig(sources, latents, num_bins=1)["mig"] == 0.0  # one bin carries no information


def test_a_constant_source_is_left_out_and_one_latent_is_an_error(sources):
    latents = make_latents("disentangled", sources, True)
    with_constant = np.concatenate([sources, np.zeros((N, 1), int)], 1)
    assert mig(with_constant, latents)["mig"] == pytest.approx(mig(sources, latents)["mig"])
    with pytest.raises(ValueError, match="at least two latents"):
        mig(sources, latents[:, :1])


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metric_class_equals_the_function(sources):
    latents = make_latents("rotated", sources, True)
    metric = MIG(num_bins=20)
    for part in np.array_split(np.arange(N), 3):
        metric.update(torch.as_tensor(latents[part]), torch.as_tensor(sources[part]))
    assert metric.compute()["mig"] == pytest.approx(mig(sources, latents)["mig"], abs=1e-12)
    metric.reset()
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metric_class_computes_on_states_a_ddp_sync_concatenated(sources):
    # torchmetrics' sync replaces each list state by one tensor (every rank's batches, concatenated)
    latents = make_latents("rotated", sources, True)
    metric = MIG(num_bins=20)
    metric.latents, metric.sources = torch.as_tensor(latents), torch.as_tensor(sources)
    assert metric.compute()["mig"] == pytest.approx(mig(sources, latents)["mig"], abs=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_equals_cpu(sources):
    latents = make_latents("noisy", sources, False)
    cuda = mig(torch.as_tensor(sources).cuda(), torch.as_tensor(latents).cuda())["mig"]
    assert cuda == pytest.approx(mig(sources, latents)["mig"], abs=1e-9)
