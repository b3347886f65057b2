"""Sources and latents of known structure for the metric tests.

Four kinds of latents, each discrete (FSQ-quantized to 12 levels, as Tripod's bottleneck emits) or
continuous: `disentangled` (one latent per source, the rest collapsed), `rotated` (every latent mixes
every source), `noisy` (one latent per source, heavily noised, the rest noise) and `random`.
"""

from __future__ import annotations

import numpy as np

SIZES = (4, 5, 6)
KINDS = ("disentangled", "rotated", "noisy", "random")


def fsq(z: np.ndarray, levels: int = 12) -> np.ndarray:
    """Finite scalar quantization of tanh(z / 2) to `levels` values in [-1, 1]."""
    half = (levels - 1) / 2
    return np.round((np.tanh(z / 2) + 1) * half) / half - 1


def make_sources(n: int, sizes=SIZES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, k, n) for k in sizes], axis=1)


def make_latents(kind: str, sources: np.ndarray, discrete: bool, seed: int = 1) -> np.ndarray:
    """n x 2K latents of the given kind for `sources` (n x K)."""
    rng = np.random.default_rng(seed)
    n, k = sources.shape
    std = (sources - sources.mean(0)) / sources.std(0) * 1.5
    if kind == "disentangled":
        z = np.concatenate([std + 0.05 * rng.standard_normal((n, k)), 1e-3 * rng.standard_normal((n, k))], 1)
        if discrete:
            z[:, k:] = 0.0  # collapsed latents of a quantizer are exactly constant
    elif kind == "rotated":
        q, _ = np.linalg.qr(rng.standard_normal((2 * k, 2 * k)))
        z = np.concatenate([std, 0.5 * rng.standard_normal((n, k))], 1) @ q
    elif kind == "noisy":
        z = np.concatenate([std + 1.5 * rng.standard_normal((n, k)), rng.standard_normal((n, k))], 1)
    elif kind == "random":
        z = 1.5 * rng.standard_normal((n, 2 * k))
    else:
        raise ValueError(kind)
    return fsq(z) if discrete else z
