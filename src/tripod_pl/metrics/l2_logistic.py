"""L2-penalized multinomial logistic regression and one-vs-rest ROC AUC on the tensors' device: what
scikit-learn's default `LogisticRegression()` and `roc_auc_score` compute for explicitness (Ridgeway & Mozer
2018) and the BetaVAE score (Higgins et al. 2017) in disentanglement_lib.

For K problems sharing the features x (N x d), problem k with C_k classes minimizes

    (1/N) sum_n -log softmax(x_n W_k + b_k)_{y_nk} + lambda_k / (2N) ||W_k||^2,   lambda_k = 1 / C_reg,

sklearn's objective divided by N (same minimizer; the intercept is not penalized). A two-class problem is
sklearn's binary (sigmoid) model, whose one weight vector w = W_1 - W_0 carries the penalty ||w||^2 / 2;
the symmetric softmax form reaches it with lambda_k = 2 / C_reg. All problems are fitted at once, padded to the
largest class count, by the batched L-BFGS of :mod:`tripod_pl.metrics.logistic`, to convergence (the objective
is strictly convex, so the minimizer is unique; sklearn stops after 100 iterations, a difference of ~1e-4 in
the scores here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tripod_pl.metrics.logistic import _lbfgs


@dataclass
class LogisticFit:
    """Fitted weights (K x (d + 1) x C_max, the intercept last) and the mask of real classes (K x C_max)."""

    params: torch.Tensor
    class_ok: torch.Tensor

    def log_proba(self, x: torch.Tensor) -> torch.Tensor:
        """log p(c | x) per problem: N x K x C_max, -inf for padded classes."""
        d = x.shape[1]
        logits = torch.einsum("nd,kdc->nkc", x.to(self.params.dtype), self.params[:, :d]) + self.params[:, d]
        logits = logits.masked_fill(~self.class_ok, float("-inf"))
        return torch.log_softmax(logits, dim=2)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class per problem (the first on ties, as sklearn's argmax): N x K."""
        return self.log_proba(x).argmax(2)


def fit_l2_logistic(
    x: torch.Tensor,
    targets: torch.Tensor,
    n_classes: torch.Tensor,
    c_reg: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> LogisticFit:
    """Fits the K problems above: `x` N x d (float), `targets` N x K integer codes (< n_classes[k])."""
    n, k = targets.shape
    d = x.shape[1]
    dev, dtype = x.device, torch.float64
    x = x.to(dtype)
    c_max = int(n_classes.max())
    class_ok = torch.arange(c_max, device=dev)[None, :] < n_classes[:, None]  # K x C
    lam = torch.where(n_classes == 2, 2.0, 1.0).to(dtype) / c_reg  # K
    one_hot = torch.zeros(n, k, c_max, dtype=dtype, device=dev).scatter_(2, targets[:, :, None], 1.0)

    def loss_and_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = theta.reshape(k, d + 1, c_max)
        w, b = params[:, :d], params[:, d]
        logits = torch.einsum("nd,kdc->nkc", x, w) + b
        logp = torch.log_softmax(logits.masked_fill(~class_ok, float("-inf")), dim=2)
        nll = -(one_hot * logp.masked_fill(~class_ok, 0.0)).sum((0, 2)) / n
        loss = nll + lam / (2 * n) * (w * w).sum((1, 2))
        g = (logp.exp() - one_hot) / n  # N x K x C; padded classes have p = 0 and no target
        grad_w = torch.einsum("nd,nkc->kdc", x, g) + (lam / n)[:, None, None] * w
        grad = torch.cat([grad_w, g.sum(0)[:, None, :]], dim=1)
        return loss, grad.reshape(k, -1)

    theta = torch.zeros(k, (d + 1) * c_max, dtype=dtype, device=dev)
    _, theta = _lbfgs(loss_and_grad, theta, max_iter=max_iter, tol=tol, history=10, ftol=0.0)
    return LogisticFit(theta.reshape(k, d + 1, c_max), class_ok)


def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of `scores` (N,) for the boolean labels `positive` (N,): the Mann-Whitney
    statistic with ties counted one half (what sklearn's trapezoidal `roc_auc_score` gives)."""
    order = torch.argsort(scores)
    _, inverse, counts = torch.unique_consecutive(scores[order], return_inverse=True, return_counts=True)
    mean_rank = (torch.cumsum(counts, 0) - (counts - 1) / 2.0).double()  # 1-based, ties averaged
    ranks = mean_rank[inverse]
    pos = positive[order]
    n_pos = pos.sum().double()
    n_neg = pos.numel() - n_pos
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def macro_ovr_auc(log_proba: torch.Tensor, targets: torch.Tensor, n_classes: int) -> float:
    """Mean over classes of the one-vs-rest AUC of each class's predicted probability (`log_proba` N x C;
    log is monotone, so the AUC is that of the probability), over the classes that occur in `targets` and
    do not fill it (sklearn's `roc_auc_score` of the binarized labels, `average="macro"`)."""
    aucs = []
    for c in range(n_classes):
        positive = targets == c
        if 0 < int(positive.sum()) < positive.numel():
            aucs.append(roc_auc(log_proba[:, c], positive))
    return float(torch.stack(aucs).mean()) if aucs else float("nan")
