"""Mutual information between sources and latents on the tensors' device (docs/evaluation.md, "NMI matrix").

All quantities are in nats.

- :func:`plugin_entropy`: `H(s_i) = -sum_a p(a) log p(a)` from the empirical frequencies.
- :func:`histogram_mi`: plug-in `I(s_i; z_j) = sum_{a,b} p(a,b) log(p(a,b) / (p(a) p(b)))` from the joint
  histogram of integer codes, for every (source, latent) pair at once from one `bincount`.
- :func:`knn_mi`: the k-nearest-neighbour estimator of Ross (2014, PLoS ONE 9(2)) for a continuous latent
  against a discrete source, the estimator of sklearn's `mutual_info_classif`:
  `I = psi(N) + <psi(k_n)> - <psi(N_{s_n})> - <psi(m_n)>`, where for sample n of class s_n,
  `k_n = min(k, N_{s_n} - 1)`, `d_n` is the distance to its k_n-th nearest neighbour among samples of the
  same class, and `m_n` the number of samples (itself included) of any class strictly closer than `d_n`.
  Samples whose class occurs once are left out; a negative estimate is clipped to 0 (as sklearn does).
  The latent is one-dimensional, so neighbours come from sorting: the k_n nearest neighbours of a point
  together with it form a contiguous window of the class-sorted values, and the neighbour counts come
  from `searchsorted` on the sorted latent. No distance matrix is formed. Like sklearn, ties are broken
  by adding noise of scale 1e-10 (seeded, so the result is deterministic).
"""

from __future__ import annotations

import torch


def plugin_entropy(codes: torch.Tensor, n_codes: torch.Tensor) -> torch.Tensor:
    """Plug-in entropy of each column of integer `codes` (N x K, values < n_codes); returns K floats."""
    n, k = codes.shape
    offsets = torch.cumsum(n_codes, 0) - n_codes
    counts = torch.bincount((codes + offsets).reshape(-1), minlength=int(n_codes.sum())).double()
    owner = torch.repeat_interleave(torch.arange(k, device=codes.device), n_codes)
    p = counts / n
    return torch.zeros(k, dtype=torch.float64, device=codes.device).index_add_(0, owner, -torch.xlogy(p, p))


def histogram_mi(s_codes: torch.Tensor, s_n: torch.Tensor, z_codes: torch.Tensor, z_n: torch.Tensor) -> torch.Tensor:
    """Plug-in MI between every source column and every latent column of integer codes; returns K x L.

    The joint histograms of all pairs are counted, one `bincount` per source, into a single
    (sum of source sizes) x (sum of latent sizes) table of (source value, latent value) cells.
    """
    n, k = s_codes.shape
    n_lat = z_codes.shape[1]
    dev = s_codes.device
    rows_total, cols_total = int(s_n.sum()), int(z_n.sum())
    rows = s_codes + (torch.cumsum(s_n, 0) - s_n)  # N x K, global row of the source value
    cols = z_codes + (torch.cumsum(z_n, 0) - z_n)  # N x L, global column of the latent value
    row_count = torch.bincount(rows.reshape(-1), minlength=rows_total).double()
    col_count = torch.bincount(cols.reshape(-1), minlength=cols_total).double()
    joint = torch.zeros(rows_total * cols_total, dtype=torch.float64, device=dev)
    for i in range(k):  # one source at a time bounds the index tensor at N x L
        flat = (rows[:, i, None] * cols_total + cols).reshape(-1)
        joint += torch.bincount(flat, minlength=rows_total * cols_total).double()
    joint = joint.reshape(rows_total, cols_total)
    # p(a,b) log(p(a,b) / (p(a) p(b))) with p = count / n; empty cells contribute 0
    ratio = joint * n / (row_count[:, None] * col_count[None, :])
    term = torch.xlogy(joint, ratio) / n
    row_owner = torch.repeat_interleave(torch.arange(k, device=dev), s_n)
    col_owner = torch.repeat_interleave(torch.arange(n_lat, device=dev), z_n)
    by_source = torch.zeros(k, cols_total, dtype=torch.float64, device=dev).index_add_(0, row_owner, term)
    mi = torch.zeros(k, n_lat, dtype=torch.float64, device=dev).index_add_(1, col_owner, by_source)
    return mi.clamp_min(0.0)


