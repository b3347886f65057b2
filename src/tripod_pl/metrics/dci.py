"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams, ICLR 2018) — docs/evaluation.md, "DCI".

Per source s_i, a random forest (100 trees, entropy criterion, max depth 10) predicts s_i from the
standardized latents, trained on 90% of the samples; its impurity-based feature importances form column i of
the importance matrix R (n_z x K), its accuracy on the other 10% is the source's informativeness.

    D = sum_j rho_j (1 - H_K(R_j.)),   C = sum_i rho_i (1 - H_L(R_.i)),   I = mean_i accuracy_i,

H_K, H_L the entropies of the normalized row / column in base K / L (L = n_z), rho_j, rho_i the shares of
latent j / source i in the total importance. The torch backend grows the forests on the device
(`forest.py`); the split is sklearn's `train_test_split(test_size=0.1, random_state=seed)` in both
backends. Example::

    scores = dci(sources, latents)  # {"d", "c", "i"} floats, "importance" (n_z x K), "accuracy", "chance" (K)
"""

from __future__ import annotations

import numpy as np
import torch

from tripod_pl.metrics import _common as common
from tripod_pl.metrics.forest import fit_forests


def dci(
    sources: common.ArrayLike,
    latents: common.ArrayLike,
    backend: str = "torch",
    *,
    n_estimators: int = 100,
    max_depth: int = 10,
    test_size: float = 0.1,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict:
    """D, C, I and the importance matrix of `latents` (N x n_z) for `sources` (N x K integer values).

    `backend="torch"` computes on the device of the inputs (or `device`), `backend="sklearn"` with
    sklearn's RandomForestClassifier. `seed` fixes the split and the forests. Returns `{"d", "c", "i"}` as
    floats, `"importance"` (n_z x K float64 array; a source with a single value gets a zero column and
    is left out of the scores), and per source `"accuracy"` (its forest's test accuracy, the terms of I; 1 for
    a single-valued source) and `"chance"` (the test accuracy of always predicting its most frequent training
    value), K float64 arrays: how much of each source all latents together hold, against guessing.
    """
    if backend == "sklearn":
        from tripod_pl.metrics import _sklearn

        return _sklearn.dci(
            sources, latents, n_estimators=n_estimators, max_depth=max_depth, test_size=test_size, seed=seed
        )
    if backend != "torch":
        raise ValueError(f"unknown backend {backend!r}; use 'torch' or 'sklearn'")
    with common.metric_inputs(sources, latents, device) as (s, z, n_threads):
        s_codes, s_n = common.label_codes(s)
        valid = common.valid_sources(s_n.cpu().numpy())
        split = common.train_test_indices(len(z), test_size, seed)
        train, test = (torch.as_tensor(i, device=z.device) for i in split)
        z = common.standardize(z)
        keep = torch.as_tensor(np.flatnonzero(valid), device=z.device)
        importance = np.zeros((z.shape[1], s.shape[1]))
        accuracy = np.ones(s.shape[1])
        if len(keep):
            # on CPU tasks of 10 trees on worker threads (sklearn's n_jobs strategy; small tasks stay in
            # cache and balance the workers); on a GPU all forests in one batch
            on_cpu = z.device.type == "cpu"
            forests = fit_forests(
                z[train],
                s_codes[train][:, keep],
                s_n[keep],
                n_trees=n_estimators,
                max_depth=max_depth,
                seed=seed,
                trees_per_task=10 if on_cpu else None,
                workers=n_threads if on_cpu else 1,
            )
            pred = forests.predict(z[test])
            acc = (pred == s_codes[test][:, keep]).double().mean(0)
            importance[:, valid] = forests.importance.T.cpu().numpy()
            accuracy[valid] = acc.cpu().numpy()
        codes = s_codes.cpu().numpy()
        chance = common.majority_accuracy(codes[split[0]], codes[split[1]])
    scores = common.dci_scores(importance, accuracy, valid)
    return {**scores, "importance": importance, "accuracy": accuracy, "chance": chance}
