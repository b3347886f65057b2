"""Intervention scores: the BetaVAE score (Higgins et al., ICLR 2017, "beta-VAE: Learning Basic Visual Concepts
with a Constrained Variational Framework") and the FactorVAE score (Kim & Mnih, ICML 2018, "Disentangling by
Factorising"), with disentanglement_lib's protocols (docs/evaluation.md, "FactorVAE and BetaVAE scores").

Both draw batches with one source fixed from the full factorial grid of a dataset file
(:class:`~tripod_pl.data.interventions.InterventionSampler`) and encode them with `encode` (images as the
networks take them -> latents, N x n_z), e.g. `model.encode`. Source values are drawn uniformly and
independently.

FactorVAE score: the latents' variances `v` (ddof 1) over `num_variance_estimate` random images; latents
with standard deviation < `prune_threshold` are collapsed and left out. A vote: a source k drawn uniformly,
`batch_size` images sharing the value of s_k (drawn once), the active latent j of least `Var_batch(z_j) / v_j`
votes for k. The classifier maps each latent to the source it got most votes for (`num_train` votes); the
score is its accuracy on `num_eval` fresh votes (the share of votes that go to their latent's source).

BetaVAE score: a point: a source k drawn uniformly, two batches of `batch_size` images whose s_k agree pairwise
(all other sources independent), the feature `mean_batch |z(x1) - z(x2)|` (n_z values), the label k. A
logistic regression (sklearn's defaults: multinomial, L2, C = 1) fitted on `num_train` points predicts k; the
score is its accuracy on `num_eval` fresh points.

The defaults are disentanglement_lib's study settings: batches of 64, 10,000 training and 5,000 evaluation
votes / points, 10,000 images for the variances, prune threshold 0.05 -- about 1M (FactorVAE) and 1.9M
(BetaVAE) encoded images. Example::

    sampler = InterventionSampler("data/procedural.h5")
    factorvae_score(model.encode, sampler)  # {"factorvae", "factorvae_train", "factorvae_active"}
    betavae_score(model.encode, sampler)  # {"betavae", "betavae_train"}
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tripod_pl.data.interventions import InterventionSampler
from tripod_pl.metrics.l2_logistic import fit_l2_logistic

__all__ = ["Encoder", "betavae_score", "encode_sources", "factorvae_score"]

#: images (N x C x H x W, float in [-1, 1]) -> latents (N x n_z)
Encoder = Callable[[torch.Tensor], torch.Tensor]


def encode_sources(
    encode: Encoder,
    sampler: InterventionSampler,
    sources: np.ndarray,
    device: str | torch.device | None = None,
    encode_batch: int = 1024,
) -> torch.Tensor:
    """The latents (N x n_z, float64, on `device`) of the images of the combinations `sources` (N x K),
    encoded `encode_batch` images at a time without gradients."""
    if encode_batch < 1:
        raise ValueError(f"encode_batch must be positive, got {encode_batch}")
    out = []
    with torch.no_grad():
        for start in range(0, len(sources), encode_batch):
            z = torch.as_tensor(encode(sampler.images(sources[start : start + encode_batch], device)))
            if z.ndim != 2 or z.shape[0] != min(encode_batch, len(sources) - start):
                raise ValueError(f"encode must return N x n_z latents for N images, got shape {tuple(z.shape)}")
            out.append(z.detach().double())
    return torch.cat(out)


def _check_counts(least: int = 1, **counts: int) -> None:
    for name, value in counts.items():
        if value < least:
            raise ValueError(f"{name} must be at least {least}, got {value}")


def _fixed_source_batches(
    sampler: InterventionSampler, rng: np.random.Generator, n_points: int, batch_size: int, copies: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each point a source k drawn uniformly and `copies` batches of combinations (uniform) that share
    the value of s_k: returns k (n_points,) and the combinations (copies x n_points x batch_size x K)."""
    k = sampler.num_sources
    fixed = rng.integers(0, k, n_points)
    sources = sampler.sample_sources(copies * n_points * batch_size, rng).reshape(copies, n_points, batch_size, k)
    points = np.arange(n_points)
    if copies == 1:  # FactorVAE: the whole batch takes the value of its first row
        sources[0, points, :, fixed] = sources[0, points, :1, fixed]
    for c in range(1, copies):  # BetaVAE: the second batch takes the first's values, pair by pair
        sources[c, points, :, fixed] = sources[0, points, :, fixed]
    return fixed, sources


