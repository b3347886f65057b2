"""What both backends share: input handling (device, label codes, standardization, quantiles, the split),
the guards for degenerate inputs, and the final formulas of docs/evaluation.md that turn an NMI matrix into InfoM and
InfoC and an importance matrix into D and C. The estimators themselves live in their own modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from tripod_pl.tensors import to_numpy

ArrayLike = Any  # numpy array, torch tensor, or anything np.asarray accepts


def resolve_device(*arrays: ArrayLike, device: str | torch.device | None = None) -> torch.device:
    """The device the computation runs on: `device` if given, else that of the first torch tensor, else CPU."""
    if device is not None:
        return torch.device(device)
    for a in arrays:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


def as_tensor(x: ArrayLike, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`x` as a 2-D tensor on `device` (a column vector becomes N x 1)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to(device=device, dtype=dtype)
    else:
        t = torch.as_tensor(np.asarray(x), device=device, dtype=dtype)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"expected a 2-D array (samples x columns), got shape {tuple(t.shape)}")
    return t


def as_numpy(x: ArrayLike) -> np.ndarray:
    """`x` as a 2-D NumPy array (tensors are detached and copied to the host)."""
    x = to_numpy(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array (samples x columns), got shape {x.shape}")
    return x


def check_shapes(sources: torch.Tensor | np.ndarray, latents: torch.Tensor | np.ndarray) -> None:
    if sources.shape[0] != latents.shape[0]:
        raise ValueError(f"sources have {sources.shape[0]} samples but latents have {latents.shape[0]}")
    if sources.shape[0] < 2:
        raise ValueError("need at least two samples")


def label_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per column, replace values by the index of the value among the column's sorted unique values.

    Returns `codes` (N x M, int64, values 0..n_m - 1) and `n_codes` (M,), like sklearn's LabelEncoder
    applied column by column, but in one sort.
    """
    n = x.shape[0]
    sorted_x, order = torch.sort(x, dim=0)
    new_value = torch.ones_like(sorted_x, dtype=torch.long)
    new_value[0] = 0
    new_value[1:] = (sorted_x[1:] != sorted_x[:-1]).long()
    sorted_codes = torch.cumsum(new_value, dim=0)
    codes = torch.empty_like(sorted_codes).scatter_(0, order, sorted_codes)
    n_codes = sorted_codes[n - 1] + 1
    return codes, n_codes


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit (population) variance per column; a constant column becomes zeros (sklearn's rule)."""
    mean = x.mean(dim=0, keepdim=True)
    std = x.std(dim=0, correction=0, keepdim=True)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (x - mean) / std


def column_quantiles(x: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """Quantiles per column with linear interpolation (NumPy's default); returns len(qs) x M.

    Written with a sort because `torch.quantile` refuses inputs above 16M elements.
    """
    n = x.shape[0]
    sorted_x, _ = torch.sort(x, dim=0)
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        out.append(sorted_x[lo] + (sorted_x[hi] - sorted_x[lo]) * frac)
    return torch.stack(out)


def normalized_score(x: float, n: int) -> float:
    """`(x - 1/n) / (1 - 1/n)`: 0 at the chance level 1/n, 1 at perfect. With n = 1 the chance level is
    already perfect and the score is defined as 1."""
    if n <= 1:
        return 1.0
    return float((x - 1.0 / n) / (1.0 - 1.0 / n))


def safe_ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den with `fill` where den == 0 (0/0 ratios carry no preference, so they take the chance level)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@contextmanager
def cpu_ops_single_threaded(device: torch.device) -> Iterator[int]:
    """On CPU, run torch ops single-threaded for the duration, yielding the thread count to restore.

    The metrics issue many medium-sized ops; on a shared CPU their intra-op threads spend more time
    waiting for each other than working (measured here: 2 threads 4x slower than 1 under load), so the
    callers parallelize over independent problems with threads instead, as sklearn's n_jobs does.
    """
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield n
        return
    torch.set_num_threads(1)
    try:
        yield n
    finally:
        torch.set_num_threads(n)


@contextmanager
def metric_inputs(
    sources: ArrayLike, latents: ArrayLike, device: str | torch.device | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """The torch backend's common start: ``(sources, latents as float64, the thread count to restore)`` as 2-D
    tensors on the resolved device (:func:`resolve_device`) with matching rows (:func:`check_shapes`), CPU ops
    single-threaded for the duration (:func:`cpu_ops_single_threaded`)."""
    dev = resolve_device(latents, sources, device=device)
    with cpu_ops_single_threaded(dev) as n_threads:
        s = as_tensor(sources, dev)
        z = as_tensor(latents, dev, torch.float64)
        check_shapes(s, z)
        yield s, z, n_threads


def valid_sources(n_values: np.ndarray) -> np.ndarray:
    """Sources with at least two values; a constant source carries no information and is left out of
    every score (its NMI row and importance column are zero)."""
    return np.asarray(n_values) >= 2


def infom_infoc(nmi: np.ndarray, active: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """InfoM and InfoC (docs/evaluation.md) from the NMI matrix (K x n_z), over active latents and valid sources.

    InfoM = (mean_{active j} max_i NMI_ij / sum_i NMI_ij - 1/K) / (1 - 1/K);
    InfoC = (mean_i max_{active j} NMI_ij / sum_{active j} NMI_ij - 1/L) / (1 - 1/L), L = #active.
    A ratio 0/0 (a latent or source with no information at all) takes the chance level 1/K or 1/L.
    """
    pruned = nmi[np.ix_(valid, active)]
    k, n_active = pruned.shape
    if n_active == 0 or k == 0:
        return 0.0, 0.0
    per_latent = safe_ratio(pruned.max(0), pruned.sum(0), 1.0 / k)
    per_source = safe_ratio(pruned.max(1), pruned.sum(1), 1.0 / n_active)
    return normalized_score(per_latent.mean(), k), normalized_score(per_source.mean(), n_active)


def active_latents(iqr: np.ndarray, discrete: bool) -> np.ndarray:
    """The protocol's rule for active latents, from each latent's inter-quartile range over the evaluation
    samples: IQR > 0.1 (discrete latents) or IQR > max IQR / 10 (continuous) (docs/evaluation.md)."""
    iqr = np.asarray(iqr, dtype=np.float64)
    return iqr > (0.1 if discrete else iqr.max(initial=0.0) / 10)


def dci_scores(importance: np.ndarray, accuracy: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """D, C and I (Eastwood & Williams 2018) from the importance matrix R (n_z x K) over valid sources.

    D = sum_j rho_j (1 - H_K(R_j.)),  C = sum_i rho_i (1 - H_L(R_.i)),  I = mean test accuracy, with
    H_K, H_L entropies of the normalized row / column in base K / L (L = n_z) and rho the shares of the
    total importance. An all-zero R gives D = C = 0; with K = 1 (or L = 1) every row (column) is
    trivially concentrated and its term is 1.
    """
    r = importance[:, valid]
    acc = accuracy[valid]
    i_score = float(acc.mean()) if acc.size else 0.0
    total = r.sum()
    if r.size == 0 or total <= 0:
        return {"d": 0.0, "c": 0.0, "i": i_score}

    def concentration(p_unnorm: np.ndarray, axis: int) -> np.ndarray:
        n = p_unnorm.shape[axis]
        if n <= 1:
            return np.ones(p_unnorm.shape[1 - axis])
        p = p_unnorm / np.where(p_unnorm.sum(axis, keepdims=True) > 0, p_unnorm.sum(axis, keepdims=True), 1)
        h = -(p * np.log(np.where(p > 0, p, 1))).sum(axis) / np.log(n)
        return 1 - h

    d = float((r.sum(1) / total * concentration(r, 1)).sum())
    c = float((r.sum(0) / total * concentration(r, 0)).sum())
    return {"d": d, "c": c, "i": i_score}


def majority_accuracy(train_codes: np.ndarray, test_codes: np.ndarray) -> np.ndarray:
    """Per column, the test accuracy of always predicting the training split's most frequent value: the
    chance level of a classifier's accuracy (N_train x M and N_test x M integer codes -> M floats)."""
    train_codes, test_codes = np.asarray(train_codes), np.asarray(test_codes)
    out = np.empty(train_codes.shape[1])
    for i in range(train_codes.shape[1]):
        values, counts = np.unique(train_codes[:, i], return_counts=True)
        out[i] = np.mean(test_codes[:, i] == values[np.argmax(counts)])
    return out


def train_test_indices(n: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The split of sklearn's `train_test_split(test_size=test_size, random_state=seed)`, reproduced
    (ShuffleSplit: a RandomState permutation, test first), so both backends see the same split."""
    n_test = int(np.ceil(test_size * n))
    n_train = n - n_test
    if n_test < 1 or n_train < 1:
        raise ValueError(f"test_size={test_size} leaves an empty split of {n} samples")
    perm = np.random.RandomState(seed).permutation(n)
    return perm[n_test : n_test + n_train], perm[:n_test]
