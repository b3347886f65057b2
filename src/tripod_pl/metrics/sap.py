"""SAP, the separated attribute predictability score (Kumar et al., ICLR 2018, "Variational Inference of
Disentangled Latent Concepts from Unlabeled Observations", section 3), as disentanglement_lib computes it
(docs/evaluation.md, "SAP").

A score matrix S (n_z x K) says how well each single latent z_j predicts each source s_k; then

    SAP = mean_k (S_(1)k - S_(2)k),

the gap between the best and the second best latent of each source. Two definitions of S:

- discrete sources (default, `continuous_sources=False`; disentanglement_lib's study setting): S_jk is the
  test accuracy of a linear classifier of s_k from the one latent z_j -- sklearn's
  `LinearSVC(C=0.01, class_weight="balanced")`, i.e. per value c of s_k (one-vs-rest; one problem for two
  values) the minimizer of the squared hinge loss
  `(w^2 + b^2) / 2 + sum_n C_n max(0, 1 - y_n (w z_jn + b))^2`, y_n = +1 for samples of value c and -1 for
  the rest, C_n = 0.01 * N / (V N_c) for the samples of value c (balanced weights, V values, N_c of value c)
  and 0.01 for the rest (liblinear's one-vs-rest weighting; with two values both sides are balanced); the
  prediction is the value of largest w z + b. On one latent this is a set of thresholds on z_j. Trained on
  the training part of sklearn's `train_test_split(test_size=test_size, random_state=seed)`
  (disentanglement_lib draws 10,000 training and 5,000 test samples: `test_size=1/3`), scored on the rest.
- continuous sources (`continuous_sources=True`): S_jk = Cov(z_j, s_k)^2 / (Var z_j Var s_k), the R^2 of a
  linear regression of the source index on z_j (0 for a latent of variance <= 1e-12), on all samples.

The classifiers are solved on the device, all (latent, source, value) problems at once, by Newton's method on
their two parameters (the objective is piecewise quadratic and strongly convex). Sources with a single value
are left out. Example::

    sap(sources, latents)["sap"]  # sources N x K integer indices, latents N x n_z (n_z >= 2)
"""

from __future__ import annotations

import numpy as np
import torch

from tripod_pl.metrics import _common as common
from tripod_pl.metrics._accumulate import LatentSourceMetric

__all__ = ["SAP", "sap", "sap_matrix"]

#: LinearSVC's C in disentanglement_lib
SVC_C = 0.01
#: elements of the (latents x problems x samples) working tensors per chunk of latents
_CHUNK = 1 << 23


def _svm_problems(y: torch.Tensor, n_codes: torch.Tensor, c_reg: float):
    """The binary problems of one-vs-rest LinearSVC for every source: labels (Q x N, +-1), per-sample costs
    (Q x N), and for each source the problems' rows and the values they stand for."""
    n = y.shape[0]
    labels, costs, groups = [], [], []
    for k in range(y.shape[1]):
        counts = torch.bincount(y[:, k], minlength=int(n_codes[k]))
        present = torch.nonzero(counts).flatten().tolist()
        weight = n / (len(present) * counts.double().clamp_min(1))  # sklearn's "balanced" class weights
        start = len(labels)
        if len(present) == 2:  # one problem, +1 = the larger value, both sides weighted
            pos = y[:, k] == present[1]
            labels.append(torch.where(pos, 1.0, -1.0).double())
            costs.append(c_reg * weight[y[:, k]])
            groups.append((k, list(range(start, start + 1)), present))
        elif len(present) > 2:
            for c in present:
                pos = y[:, k] == c
                labels.append(torch.where(pos, 1.0, -1.0).double())
                costs.append(torch.where(pos, c_reg * weight[c], c_reg).double())
            groups.append((k, list(range(start, start + len(present))), present))
    if not labels:
        return None, None, groups
    return torch.stack(labels), torch.stack(costs), groups


