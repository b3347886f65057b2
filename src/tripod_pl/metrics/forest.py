"""Random forests built on the tensors' device, for the DCI importance matrix (DESIGN §6).

They follow sklearn's `RandomForestClassifier(criterion="entropy", max_depth=10, max_features="sqrt")`:
each tree is grown on a bootstrap sample (n draws with replacement, kept as integer sample weights); every
node draws `max_features` features without replacement among those not constant in it and takes the
threshold minimizing the weighted child entropy `n_L H(L) + n_R H(R)` (weights = bootstrap counts), among
all midpoints between consecutive distinct training values; a node stops when it is pure, holds a single
distinct sample, or sits at `max_depth`. A feature's importance in a tree is the total impurity decrease
`n H(node) - n_L H(L) - n_R H(R)` of its splits, normalized per tree; the forest's is the mean over the
trees that split at all, normalized again. Prediction averages the trees' leaf class distributions.
The one difference from sklearn: thresholds are midpoints between consecutive distinct values of the whole
training set, where sklearn uses those of the node's samples (they separate the training data identically).

How it runs on a device: the forests of several targets (sources) and all their trees are grown together,
level by level. At each level the (tree, sample) pairs with non-zero bootstrap weight ("entries") are
paired with their node's candidate features ("items"); two sorts of the items give every candidate split
of every node with its child class counts reduced to `sum_c f(n_c)`, `f(x) = x log x`, without a class axis
(see `_best_splits`). Loops run over levels and over batches of targets bounding memory, never per sample,
node or tree.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch


@dataclass
class Forests:
    """Fitted trees of K targets, T trees each, in heap layout (children of node h: 2h+1, 2h+2).

    Tree `k * T + t` is tree t of target k. `feature` is -1 at leaves.
    """

    edges: torch.Tensor  # F x (U - 1): midpoints between consecutive distinct training values, +inf padded
    feature: torch.Tensor  # (K*T) x n_nodes, int64
    threshold: torch.Tensor  # (K*T) x n_nodes, int64: go left when the value's rank <= threshold
    value: torch.Tensor  # (K*T) x n_nodes x C, weighted class counts of the training entries in the node
    importance: torch.Tensor  # K x F, float64, rows sum to 1 (or are 0 when no tree of the target splits)
    n_targets: int
    max_depth: int

    def predict(self, x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """Most probable class (N x K) under the mean over each target's trees of the leaf distributions."""
        ranks = apply_bins(x, self.edges)
        n_trees = self.feature.shape[0]
        proba = self.value / self.value.sum(2, keepdim=True).clamp_min(1e-30)
        tree_idx = torch.arange(n_trees, device=x.device)[:, None]
        out = []
        for start in range(0, ranks.shape[0], chunk):
            rows_t = ranks[start : start + chunk].T.contiguous()  # F x n
            node = torch.zeros(n_trees, rows_t.shape[1], dtype=torch.long, device=x.device)
            for _ in range(self.max_depth):
                feat = torch.gather(self.feature, 1, node)
                thr = torch.gather(self.threshold, 1, node)
                b = torch.gather(rows_t, 0, feat.clamp_min(0))
                child = torch.where(b <= thr, 2 * node + 1, 2 * node + 2)
                node = torch.where(feat >= 0, child, node)
            leaf = proba[tree_idx, node]  # (K*T) x n x C
            mean = leaf.reshape(self.n_targets, -1, *leaf.shape[1:]).mean(1)  # K x n x C
            out.append(mean.argmax(2).T)
        return torch.cat(out)


def bin_edges(x: torch.Tensor) -> torch.Tensor:
    """Midpoints between consecutive distinct values of each feature, +inf padded: F x (max distinct - 1)."""
    xs, _ = torch.sort(x.to(torch.float64), dim=0)
    distinct = torch.ones_like(xs, dtype=torch.bool)
    distinct[1:] = xs[1:] != xs[:-1]
    n_distinct = distinct.sum(0)
    # rank among distinct values, then scatter each distinct value's midpoint with the next into place
    rank = torch.cumsum(distinct.long(), 0) - 1
    width = max(int(n_distinct.max()) - 1, 1)
    edges = torch.full((x.shape[1], width), math.inf, dtype=torch.float64, device=x.device)
    nxt = torch.roll(xs, -1, 0)
    is_last_of_run = torch.ones_like(distinct)
    is_last_of_run[:-1] = distinct[1:]
    has_next = is_last_of_run & (rank < n_distinct - 1)
    f_idx = torch.arange(x.shape[1], device=x.device).expand_as(rank)
    edges[f_idx[has_next], rank[has_next]] = ((xs + nxt) / 2)[has_next]
    return edges