def knn_mi(
    s_codes: torch.Tensor,
    s_n: torch.Tensor,
    latents: torch.Tensor,
    n_neighbors: int = 10,
    seed: int = 0,
    jitter: bool = True,
) -> torch.Tensor:
    """Ross (2014) kNN MI between each source column (integer codes) and each continuous latent; K x L.

    `latents` should be standardized. As sklearn does, ties are broken by adding noise of scale
    `1e-10 * max(1, mean |z_j|)` (drawn from a generator seeded with `seed`, so results are
    deterministic); this changes nothing for latents without repeated values.
    """
    n, k = s_codes.shape
    n_lat = latents.shape[1]
    dev = latents.device
    z = latents.to(torch.float64)
    if jitter:
        gen = torch.Generator(device=dev).manual_seed(seed)
        scale = z.abs().mean(0).clamp_min(1.0)
        z = z + 1e-10 * scale * torch.randn(z.shape, generator=gen, device=dev, dtype=torch.float64)
    z_sorted, order = torch.sort(z, dim=0)
    z_sorted_t = z_sorted.T.contiguous()  # L x N, rows sorted, for searchsorted
    arange_n = torch.arange(n, device=dev)
    rank = torch.empty_like(order).scatter_(0, order, arange_n[:, None].expand(n, n_lat))
    pos = arange_n[:, None]
    out = torch.zeros(k, n_lat, dtype=torch.float64, device=dev)
    for i in range(k):
        y = s_codes[:, i]
        counts = torch.bincount(y, minlength=int(s_n[i]))
        starts = torch.cumsum(counts, 0) - counts
        # class-major, value-minor order of the samples, per latent
        perm = torch.sort(y[:, None] * n + rank, dim=0).indices
        v = torch.gather(z, 0, perm)
        ys = y[perm]
        cnt, st = counts[ys], starts[ys]
        kk = torch.clamp(torch.clamp(cnt - 1, max=n_neighbors), min=1)
        last = st + cnt - 1
        radius = torch.full_like(v, float("inf"))
        for m in range(n_neighbors + 1):  # window [p - m, p - m + kk] around position p
            lo = pos - m
            hi = lo + kk
            valid = (m <= kk) & (lo >= st) & (hi <= last)
            d = torch.maximum(
                v - torch.gather(v, 0, lo.clamp(0, n - 1).expand(n, n_lat)),
                torch.gather(v, 0, hi.clamp(0, n - 1)) - v,
            )
            radius = torch.where(valid, torch.minimum(radius, d), radius)
        # strictly closer than the k-th neighbour, i.e. within nextafter(d, 0), as sklearn counts
        radius = torch.nextafter(radius, torch.zeros_like(radius))
        m_all = _count_within(z_sorted_t, v.T.contiguous(), radius.T.contiguous())
        keep = (cnt > 1).double()  # N x L; samples whose class occurs once are left out
        n_keep = keep[:, 0].sum()
        if n_keep == 0:
            continue

        def masked_mean(a: torch.Tensor) -> torch.Tensor:
            return (torch.special.digamma(a.double()) * keep).sum(0) / n_keep  # noqa: B023

        mi = torch.special.digamma(n_keep) + masked_mean(kk) - masked_mean(cnt) - masked_mean(m_all.T)
        out[i] = mi.clamp_min(0.0)
    return out


def _count_within(sorted_rows: torch.Tensor, centres: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """For each centre c (row-wise), the number of values x of the sorted row with |x - c| <= radius.

    `searchsorted` on `c +- radius` finds the range up to rounding of the sum; the range is then corrected
    with the distances computed exactly as the radius was (`x - c`), so a neighbour at distance exactly
    `radius` is never miscounted.
    """
    n = sorted_rows.shape[1]
    hi = torch.searchsorted(sorted_rows, centres + radius, right=True)
    lo = torch.searchsorted(sorted_rows, centres - radius)
    for _ in range(2):
        below = torch.gather(sorted_rows, 1, (hi - 1).clamp(0, n - 1))
        hi = torch.where((hi > 0) & (below - centres > radius), hi - 1, hi)
        above = torch.gather(sorted_rows, 1, hi.clamp(0, n - 1))
        hi = torch.where((hi < n) & (above - centres <= radius), hi + 1, hi)
        first = torch.gather(sorted_rows, 1, lo.clamp(0, n - 1))
        lo = torch.where((lo < n) & (centres - first > radius), lo + 1, lo)
        before = torch.gather(sorted_rows, 1, (lo - 1).clamp(0, n - 1))
        lo = torch.where((lo > 0) & (centres - before <= radius), lo - 1, lo)
    return hi - lo