def _fit_svms(z: torch.Tensor, labels: torch.Tensor, costs: torch.Tensor, max_iter: int = 100) -> torch.Tensor:
    """(w, b) minimizing (w^2 + b^2)/2 + sum_n costs_n max(0, 1 - labels_n (w z_n + b))^2 for every latent
    (columns of z, N x L) and problem (rows of labels, Q x N): returns L x Q x 2, by damped Newton steps."""
    n, n_lat = z.shape
    q = labels.shape[0]
    x = z.T[:, None, :]  # L x 1 x N
    theta = torch.zeros(n_lat, q, 2, dtype=torch.float64, device=z.device)

    def objective(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        viol = (1 - labels * (th[..., :1] * x + th[..., 1:])).clamp_min(0)  # L x Q x N
        return 0.5 * (th * th).sum(-1) + (costs * viol * viol).sum(-1), viol

    loss, viol = objective(theta)
    for _ in range(max_iter):
        a = 2 * costs * (viol > 0)  # generalized Hessian weights
        r = 2 * costs * labels * viol
        g_w = theta[..., 0] - (r * x).sum(-1)
        g_b = theta[..., 1] - r.sum(-1)
        h_ww = 1 + (a * x * x).sum(-1)
        h_wb = (a * x).sum(-1)
        h_bb = 1 + a.sum(-1)
        det = h_ww * h_bb - h_wb * h_wb
        step = torch.stack([-(h_bb * g_w - h_wb * g_b) / det, -(h_ww * g_b - h_wb * g_w) / det], -1)
        slope = step[..., 0] * g_w + step[..., 1] * g_b
        t = torch.ones_like(loss)
        done = slope > -1e-12 * loss.clamp_min(1.0)  # no descent left: at the minimum to working precision
        if bool(done.all()):
            break
        accepted = done.clone()
        new_theta, new_loss, new_viol = theta, loss, viol
        for _ in range(40):  # backtracking to the Armijo condition (a full step is exact on a fixed active set)
            trial = theta + t[..., None] * step
            t_loss, t_viol = objective(trial)
            ok = (t_loss <= loss + 1e-4 * t * slope) & ~accepted
            new_theta = torch.where(ok[..., None], trial, new_theta)
            new_loss = torch.where(ok, t_loss, new_loss)
            new_viol = torch.where(ok[..., None], t_viol, new_viol)
            accepted |= ok
            if bool(accepted.all()):
                break
            t = torch.where(accepted, t, t * 0.5)
        theta, loss, viol = new_theta, new_loss, new_viol
    return theta


def sap_matrix(
    sources: torch.Tensor,
    latents: torch.Tensor,
    continuous_sources: bool = False,
    test_size: float = 1 / 3,
    seed: int = 0,
    c_reg: float = SVC_C,
) -> tuple[np.ndarray, np.ndarray]:
    """The score matrix S (n_z x K, float64) of the module docstring, and which sources have two values."""
    s_codes, s_n = common.label_codes(sources)
    valid = common.valid_sources(s_n.cpu().numpy())
    n, n_lat = latents.shape
    score = np.zeros((n_lat, s_codes.shape[1]))
    if continuous_sources:
        z = latents - latents.mean(0)
        y = s_codes.double() - s_codes.double().mean(0)
        cov = z.T @ y / (n - 1)
        var_z = (z * z).sum(0) / (n - 1)
        var_y = (y * y).sum(0) / (n - 1)
        r2 = cov**2 / (var_z[:, None] * var_y.clamp_min(1e-300)[None, :])
        score = torch.where(var_z[:, None] > 1e-12, r2, 0.0).cpu().numpy()
        score[:, ~valid] = 0.0
        return score, valid
    train, test = (torch.as_tensor(i, device=latents.device) for i in common.train_test_indices(n, test_size, seed))
    labels, costs, groups = _svm_problems(s_codes[train], s_n, c_reg)
    if labels is None:
        return score, valid
    z_train, z_test = latents[train], latents[test]
    chunk = max(1, _CHUNK // (labels.numel()))
    theta = torch.cat([_fit_svms(z_train[:, j : j + chunk], labels, costs) for j in range(0, n_lat, chunk)])
    decision = theta[:, :, None, 0] * z_test.T[:, None, :] + theta[:, :, None, 1]  # L x Q x N_test
    for k, rows, present in groups:
        values = torch.as_tensor(present, device=latents.device)
        if len(rows) == 1:
            pred = values[(decision[:, rows[0]] > 0).long()]
        else:
            pred = values[decision[:, rows].argmax(1)]
        score[:, k] = (pred == s_codes[test, k]).double().mean(1).cpu().numpy()
    return score, valid


def sap(
    sources: common.ArrayLike,
    latents: common.ArrayLike,
    continuous_sources: bool = False,
    *,
    test_size: float = 1 / 3,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """The SAP score of `latents` (N x n_z, n_z >= 2) for `sources` (N x K integer indices).

    `continuous_sources` picks the score matrix (module docstring): classification accuracy (default) or R^2.
    `test_size` and `seed` make the classifiers' split. Computed on the device of the inputs (or `device`).
    Returns `{"sap": float}`; 0 when no source has two values.
    """
    with common.metric_inputs(sources, latents, device) as (s, z, _):
        if z.shape[1] < 2:
            raise ValueError(f"SAP needs at least two latents, got {z.shape[1]}")
        score, valid = sap_matrix(s, z, continuous_sources, test_size, seed)
    if not valid.any():
        return {"sap": 0.0}
    top = -np.sort(-score[:, valid], axis=0)
    return {"sap": float(np.mean(top[0] - top[1]))}


class SAP(LatentSourceMetric):
    """:func:`sap` as a `torchmetrics.Metric`: `update(latents, sources)` per batch, `compute()` ->
    `{"sap": ...}` over everything accumulated (on every DDP rank)."""

    def __init__(self, continuous_sources: bool = False, test_size: float = 1 / 3, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.continuous_sources = continuous_sources
        self.test_size = test_size
        self.seed = seed

    def _score(self, sources: torch.Tensor, latents: torch.Tensor) -> dict[str, float]:
        return sap(sources, latents, self.continuous_sources, test_size=self.test_size, seed=self.seed)
