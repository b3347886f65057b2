"""The device-side random forest behind DCI: exact thresholds, sklearn's split semantics, both searches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier

from tripod_pl.metrics import forest as F


def _xlogx(n: int) -> torch.Tensor:
    a = torch.arange(n + 1, dtype=torch.float64)
    return torch.xlogy(a, a)


def test_edges_are_midpoints_and_ranks_reproduce_the_order():
    x = torch.tensor([[3.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]], dtype=torch.float64)
    edges = F.bin_edges(x)
    assert edges[0, :2].tolist() == [1.5, 2.5] and edges[1].isinf().all()
    assert F.apply_bins(x, edges).tolist() == [[2, 0], [0, 0], [1, 0], [2, 0]]
    # a test value between training values falls on the side its midpoint says
    assert F.apply_bins(torch.tensor([[1.6, 5.0]], dtype=torch.float64), edges).tolist() == [[1, 0]]


def _search_inputs(seed: int, n_rank: int, n_nodes: int = 40, c: int = 4, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    e = 900
    e_comp = torch.randint(0, n_nodes, (e,), generator=g, dtype=torch.int32)
    rank = torch.randint(0, n_rank, (e, k), generator=g, dtype=torch.int32)
    rank[e_comp == 0] = 2  # node 0: every candidate constant
    e_w = torch.randint(1, 4, (e,), generator=g, dtype=torch.int32)
    e_y = torch.randint(0, c, (e,), generator=g, dtype=torch.int32)
    counts = torch.zeros(n_nodes * c, dtype=torch.long).index_add_(0, (e_comp * c + e_y).long(), e_w.long())
    return e_comp, rank, e_w, e_y, counts.reshape(n_nodes, c), _xlogx(int(e_w.sum())), n_rank


def _brute_force_best(e_comp, rank, e_w, e_y, counts, n_rank):
    """Weighted child entropy n_L H(L) + n_R H(R) at every threshold, by direct counting."""
    n_nodes, c = counts.shape
    best = np.full((n_nodes, rank.shape[1]), np.inf)
    for a in range(n_nodes):
        rows = (e_comp == a).numpy()
        for j in range(rank.shape[1]):
            for t in range(n_rank - 1):
                left = rows & (rank[:, j] <= t).numpy()
                right = rows & ~left
                if not left.any() or not right.any():
                    continue
                imp = 0.0
                for side in (left, right):
                    cw = np.bincount(e_y.numpy()[side], e_w.numpy()[side], minlength=c)
                    cw = cw[cw > 0]
                    imp += cw.sum() * math.log(cw.sum()) - (cw * np.log(cw)).sum()
                best[a, j] = min(best[a, j], imp)
    return best


@pytest.mark.parametrize("search", [F._best_splits_dense, F._best_splits_sorted], ids=["dense", "sorted"])
def test_split_search_finds_the_lowest_child_entropy(search):
    inputs = _search_inputs(0, n_rank=7)
    best, thr = search(*inputs)
    e_comp, rank, e_w, e_y, counts, _, n_rank = inputs
    expected = _brute_force_best(e_comp, rank, e_w, e_y, counts, n_rank)
    np.testing.assert_allclose(best.numpy(), expected, rtol=1e-5)
    assert best[0].isinf().all()  # constant candidates offer no threshold
    assert ((thr >= 0) & (thr < n_rank - 1))[1:].all()


def test_dense_and_sorted_searches_choose_the_same_thresholds():
    inputs = _search_inputs(1, n_rank=12)
    best_d, thr_d = F._best_splits_dense(*inputs)
    best_s, thr_s = F._best_splits_sorted(*inputs)
    np.testing.assert_allclose(best_d.numpy(), best_s.numpy(), rtol=1e-5)
    finite = torch.isfinite(best_s)
    assert (thr_d[finite] == thr_s[finite]).float().mean() > 0.95  # all but float32 near-ties


def test_nodes_whose_drawn_features_are_constant_go_on_to_a_varying_one():
    """sklearn visits max_features features, constant ones counting, and more only if all were constant."""
    n, n_feat = 64, 4
    ranks = torch.zeros(n, n_feat, dtype=torch.int32)
    ranks[:, 3] = torch.arange(n, dtype=torch.int32) % 2  # only feature 3 varies
    y = ranks[:, 3].clone()
    e_comp = torch.arange(n, dtype=torch.int32) // 8  # 8 nodes of 8 entries
    counts = torch.zeros(8 * 2, dtype=torch.long).index_add_(
        0, (e_comp * 2 + y).long(), torch.ones(n, dtype=torch.long)
    )
    args = (e_comp, torch.arange(n, dtype=torch.int32), torch.ones(n, dtype=torch.int32), y, ranks)
    best, feat, thr = F._split_nodes(*args, counts.reshape(8, 2), _xlogx(n), 1, torch.Generator().manual_seed(0))
    assert (feat == 3).all() and (best == 0).all() and (thr == 0).all()


def test_forest_learns_a_threshold_rule_and_credits_its_feature():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1200, 4))
    y = np.stack([(x[:, 1] > 0.3).astype(int), (x[:, 2] > -0.5).astype(int) + (x[:, 2] > 0.5)], 1)
    forests = F.fit_forests(torch.as_tensor(x[:1000]), torch.as_tensor(y[:1000]), torch.tensor([2, 3]), n_trees=20)
    pred = forests.predict(torch.as_tensor(x[1000:])).numpy()
    assert (pred == y[1000:]).mean(0).min() > 0.97
    imp = forests.importance.numpy()
    assert imp[0, 1] > 0.9 and imp[1, 2] > 0.9
    np.testing.assert_allclose(imp.sum(1), 1.0)


def test_trees_stop_at_max_depth_and_are_deterministic_given_the_seed():
    rng = np.random.default_rng(0)
    x, y = torch.as_tensor(rng.standard_normal((500, 6))), torch.as_tensor(rng.integers(0, 5, (500, 1)))
    a = F.fit_forests(x, y, torch.tensor([5]), n_trees=10, max_depth=4, seed=3)
    b = F.fit_forests(x, y, torch.tensor([5]), n_trees=10, max_depth=4, seed=3)
    c = F.fit_forests(x, y, torch.tensor([5]), n_trees=10, max_depth=4, seed=4)
    assert a.feature.shape[1] == 2**5 - 1
    assert (a.feature[:, 2**4 - 1 :] == -1).all()  # the deepest level holds leaves only
    assert (a.feature[:, : 2**4 - 1] >= 0).float().mean() > 0.75  # random labels: trees grow nearly full
    assert torch.equal(a.feature, b.feature) and torch.equal(a.importance, b.importance)
    assert not torch.equal(a.feature, c.feature)


def test_forest_importances_and_accuracy_match_sklearn():
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 6, n)
    informative = np.stack([y + 1.5 * rng.standard_normal(n), y + 3 * rng.standard_normal(n)], 1)
    x = np.concatenate([informative, rng.standard_normal((n, 4))], 1)
    train, test = slice(0, 1800), slice(1800, None)
    ours = F.fit_forests(torch.as_tensor(x[train]), torch.as_tensor(y[train, None]), torch.tensor([6]))
    ref = RandomForestClassifier(100, criterion="entropy", max_depth=10, random_state=0).fit(x[train], y[train])
    np.testing.assert_allclose(ours.importance[0].numpy(), ref.feature_importances_, atol=0.02)
    acc_ours = (ours.predict(torch.as_tensor(x[test]))[:, 0].numpy() == y[test]).mean()
    assert abs(acc_ours - (ref.predict(x[test]) == y[test]).mean()) < 0.04


def test_batches_of_targets_do_not_change_what_each_forest_learns():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((400, 5)))
    y = torch.as_tensor(rng.integers(0, 3, (400, 3)))
    one = F.fit_forests(x, y, torch.tensor([3, 3, 3]), n_trees=10, trees_per_task=4)
    threaded = F.fit_forests(x, y, torch.tensor([3, 3, 3]), n_trees=10, trees_per_task=4, workers=2)
    assert torch.equal(one.importance, threaded.importance) and torch.equal(one.feature, threaded.feature)


def test_forest_importance_of_trees_that_never_split_is_zero():
    per_tree = torch.zeros(2, 3, 4, dtype=torch.float64)
    per_tree[1, 0] = torch.tensor([1.0, 3.0, 0.0, 0.0])
    imp = F._forest_importance(per_tree)
    assert imp[0].eq(0).all()
    np.testing.assert_allclose(imp[1].numpy(), [0.25, 0.75, 0, 0])  # only the tree that split counts
