"""Multinomial logistic regression on the tensors' device, for InfoE (docs/evaluation.md, "InfoE").

For one source with C classes, weights `W` (d x C) and intercept `b` (C), the model is
`p(c | x) = softmax(x W + b)_c` and the fitted objective is the balanced-weighted training log-loss

    H(W, b) = sum_n w_n * (-log p(s_n | x_n)),   w_n = 1 / (C * N_{s_n}),   sum_n w_n = 1,

i.e. sklearn's `class_weight="balanced"` (weights n / (C * N_c)) normalized to sum to one, unpenalized.
`H_pred` is its minimum. With no features the minimizer is the uniform distribution (every class carries
the same total weight 1/C), so `H_null = log C` exactly.

Every source is fitted at once: the K problems are padded to the largest class count (padded classes get
probability 0) and solved by one batched L-BFGS whose curvature pairs, step lengths (backtracking Armijo)
and stopping tests are kept per problem. The objective is convex, so `s.y >= 0` holds without a Wolfe
search. A problem stops when its largest gradient entry is below `tol`, or when it gained less than 1e-5
nats over 10 steps (the slow tail of quasi-separable one-hot problems; InfoE moves by < 1e-4 after it).
Arithmetic is float32 (the loss is wanted to ~1e-4, not to machine precision).

One-hot features of discrete latents are held as a dense N x (sum of latent sizes) matrix when that is
small, else as indices whose `x W` is a sum of one row of `W` per latent (`embedding_bag`).

`paper_log_loss` is the Tripod authors' protocol (docs/evaluation.md, "InfoE"): the same balanced-weighted fit,
but as scikit-learn runs it by default -- raw (unscaled) one-hot columns, float64, stopped after 100 L-BFGS
iterations or once the largest gradient entry is below 1e-4 (`LogisticRegression(max_iter=100, tol=1e-4)`),
often before convergence -- and scored by the *unweighted* mean log-loss `mean_n -log p(s_n | x_n)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Features:
    """The design matrix of the regression, applied as `x @ table` and `x.T @ g`.

    `table` and `g` stack the K problems side by side: (d x K*C) and (N x K*C).
    """

    n_features: int

    def matmul(self, table: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rmatmul(self, g: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def to(self, dtype: torch.dtype) -> Features:
        return self


class DenseFeatures(Features):
    """Standardized continuous latents, or one-hot codes small enough to hold as a dense N x d matrix."""

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.n_features = x.shape[1]

    def matmul(self, table: torch.Tensor) -> torch.Tensor:
        return self.x @ table

    def rmatmul(self, g: torch.Tensor) -> torch.Tensor:
        return self.x.T @ g

    def to(self, dtype: torch.dtype) -> DenseFeatures:
        return DenseFeatures(self.x.to(dtype))


class OneHotFeatures(Features):
    """Scaled one-hot codes kept as indices: `x @ table` sums one scaled table row per latent."""

    def __init__(self, columns: torch.Tensor, scale: torch.Tensor):
        self.columns = columns  # N x L, global column of each latent's value
        self.scale = scale  # per column
        self.n_features = scale.shape[0]

    def matmul(self, table: torch.Tensor) -> torch.Tensor:
        weights = self.scale[self.columns].to(table.dtype)
        return F.embedding_bag(self.columns, table, per_sample_weights=weights, mode="sum")

    def rmatmul(self, g: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.n_features, g.shape[1], dtype=g.dtype, device=g.device)
        for j in range(self.columns.shape[1]):  # one index_add per latent: no N*L x K*C copy of g
            col = self.columns[:, j]
            out.index_add_(0, col, g * self.scale[col].to(g.dtype)[:, None])
        return out


def one_hot_features(
    codes: torch.Tensor, n_codes: torch.Tensor, dense_limit: int = 2**26, scaled: bool = True
) -> Features:
    """One-hot design matrix of per-latent integer codes (N x L, values < n_codes), all columns kept
    (as sklearn's OneHotEncoder).

    With `scaled` each column is divided by the square root of its frequency (unit mean square). This
    changes neither the model class nor the minimum loss, only the conditioning: L-BFGS then reaches the
    loss of rare values' weights (which grow without bound under quasi-separation) several times sooner.
    Without it the columns are sklearn's 0/1 (what an iteration-limited fit of the paper protocol needs).
    Dense when N x (sum of n_codes) <= `dense_limit` entries, else kept as indices.
    """
    n = codes.shape[0]
    columns = codes + (torch.cumsum(n_codes, 0) - n_codes)
    n_features = int(n_codes.sum())
    scale = (torch.bincount(columns.reshape(-1), minlength=n_features).double() / n).rsqrt()
    if not scaled:
        scale = torch.ones_like(scale)
    if n * n_features <= dense_limit:
        x = torch.zeros(n, n_features, dtype=torch.float64, device=codes.device)
        return DenseFeatures(x.scatter_(1, columns, scale[columns]))
    return OneHotFeatures(columns, scale)


def dense_features(x: torch.Tensor) -> DenseFeatures:
    return DenseFeatures(x)


def balanced_log_loss(
    features: Features,
    targets: torch.Tensor,
    n_classes: torch.Tensor,
    max_iter: int = 1000,
    tol: float = 1e-5,
    history: int = 10,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Minimum balanced-weighted training log-loss (nats) of a multinomial logistic regression per target.

    `targets` is N x K integer codes (values < n_classes[k], every class present); returns K values.
    Stops a problem when its largest gradient entry is below `tol` or its loss stops decreasing.
    """
    return _fit(features, targets, n_classes, max_iter, tol, history, dtype, ftol=1e-5, score="balanced")


def paper_log_loss(
    features: Features,
    targets: torch.Tensor,
    n_classes: torch.Tensor,
    max_iter: int = 100,
    tol: float = 1e-4,
    history: int = 10,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The authors' InfoE log-loss per target: the balanced-weighted fit stopped as scikit-learn's defaults
    stop it (`max_iter` L-BFGS iterations, or the largest gradient entry below `tol`), scored by the
    unweighted mean log-loss of the training samples. Give it unscaled one-hot features
    (`one_hot_features(..., scaled=False)`) to follow sklearn's iterates."""
    return _fit(features, targets, n_classes, max_iter, tol, history, dtype, ftol=0.0, score="unweighted")


def _fit(
    features: Features,
    targets: torch.Tensor,
    n_classes: torch.Tensor,
    max_iter: int,
    tol: float,
    history: int,
    dtype: torch.dtype,
    ftol: float,
    score: str,
) -> torch.Tensor:
    """Fits the balanced-weighted objective; returns its minimum (`score="balanced"`) or the unweighted mean
    log-loss at the final parameters (`score="unweighted"`), K values in float64."""
    n, k = targets.shape
    dev = targets.device
    c_max = int(n_classes.max())
    d = features.n_features
    features = features.to(dtype)
    class_ok = (torch.arange(c_max, device=dev)[None, :] < n_classes[:, None]).to(dtype)  # K x C
    y = targets[:, :, None]  # N x K x 1
    counts = torch.zeros(k, c_max, dtype=dtype, device=dev)
    counts.scatter_add_(1, targets.T, torch.ones(k, n, dtype=dtype, device=dev))
    weight = 1.0 / (n_classes.to(dtype) * torch.gather(counts, 1, targets.T).T)  # N x K, columns sum to 1

    def nll_of(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        params = theta.reshape(k, d + 1, c_max).permute(1, 0, 2)  # (d+1) x K x C
        logits = features.matmul(params[:d].reshape(d, k * c_max)).reshape(n, k, c_max) + params[d]
        top = logits.amax(2, keepdim=True)  # padded classes have logit 0 <= max: harmless
        e = torch.exp(logits - top) * class_ok
        total = e.sum(2, keepdim=True)
        # -log p(s_n | x_n) = log total + top - logit of s_n
        return (torch.log(total) + top - torch.gather(logits, 2, y))[:, :, 0], e, total, logits

    def loss_and_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nll, e, total, _ = nll_of(theta)
        loss = (weight * nll).sum(0)
        g = e * (weight[:, :, None] / total)
        g.scatter_add_(2, y, -weight[:, :, None])
        grad_w = features.rmatmul(g.reshape(n, k * c_max)).reshape(d, k, c_max)
        grad = torch.cat([grad_w, g.sum(0, keepdim=True)], dim=0).permute(1, 0, 2).reshape(k, -1)
        return loss, grad

    theta = torch.zeros(k, (d + 1) * c_max, dtype=dtype, device=dev)
    loss, theta = _lbfgs(loss_and_grad, theta, max_iter=max_iter, tol=tol, history=history, ftol=ftol)
    if score == "balanced":
        return loss.double()
    if score == "unweighted":
        return nll_of(theta)[0].mean(0).double()
    raise ValueError(f"unknown score {score!r}")


def _lbfgs(
    fun, theta: torch.Tensor, max_iter: int, tol: float, history: int, ftol: float = 1e-5, window: int = 10
) -> torch.Tensor:
    """Batched L-BFGS with backtracking Armijo steps; rows of `theta` are independent problems.

    `fun(theta) -> (loss (K,), grad (K x P))`. Returns the final losses and parameters. A problem stops when
    its largest gradient entry is at most `tol`, its loss stops decreasing, or (with `ftol` > 0) it gained
    less than `ftol` over the last `window` iterations; all stop after `max_iter` iterations.
    """
    k, p = theta.shape
    dev, dtype = theta.device, theta.dtype
    s_hist = torch.zeros(history, k, p, dtype=dtype, device=dev)
    y_hist = torch.zeros(history, k, p, dtype=dtype, device=dev)
    rho = torch.zeros(history, k, dtype=dtype, device=dev)  # 0 marks an empty or unusable pair
    gamma = torch.ones(k, dtype=dtype, device=dev)
    loss, grad = fun(theta)
    loss_before = loss
    active = grad.abs().amax(1) > tol
    newest = -1
    for it in range(max_iter):
        if not bool(active.any()):
            break
        # two-loop recursion, newest pair first
        q = grad.clone()
        alphas = []
        for j in range(min(it, history)):
            idx = (newest - j) % history
            a = rho[idx] * (s_hist[idx] * q).sum(1)
            q -= a[:, None] * y_hist[idx]
            alphas.append((idx, a))
        r = gamma[:, None] * q
        for idx, a in reversed(alphas):
            bcoef = rho[idx] * (y_hist[idx] * r).sum(1)
            r += (a - bcoef)[:, None] * s_hist[idx]
        direction = -r
        slope = (direction * grad).sum(1)
        bad = ~(slope < 0)  # not a descent direction: fall back to steepest descent
        direction = torch.where(bad[:, None], -grad, direction)
        slope = torch.where(bad, -(grad * grad).sum(1), slope)
        direction = direction * active[:, None]
        if it == 0:
            step = torch.clamp(1.0 / grad.abs().sum(1), max=1.0)
        else:
            step = torch.ones(k, dtype=dtype, device=dev)
        # backtracking: accept where the Armijo condition holds, halve the step elsewhere
        accepted = ~active
        new_theta, new_loss, new_grad = theta, loss, grad
        for _ in range(30):
            trial = theta + step[:, None] * direction
            t_loss, t_grad = fun(trial)
            ok = (t_loss <= loss + 1e-4 * step * slope) & ~accepted
            new_theta = torch.where(ok[:, None], trial, new_theta)
            new_loss = torch.where(ok, t_loss, new_loss)
            new_grad = torch.where(ok[:, None], t_grad, new_grad)
            accepted = accepted | ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step * 0.5)
        stalled = ~accepted  # no decrease found: at the optimum to working precision
        s_vec = new_theta - theta
        y_vec = new_grad - grad
        sy = (s_vec * y_vec).sum(1)
        usable = (sy > 1e-12) & accepted & active
        newest = (newest + 1) % history
        s_hist[newest] = s_vec
        y_hist[newest] = y_vec
        rho[newest] = torch.where(usable, 1.0 / sy.clamp_min(1e-300), 0.0)
        gamma = torch.where(usable, sy / (y_vec * y_vec).sum(1).clamp_min(1e-300), gamma)
        decrease = loss - new_loss
        theta, grad = new_theta, new_grad
        loss = new_loss
        converged = (grad.abs().amax(1) <= tol) | (decrease <= 1e-12 * loss.abs().clamp_min(1.0)) | stalled
        if ftol > 0 and (it + 1) % window == 0:  # slow tail: less than `ftol` gained over `window` steps
            converged |= loss_before - loss < ftol
            loss_before = loss
        active = active & ~converged
    return loss, theta
