"""Random forests built on the tensors' device, for the DCI importance matrix (docs/evaluation.md, "DCI").

They follow sklearn's `RandomForestClassifier(criterion="entropy", max_depth=10, max_features="sqrt")`:
each tree is grown on a bootstrap sample (n draws with replacement, kept as integer sample weights); every
node visits its features in a random order, `max_features` of them (constant ones count as visits; if all
were constant, on to the first non-constant one), and takes the threshold minimizing the weighted child
entropy `n_L H(L) + n_R H(R)` (weights = bootstrap counts) among all midpoints between consecutive
distinct values; a node stops when it is pure, holds a single distinct sample, or sits at `max_depth`.
A feature's importance in a tree is the total impurity decrease `n H(node) - n_L H(L) - n_R H(R)` of its
splits, normalized per tree; the forest's is the mean over the trees that split at all, normalized again.
Prediction averages the trees' leaf class distributions. Differences from sklearn: thresholds are
midpoints between consecutive distinct values of the whole training set, where sklearn uses those of the
node's samples (both separate the training samples identically), and the random streams differ.

How it runs on a device: the forests of several targets (sources) and all their trees are grown together,
level by level. At each level the (tree, sample) pairs with non-zero bootstrap weight ("entries") are
paired with their node's candidate features ("items"), and one of two exact searches scores every
threshold of every candidate of every node at once: dense (node, candidate, value, class) histograms when
features have few distinct values (quantized latents), or two sorts of the items that reduce the children's
class counts to `sum_c f(n_c)`, `f(x) = x log x`, without a class axis (`_best_splits_sorted`). Loops run
over levels, over the rare extra visits of nodes whose drawn features were all constant, and over batches
of targets bounding memory; never per sample, node or tree.
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
    trees_per_task: int | None = None,
    workers: int = 1,
) -> Forests:
    """Grow one random forest per column of `y` (N x K class codes, column k < n_classes[k]) on `x`.

    `max_features` defaults to `floor(sqrt(F))` (sklearn's "sqrt"). The work is split into tasks, each
    with its own generator seeded from `seed` and the task's first target and tree, so that results do
    not depend on `workers`, the number of threads running the tasks:

    - `trees_per_task` set: tasks of that many trees of one target (on CPU, with single-threaded ops,
      small tasks keep the workers balanced);
    - otherwise: all trees of as many targets as keep the (entry, candidate) pairs of a level under
      `max_items` (default 2**22 on CPU, 2**27 on GPU), to fill a GPU.
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
    feature = torch.full((k_targets * n_trees, n_nodes), -1, dtype=torch.long, device=dev)
    threshold = torch.zeros(k_targets * n_trees, n_nodes, dtype=torch.long, device=dev)
    value = torch.zeros(k_targets * n_trees, n_nodes, c, dtype=torch.float32, device=dev)
    per_tree = torch.zeros(k_targets * n_trees, n_feat, dtype=torch.float64, device=dev)

    if trees_per_task:  # (target, first tree, trees)
        tasks = [
            (k, t, 1, min(trees_per_task, n_trees - t))
            for k in range(k_targets)
            for t in range(0, n_trees, trees_per_task)
        ]
    else:  # (first target, tree 0, targets)
        per_batch = max(1, min(k_targets, max_items // max(1, n_trees * n * m)))
        tasks = [(k, 0, min(per_batch, k_targets - k), n_trees) for k in range(0, k_targets, per_batch)]

    def run(task: tuple[int, int, int, int]) -> None:
        k0, t0, n_targets, trees = task
        rows = slice(k0 * n_trees + t0, (k0 + n_targets - 1) * n_trees + t0 + trees)  # contiguous: see tasks
        gen = torch.Generator(device=dev).manual_seed((seed * 1_000_003 + k0) * 10_007 + t0)
        per_tree[rows] = _grow(
            ranks, y[:, k0 : k0 + n_targets], c, trees, max_depth, m, gen, feature[rows], threshold[rows], value[rows]
        )

    if workers > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, tasks))
    else:
        for task in tasks:
            run(task)
    importance = _forest_importance(per_tree.reshape(k_targets, n_trees, n_feat))
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
    """Grow n_trees trees for each column of y into the given arrays; returns per-tree importances.

    Entry arrays are int32 and gathers use `index_select` (several times faster on CPU than indexing).
    """
    dev = ranks.device
    n, n_feat = ranks.shape
    i32 = torch.int32
    n_all = n_trees * y.shape[1]  # trees of this batch; tree i belongs to target i // n_trees
    xlogx = torch.xlogy(*(torch.arange(n + 1, device=dev, dtype=torch.float64),) * 2)  # f on integers
    importance = torch.zeros(n_all, n_feat, dtype=torch.float64, device=dev)

    # bootstrap: the (tree, sample) entries drawn at least once, with their counts as weights
    draws = torch.randint(0, n, (n_all, n), generator=gen, device=dev)
    counts = torch.zeros(n_all, n, dtype=i32, device=dev)
    counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=i32))
    del draws
    flat = torch.nonzero(counts.reshape(-1))[:, 0]
    e_w = _take(counts.reshape(-1), flat)
    e_slot = (flat // n).to(i32)  # at depth 0 the slot is the tree
    e_sample = (flat % n).to(i32)
    e_y = _take(y.to(i32).T.reshape(-1), (e_slot // n_trees) * n + e_sample)
    del counts, flat

    for depth in range(max_depth + 1):
        width = 2**depth  # slot = tree * width + index of the node within its level
        n_slots = n_all * width
        class_w = torch.zeros(n_slots * c, dtype=i32, device=dev)
        class_w.index_add_(0, e_slot * c + e_y, e_w)
        class_w = class_w.reshape(n_slots, c)
        value[:, width - 1 : 2 * width - 1] = class_w.reshape(n_all, width, c).float()
        if depth == max_depth:
            break
        w_node = class_w.sum(1, dtype=i32)
        node_imp = _take(xlogx, w_node) - _take(xlogx, class_w).sum(1)  # n H(node), in nats
        n_rows = torch.bincount(e_slot, minlength=n_slots)
        active = torch.nonzero((n_rows >= 2) & (node_imp > 1e-9 * w_node))[:, 0]
        n_active = active.numel()
        if n_active == 0:
            break
        compact = torch.full((n_slots,), -1, dtype=i32, device=dev)
        compact[active] = torch.arange(n_active, device=dev, dtype=i32)
        e_comp = _take(compact, e_slot)
        keep = torch.nonzero(e_comp >= 0)[:, 0]  # entries of nodes that stay leaves are done
        e_slot, e_sample, e_w, e_y, e_comp = (_take(a, keep) for a in (e_slot, e_sample, e_w, e_y, e_comp))
        best_imp, f_best, best_thr = _split_nodes(
            e_comp, e_sample, e_w, e_y, ranks, class_w.index_select(0, active), xlogx, m, gen
        )
        splits = f_best >= 0
        gain = torch.where(splits, (node_imp[active] - best_imp).clamp_min(0.0), 0.0)
        a_tree = active // width
        a_heap = width - 1 + active % width
        feature[a_tree, a_heap] = f_best
        threshold[a_tree, a_heap] = best_thr
        importance.index_put_((a_tree, f_best.clamp_min(0)), gain, accumulate=True)

        # route the entries of split nodes to their children (slot 2s or 2s+1 at the next level)
        e_f = _take(f_best.to(i32), e_comp)
        go = torch.nonzero(e_f >= 0)[:, 0]
        e_slot, e_sample, e_w, e_y, e_comp, e_f = (_take(a, go) for a in (e_slot, e_sample, e_w, e_y, e_comp, e_f))
        r = _take(ranks.reshape(-1), e_sample * n_feat + e_f)
        e_slot = 2 * e_slot + (r > _take(best_thr.to(i32), e_comp)).to(i32)
        if e_slot.numel() == 0:
            break
    return importance


def _take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`table[index]` for a 1-D table, through `index_select` (several times faster on CPU)."""
    return table.index_select(0, index.reshape(-1)).reshape(index.shape)


def _split_nodes(
    e_comp: torch.Tensor,
    e_sample: torch.Tensor,
    e_w: torch.Tensor,
    e_y: torch.Tensor,
    ranks: torch.Tensor,
    node_counts: torch.Tensor,
    xlogx: torch.Tensor,
    m: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best split of each active node among the features sklearn's splitter evaluates: the features are
    visited in a random order, `m` of them, constant ones counting as visits; if all `m` were constant the
    visit goes on to the first non-constant one. A feature is constant in a node exactly when it offers no
    valid threshold, so the search itself tells, and only such nodes need a further round.

    Returns the lowest child impurity (inf where the node cannot be split), its feature (-1 there) and
    threshold rank.
    """
    dev = e_comp.device
    n_active = node_counts.shape[0]
    n_feat = ranks.shape[1]
    order = torch.argsort(torch.rand(n_active, n_feat, generator=gen, device=dev), dim=1).to(torch.int32)
    best = torch.full((n_active,), math.inf, dtype=torch.float64, device=dev)
    feat = torch.full((n_active,), -1, dtype=torch.long, device=dev)
    thr = torch.zeros(n_active, dtype=torch.long, device=dev)
    nodes = torch.arange(n_active, device=dev)  # nodes (compact ids) still searching
    for lo in range(0, n_feat, m):
        hi = min(lo + m, n_feat)
        cand = order[nodes, lo:hi]  # n_nodes x k
        # ranks of the entries on their node's candidates, E x k
        rank = _take(ranks.reshape(-1), e_sample[:, None] * n_feat + cand.index_select(0, e_comp))
        counts = node_counts.index_select(0, nodes)
        n_rank = int(rank.max()) + 1
        c = counts.shape[1]
        dense = len(nodes) * (hi - lo) * n_rank * c <= 24 * rank.numel()  # the cheaper search (CPU-measured)
        search = _best_splits_dense if dense else _best_splits_sorted
        child, child_thr = search(e_comp, rank, e_w, e_y, counts, xlogx, n_rank)  # n_nodes x k
        finite = torch.isfinite(child)
        if lo == 0:  # first visits: the best of the non-constant ones
            k = child.argmin(1)
        else:  # later visits: the first non-constant one
            k = torch.argmax(finite.to(torch.int8), dim=1)
        found = finite.any(1)
        best[nodes] = torch.where(found, torch.gather(child, 1, k[:, None])[:, 0], math.inf)
        feat[nodes] = torch.where(found, torch.gather(cand, 1, k[:, None])[:, 0].long(), -1)
        thr[nodes] = torch.gather(child_thr, 1, k[:, None])[:, 0]
        # nodes whose visited features were all constant go on with the next ones
        late = torch.nonzero(~found)[:, 0]
        if late.numel() == 0 or hi == n_feat:
            break
        position = torch.full((len(nodes),), -1, dtype=torch.int32, device=dev)
        position[late] = torch.arange(late.numel(), device=dev, dtype=torch.int32)
        e_comp = _take(position, e_comp)
        keep = torch.nonzero(e_comp >= 0)[:, 0]
        e_comp, e_sample, e_w, e_y = (_take(a, keep) for a in (e_comp, e_sample, e_w, e_y))
        nodes = nodes[late]
    return best, feat, thr


def _best_splits_dense(
    e_comp: torch.Tensor,
    rank: torch.Tensor,
    e_w: torch.Tensor,
    e_y: torch.Tensor,
    node_counts: torch.Tensor,
    xlogx: torch.Tensor,
    n_rank: int,
    max_cells: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """As `_best_splits_sorted`, from dense (node, candidate, rank, class) weight histograms, whose
    cumulative sums over ranks are the left children's class weights at every threshold. The cheaper
    search when features have few distinct values; nodes go in chunks of at most `max_cells` cells
    (default 2**22 on CPU, 2**26 on GPU). Counts are int32 and the x log x terms float32 (their sums are
    compared, not accumulated)."""
    dev = e_comp.device
    if max_cells is None:
        max_cells = 2**22 if dev.type == "cpu" else 2**26
    i32 = torch.int32
    n_nodes, c = node_counts.shape
    k = rank.shape[1]
    xlogx32 = xlogx.float()
    w_node = node_counts.sum(1, dtype=i32)
    best = torch.empty(n_nodes, k, dtype=torch.float64, device=dev)
    thr = torch.empty(n_nodes, k, dtype=torch.long, device=dev)
    per_chunk = max(1, max_cells // (k * n_rank * c))
    # cell of each item: ((node * k + candidate) * n_rank + rank) * c + class, relative to the chunk
    item_cell = (rank + torch.arange(k, device=dev, dtype=i32) * n_rank) * c + e_y[:, None]
    node_cells = k * n_rank * c
    for a0 in range(0, n_nodes, per_chunk):
        a1 = min(a0 + per_chunk, n_nodes)
        if a0 == 0 and a1 == n_nodes:
            comp, cells, w = e_comp, item_cell, e_w
        else:
            sel = torch.nonzero((e_comp >= a0) & (e_comp < a1))[:, 0]
            comp, cells, w = _take(e_comp, sel) - a0, item_cell.index_select(0, sel), _take(e_w, sel)
        cells = cells + (comp * node_cells)[:, None]
        hist = torch.zeros((a1 - a0) * node_cells, dtype=i32, device=dev)
        hist.index_add_(0, cells.reshape(-1), w.repeat_interleave(k))
        left = hist.reshape(a1 - a0, k, n_rank, c).cumsum(2, dtype=i32)  # class weights <= rank
        s_left = _take(xlogx32, left).sum(3)
        s_right = _take(xlogx32, node_counts[a0:a1, None, None, :] - left).sum(3)
        n_left = left.sum(3, dtype=i32)
        n_right = w_node[a0:a1, None, None] - n_left
        child = _take(xlogx32, n_left) - s_left + _take(xlogx32, n_right) - s_right
        child = torch.where((n_left > 0) & (n_right > 0), child, math.inf)
        value, index = child.min(2)
        best[a0:a1], thr[a0:a1] = value.double(), index
    return best, thr


def _best_splits_sorted(
    e_comp: torch.Tensor,
    rank: torch.Tensor,
    e_w: torch.Tensor,
    e_y: torch.Tensor,
    node_counts: torch.Tensor,
    xlogx: torch.Tensor,
    n_rank: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each node and candidate feature (column of `rank`, the entries' ranks on the node's candidates),
    the lowest weighted child entropy `n_L H(L) + n_R H(R)` over thresholds (inf where none is valid,
    i.e. the feature is constant in the node) and the threshold rank achieving it (left: rank <= it).

    With integer weights `n H = f(n) - sum_c f(n_c)`, `f(x) = x log x` from a lookup table. The class sums
    need no class axis: sorted by (node, candidate, class, rank), each item (entry, candidate) gets the
    weight `r` of its class before it, and `f(r + w) - f(r)` telescopes, summed over the items at or below
    a threshold, to `sum_c f(n^L_c)`; counted from above, `sum_c f(n^R_c)`. Sorted again by (node,
    candidate, rank), cumulative sums give every threshold's child terms at the end of each run of equal
    ranks, and a segmented minimum picks the best. Sort keys pack (segment, class, rank, weight) in
    power-of-two fields, so that unpacking takes shifts, not divisions.
    """
    dev = e_comp.device
    n_nodes, c = node_counts.shape
    m = rank.shape[1]
    n_seg = n_nodes * m
    wb = int(e_w.max()).bit_length()
    rb = max(1, (n_rank - 1).bit_length())
    cb = max(1, (c - 1).bit_length())
    wmask, rmask = (1 << wb) - 1, (1 << rb) - 1
    seg = e_comp[:, None] * m + torch.arange(m, device=dev, dtype=torch.int32)  # (node, candidate)
    group = ((seg << cb) | e_y[:, None]).reshape(-1)  # (segment, class)
    # segments and groups are contiguous after sorting; their first positions come from their sizes
    group_size = torch.bincount(group, minlength=n_seg << cb)
    group_start = torch.cumsum(group_size, 0) - group_size
    seg_size = group_size.reshape(n_seg, 1 << cb).sum(1)
    seg_start = torch.cumsum(seg_size, 0) - seg_size
    class_total = torch.zeros(n_nodes, 1 << cb, dtype=torch.long, device=dev)
    class_total[:, :c] = node_counts
    class_total = class_total.repeat_interleave(m, dim=0).reshape(-1)  # per (segment, class)

    # order 1: (segment, class, rank); r = weight of the item's class in its segment before the item
    key = ((group.long() << rb) | rank.reshape(-1)) << wb | e_w.repeat_interleave(m)
    del group
    key = torch.sort(key).values
    w1 = key & wmask
    key = key >> wb
    rank1, g1 = key & rmask, key >> rb
    before = torch.cumsum(w1, 0) - w1
    r = before - _take(before, _take(group_start, g1))
    r_up = _take(class_total, g1) - r - w1  # weight of the item's class after it
    d_left = _take(xlogx, r + w1) - _take(xlogx, r)
    d_right = _take(xlogx, r_up + w1) - _take(xlogx, r_up)
    del before, r, r_up
    key = (((g1 >> cb) << rb | rank1) << wb) | w1
    del g1, rank1, w1

    # order 2: (segment, rank); a threshold after each run of equal ranks
    key, order2 = torch.sort(key)
    w2 = key & wmask
    key = key >> wb
    d_left, d_right = _take(d_left, order2), _take(d_right, order2)
    del order2
    seg2 = key >> rb
    start = _take(seg_start, seg2)
    last_of_run = torch.ones_like(seg2, dtype=torch.bool)
    last_of_run[:-1] = key[1:] != key[:-1]

    def seg_cumsum(v: torch.Tensor) -> torch.Tensor:
        cum = torch.cumsum(v, 0)
        return cum - _take(cum - v, start)

    n_left = seg_cumsum(w2)
    s_left = seg_cumsum(d_left)
    s_right = _take(torch.segment_reduce(d_right, "sum", lengths=seg_size), seg2) - seg_cumsum(d_right)
    n_right = _take(node_counts.sum(1).repeat_interleave(m), seg2) - n_left
    child = _take(xlogx, n_left) - s_left + _take(xlogx, n_right) - s_right
    valid = last_of_run & (n_right > 0)
    child = torch.where(valid, child, math.inf)

    n_items = child.numel()
    best = torch.segment_reduce(child, "min", lengths=seg_size)  # inf for an empty segment
    winner = torch.where(valid & (child == _take(best, seg2)), torch.arange(n_items, device=dev), n_items)
    pick = torch.segment_reduce(winner.double(), "min", lengths=seg_size).long().clamp(0, n_items - 1)
    return best.reshape(n_nodes, m), (_take(key, pick) & rmask).reshape(n_nodes, m)


def _forest_importance(per_tree: torch.Tensor) -> torch.Tensor:
    """K x T x F per-tree impurity decreases -> K x F: mean over the trees that split of the per-tree
    normalized importances, normalized (all zeros for a target none of whose trees split)."""
    total = per_tree.sum(2, keepdim=True)
    split = total > 0
    normalized = torch.where(split, per_tree / total.clamp_min(1e-300), 0.0)
    mean = normalized.sum(1) / split.sum(1).clamp_min(1)
    s = mean.sum(1, keepdim=True)
    return torch.where(s > 0, mean / s.clamp_min(1e-300), 0.0)