def factorvae_score(
    encode: Encoder,
    sampler: InterventionSampler,
    *,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
    seed: int = 0,
    device: str | torch.device | None = None,
    encode_batch: int = 1024,
) -> dict[str, float]:
    """The FactorVAE score (module docstring) of `encode` on the grid of `sampler`.

    Returns `{"factorvae"` (evaluation accuracy), `"factorvae_train"` (training accuracy), `"factorvae_active"`
    (latents kept)`}`; 0 for all when every latent is collapsed. `seed` fixes every draw; `encode_batch`
    bounds the images per `encode` call (it does not change the result).
    """
    _check_counts(num_train=num_train, num_eval=num_eval)
    _check_counts(2, batch_size=batch_size, num_variance_estimate=num_variance_estimate)
    rng = np.random.default_rng(seed)
    z = encode_sources(encode, sampler, sampler.sample_sources(num_variance_estimate, rng), device, encode_batch)
    global_var = z.var(0, correction=1)
    active = global_var.sqrt() >= prune_threshold
    n_active = int(active.sum())
    if n_active == 0:
        return {"factorvae": 0.0, "factorvae_train": 0.0, "factorvae_active": 0.0}
    k = sampler.num_sources

    def votes(n_points: int) -> np.ndarray:
        fixed, sources = _fixed_source_batches(sampler, rng, n_points, batch_size, copies=1)
        lat = encode_sources(encode, sampler, sources.reshape(-1, k), device, encode_batch)
        lat = lat.reshape(n_points, batch_size, -1)[:, :, active]
        argmin = (lat.var(1, correction=1) / global_var[active]).argmin(1).cpu().numpy()
        counts = np.zeros((k, n_active), dtype=np.int64)
        np.add.at(counts, (fixed, argmin), 1)
        return counts

    train = votes(num_train)
    classifier = train.argmax(0)  # each latent's majority source (the first on ties)
    columns = np.arange(n_active)
    train_acc = train[classifier, columns].sum() / train.sum()
    held_out = votes(num_eval)
    eval_acc = held_out[classifier, columns].sum() / held_out.sum()
    return {"factorvae": float(eval_acc), "factorvae_train": float(train_acc), "factorvae_active": float(n_active)}


def betavae_score(
    encode: Encoder,
    sampler: InterventionSampler,
    *,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    c_reg: float = 1.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    encode_batch: int = 1024,
) -> dict[str, float]:
    """The BetaVAE score (module docstring) of `encode` on the grid of `sampler`.

    `c_reg` is the logistic regression's inverse L2 strength (sklearn's `C`). Returns `{"betavae"` (evaluation
    accuracy), `"betavae_train"` (training accuracy)`}`. `seed` fixes every draw; `encode_batch` bounds the
    images per `encode` call (it does not change the result).
    """
    _check_counts(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
    rng = np.random.default_rng(seed)
    k = sampler.num_sources

    def points(n_points: int) -> tuple[torch.Tensor, torch.Tensor]:
        fixed, sources = _fixed_source_batches(sampler, rng, n_points, batch_size, copies=2)
        lat = encode_sources(encode, sampler, sources.reshape(-1, k), device, encode_batch)
        lat = lat.reshape(2, n_points, batch_size, -1)
        features = (lat[0] - lat[1]).abs().mean(1)
        return features, torch.as_tensor(fixed, device=features.device)

    x_train, y_train = points(num_train)
    fit = fit_l2_logistic(x_train, y_train[:, None], torch.tensor([k], device=x_train.device), c_reg=c_reg)
    train_acc = (fit.predict(x_train)[:, 0] == y_train).double().mean()
    x_eval, y_eval = points(num_eval)
    eval_acc = (fit.predict(x_eval)[:, 0] == y_eval).double().mean()
    return {"betavae": float(eval_acc), "betavae_train": float(train_acc)}