def apply_bins(x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Rank of each value among the edges (number of edges below it), so `x <= edge_b` iff `rank <= b`."""
    return torch.searchsorted(edges, x.to(torch.float64).T.contiguous()).T.contiguous()


def fit_forests(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: torch.Tensor,
    n_trees: int = 100,
    max_depth: int = 10,
    max_features: int | None = None,
    seed: int = 0,
    max_items: int | None = None,
    batch_size: int | None = None,
    workers: int = 1,
) -> Forests:
    """Grow one random forest per column of `y` (N x K class codes, column k < n_classes[k]) on `x`.

    `max_features` defaults to `floor(sqrt(F))` (sklearn's "sqrt"). The targets' forests grow in batches
    of `batch_size` targets (default: as many as keep the (entry, candidate) pairs of a level under
    `max_items`, 2**22 on CPU, 2**27 on GPU), each batch with its own generator seeded from `seed` and its
    first target, on `workers` threads.
    """
    dev = x.device
    n, n_feat = x.shape
    k_targets = y.shape[1]
    m = min(max_features or max(1, int(math.sqrt(n_feat))), n_feat)
    if max_items is None:
        max_items = 2**22 if dev.type == "cpu" else 2**27
    edges = bin_edges(x)
    ranks = apply_bins(x, edges).to(torch.int32)  # N x F
    c = int(n_classes.max())
    n_nodes = 2 ** (max_depth + 1) - 1
    per_batch = batch_size or max(1, min(k_targets, max_items // max(1, n_trees * n * m)))
    feature = torch.full((k_targets * n_trees, n_nodes), -1, dtype=torch.long, device=dev)
    threshold = torch.zeros(k_targets * n_trees, n_nodes, dtype=torch.long, device=dev)
    value = torch.zeros(k_targets * n_trees, n_nodes, c, dtype=torch.float32, device=dev)
    importance = torch.zeros(k_targets, n_feat, dtype=torch.float64, device=dev)

    def grow_batch(k0: int) -> None:
        k1 = min(k0 + per_batch, k_targets)
        rows = slice(k0 * n_trees, k1 * n_trees)
        gen = torch.Generator(device=dev).manual_seed(seed * 1_000_003 + k0)
        imp = _grow(ranks, y[:, k0:k1], c, n_trees, max_depth, m, gen, feature[rows], threshold[rows], value[rows])
        importance[k0:k1] = _forest_importance(imp.reshape(k1 - k0, n_trees, n_feat))

    batches = range(0, k_targets, per_batch)
    if workers > 1 and len(batches) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(grow_batch, batches))
    else:
        for k0 in batches:
            grow_batch(k0)
    return Forests(edges, feature, threshold, value, importance, k_targets, max_depth)


def _grow(
    ranks: torch.Tensor,
    y: torch.Tensor,
    c: int,
    n_trees: int,
    max_depth: int,
    m: int,
    gen: torch.Generator,
    feature: torch.Tensor,
    threshold: torch.Tensor,
    value: torch.Tensor,
) -> torch.Tensor:
    """Grow n_trees trees for each column of y into the given arrays; returns per-tree importances."""
    dev = ranks.device
    n, n_feat = ranks.shape
    n_all = n_trees * y.shape[1]  # trees of this batch; tree i belongs to target i // n_trees
    xlogx = torch.xlogy(*(torch.arange(n + 1, device=dev, dtype=torch.float64),) * 2)  # f on integers
    importance = torch.zeros(n_all, n_feat, dtype=torch.float64, device=dev)

    # bootstrap: the (tree, sample) entries drawn at least once, with their counts as weights
    draws = torch.randint(0, n, (n_all, n), generator=gen, device=dev)
    counts = torch.zeros(n_all, n, dtype=torch.long, device=dev)
    counts.scatter_add_(1, draws, torch.ones_like(draws))
    e_slot, e_sample = torch.nonzero(counts, as_tuple=True)  # at depth 0 the slot is the tree
    e_w = counts[e_slot, e_sample]
    e_y = y[e_sample, e_slot // n_trees].long()
    del draws, counts

    for depth in range(max_depth + 1):
        width = 2**depth  # slot = tree * width + index of the node within its level
        n_slots = n_all * width
        class_w = torch.zeros(n_slots * c, dtype=torch.long, device=dev)
        class_w.index_add_(0, e_slot * c + e_y, e_w)
        class_w = class_w.reshape(n_slots, c)
        value[:, width - 1 : 2 * width - 1] = class_w.reshape(n_all, width, c).float()
        if depth == max_depth:
            break
        w_node = class_w.sum(1)
        node_imp = xlogx[w_node] - xlogx[class_w].sum(1)  # n H(node), in nats
        n_rows = torch.bincount(e_slot, minlength=n_slots)
        active = torch.nonzero((n_rows >= 2) & (node_imp > 1e-9 * w_node))[:, 0]
        n_active = active.numel()
        if n_active == 0:
            break
        compact = torch.full((n_slots,), -1, dtype=torch.long, device=dev)
        compact[active] = torch.arange(n_active, device=dev)
        keep = torch.nonzero(compact[e_slot] >= 0)[:, 0]  # entries of nodes that stay leaves are done
        e_slot, e_sample, e_w, e_y = e_slot[keep], e_sample[keep], e_w[keep], e_y[keep]
        e_comp = compact[e_slot]
        e_ranks = ranks[e_sample]  # E x F

        cand, cand_ok = _draw_candidates(e_comp, e_ranks, n_active, m, gen)
        best_imp, best_item_feat, best_thr = _best_splits(
            e_comp, e_ranks, e_w, e_y, cand, cand_ok, class_w[active], xlogx
        )
        splits = torch.isfinite(best_imp)
        f_best = torch.where(splits, best_item_feat, -1)
        gain = torch.where(splits, (node_imp[active] - best_imp).clamp_min(0.0), 0.0)
        a_tree = active // width
        a_heap = width - 1 + active % width
        feature[a_tree, a_heap] = f_best
        threshold[a_tree, a_heap] = best_thr
        importance.index_put_((a_tree, f_best.clamp_min(0)), gain, accumulate=True)

        # route the entries of split nodes to their children (slot 2s or 2s+1 at the next level)
        e_f = f_best[e_comp]
        go = torch.nonzero(e_f >= 0)[:, 0]
        e_slot, e_sample, e_w, e_y, e_comp = e_slot[go], e_sample[go], e_w[go], e_y[go], e_comp[go]
        r = ranks.reshape(-1)[e_sample * n_feat + e_f[go]]
        e_slot = 2 * e_slot + (r > best_thr[e_comp]).long()
        if e_slot.numel() == 0:
            break
    return importance


def _draw_candidates(
    e_comp: torch.Tensor, e_ranks: torch.Tensor, n_active: int, m: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per node, the features sklearn's splitter evaluates: visit the features in a random order, stop after
    `m` visits, constant features counting as visits, or later if all visited so far were constant.
    Returns `cand` (n_active x m) and `ok` (whether the candidate is evaluated, i.e. not constant)."""
    n_feat = e_ranks.shape[1]
    dev = e_ranks.device
    ref = torch.zeros(n_active, n_feat, dtype=e_ranks.dtype, device=dev)
    ref[e_comp] = e_ranks  # the ranks of some entry of the node (any one will do)
    differs = (e_ranks != ref[e_comp]).to(torch.int32)
    varying = torch.zeros(n_active, n_feat, dtype=torch.int32, device=dev).index_add_(0, e_comp, differs) > 0
    order = torch.argsort(torch.rand(n_active, n_feat, generator=gen, device=dev), dim=1)
    varying = torch.gather(varying, 1, order)
    cand, ok = order[:, :m].clone(), varying[:, :m].clone()
    # all m visits constant: go on to the first varying feature of the order
    late = ~ok.any(1) & varying.any(1)
    first_varying = torch.argmax(varying.to(torch.int8), dim=1)
    cand[:, 0] = torch.where(late, torch.gather(order, 1, first_varying[:, None])[:, 0], cand[:, 0])
    ok[:, 0] |= late
    return cand, ok


def _best_splits(
    e_comp: torch.Tensor,
    e_ranks: torch.Tensor,
    e_w: torch.Tensor,
    e_y: torch.Tensor,
    cand: torch.Tensor,
    cand_ok: torch.Tensor,
    node_counts: torch.Tensor,
    xlogx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per node, the lowest weighted child entropy `n_L H(L) + n_R H(R)` over its candidate features and
    thresholds (inf where no split is valid), with the feature and threshold rank achieving it.

    With integer weights `n H = f(n) - sum_c f(n_c)`, `f(x) = x log x` from a lookup table. The class sums
    need no class axis: sorted by (node, candidate, class, rank), each item (entry, candidate) gets the
    weight `r` of its class before it, and `f(r + w) - f(r)` telescopes, summed over the items at or below
    a threshold, to `sum_c f(n^L_c)`; counted from above, `sum_c f(n^R_c)`. Sorted again by (node,
    candidate, rank), cumulative sums give every threshold's child terms at the end of each run of equal
    ranks, and a segmented minimum picks each node's best.
    """
    dev = e_comp.device
    n_active, m = cand.shape
    n_seg = n_active * m
    c = node_counts.shape[1]
    n_rank = int(e_ranks.max()) + 1
    wb = int(e_w.max()).bit_length()  # bits that hold a weight, packed under the sort keys
    seg = (e_comp[:, None] * m + torch.arange(m, device=dev)).reshape(-1)  # (node, candidate) segment
    group = seg * c + e_y.repeat_interleave(m)  # (segment, class)
    rank = torch.gather(e_ranks, 1, cand[e_comp]).reshape(-1).long()
    w = e_w.repeat_interleave(m)
    # segments and groups are contiguous after sorting; their first positions come from their sizes
    group_size = torch.bincount(group, minlength=n_seg * c)
    group_start = torch.cumsum(group_size, 0) - group_size
    seg_size = group_size.reshape(n_seg, c).sum(1)
    seg_start = torch.cumsum(seg_size, 0) - seg_size

    # order 1: (segment, class, rank); r = weight of the item's class in its segment before the item
    key1 = torch.sort(((group * n_rank + rank) << wb) | w).values
    w1 = key1 & ((1 << wb) - 1)
    key1 = key1 >> wb
    g1, rank1 = key1 // n_rank, key1 % n_rank
    before = torch.cumsum(w1, 0) - w1
    r = before - before[group_start[g1]]
    r_up = node_counts.repeat_interleave(m, dim=0).reshape(-1)[g1] - r - w1  # same class, after the item
    d_left = xlogx[r + w1] - xlogx[r]
    d_right = xlogx[r_up + w1] - xlogx[r_up]
    seg1 = g1 // c
    del before, r, r_up, key1, group

    # order 2: (segment, rank); a threshold after each run of equal ranks
    key2, order2 = torch.sort((((seg1 * n_rank) + rank1) << wb) | w1)
    w2 = key2 & ((1 << wb) - 1)
    key2 = key2 >> wb
    d_left, d_right = d_left[order2], d_right[order2]
    seg2 = key2 // n_rank
    start = seg_start[seg2]
    last_of_run = torch.ones_like(seg2, dtype=torch.bool)
    last_of_run[:-1] = key2[1:] != key2[:-1]

    def seg_cumsum(v: torch.Tensor) -> torch.Tensor:
        cum = torch.cumsum(v, 0)
        return cum - (cum - v)[start]

    n_left = seg_cumsum(w2)
    s_left = seg_cumsum(d_left)
    seg_total = torch.zeros(n_seg, dtype=torch.float64, device=dev).index_add_(0, seg2, d_right)
    s_right = seg_total[seg2] - seg_cumsum(d_right)
    node2 = seg2 // m
    n_right = node_counts.sum(1)[node2] - n_left
    child = xlogx[n_left] - s_left + xlogx[n_right] - s_right
    valid = last_of_run & (n_right > 0) & cand_ok.reshape(-1)[seg2]
    child = torch.where(valid, child, math.inf)

    n_items = child.numel()
    best = torch.full((n_active,), math.inf, dtype=torch.float64, device=dev)
    best = best.scatter_reduce(0, node2, child, reduce="amin")
    winner = torch.where(valid & (child == best[node2]), torch.arange(n_items, device=dev), n_items)
    pick = torch.full((n_active,), n_items, dtype=torch.long, device=dev)
    pick = pick.scatter_reduce(0, node2, winner, reduce="amin").clamp_max(n_items - 1)
    best_feat = torch.gather(cand, 1, (seg2[pick] % m)[:, None])[:, 0]
    best_thr = key2[pick] % n_rank
    return best, best_feat, best_thr


def _forest_importance(per_tree: torch.Tensor) -> torch.Tensor:
    """K x T x F per-tree impurity decreases -> K x F: mean over the trees that split of the per-tree
    normalized importances, normalized (all zeros for a target none of whose trees split)."""
    total = per_tree.sum(2, keepdim=True)
    split = total > 0
    normalized = torch.where(split, per_tree / total.clamp_min(1e-300), 0.0)
    mean = normalized.sum(1) / split.sum(1).clamp_min(1)
    s = mean.sum(1, keepdim=True)
    return torch.where(s > 0, mean / s.clamp_min(1e-300), 0.0)
