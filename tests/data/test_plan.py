"""The training order as pure index arithmetic: sharding, shuffling, contiguity, validation split."""

from __future__ import annotations

import numpy as np
import pytest

from tripod_pl.data.plan import PlanConfig, Runs, TrainPlan, rows_to_runs, validation_mask

N = 1000


def _plans(mask: np.ndarray, world: int, **config) -> list[TrainPlan]:
    cfg = PlanConfig(**{"batch_size": 8, "block_rows": 16, "shuffle_blocks": 4, **config})
    return [TrainPlan(mask, cfg, rank, world) for rank in range(world)]


def _epoch(plans: list[TrainPlan], epoch: int, workers: int) -> list[list[np.ndarray]]:
    return [p.batch_rows(epoch, workers) for p in plans]


def test_every_training_row_exactly_once_over_2_ranks_x_2_workers() -> None:
    mask = ~validation_mask(N, 0.1, seed=0, unit_rows=10)
    plans = _plans(mask, world=2, drop_last=False)
    assert mask.sum() == 900  # even: no padding needed
    batches = _epoch(plans, 0, workers=2)
    assert len(batches[0]) == len(batches[1])
    rows = np.concatenate([b for rank in batches for b in rank])
    assert len(rows) == mask.sum()
    np.testing.assert_array_equal(np.sort(rows), np.flatnonzero(mask))


def test_drop_last_gives_full_equal_batches_and_drops_fewer_than_a_global_batch() -> None:
    mask = ~validation_mask(N, 0.05, seed=1)
    plans = _plans(mask, world=2, drop_last=True)
    dropped = []
    for epoch in range(3):
        batches = _epoch(plans, epoch, workers=2)
        assert len(batches[0]) == len(batches[1]) == mask.sum() // 16
        assert all(len(b) == 8 for rank in batches for b in rank)
        rows = np.concatenate([b for rank in batches for b in rank])
        assert len(np.unique(rows)) == len(rows)
        missing = np.setdiff1d(np.flatnonzero(mask), rows)
        assert len(missing) == mask.sum() - len(rows) < 16
        dropped.append(set(missing.tolist()))
    assert dropped[0] != dropped[1]


def test_padding_repeats_fewer_rows_than_ranks() -> None:
    mask = np.ones(101, dtype=bool)
    plans = _plans(mask, world=3, drop_last=False)
    batches = _epoch(plans, 0, workers=2)
    assert len({len(rank) for rank in batches}) == 1
    rows = np.concatenate([b for rank in batches for b in rank])
    assert set(rows.tolist()) == set(range(101))
    assert len(rows) - 101 == 1


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_order_changes_every_epoch_and_is_reproducible(workers: int) -> None:
    mask = np.ones(N, dtype=bool)
    (plan,) = _plans(mask, world=1)
    (again,) = _plans(mask, world=1)
    e0, e1 = plan.batch_rows(0, workers), plan.batch_rows(1, workers)
    assert not all(np.array_equal(a, b) for a, b in zip(e0, e1))
    assert all(np.array_equal(a, b) for a, b in zip(e0, again.batch_rows(0, workers)))
    (other_seed,) = _plans(mask, world=1, seed=7)
    assert not all(np.array_equal(a, b) for a, b in zip(e0, other_seed.batch_rows(0, workers)))


def test_batches_mix_many_blocks() -> None:
    (plan,) = _plans(np.ones(N, dtype=bool), world=1)
    blocks_per_batch = [len(np.unique(b // 16)) for b in plan.batch_rows(0, 2)[:-2]]
    assert np.mean(blocks_per_batch) >= 3.5  # 8 rows drawn from a window of 4 blocks


def test_windows_read_contiguous_runs_inside_blocks() -> None:
    mask = ~validation_mask(N, 0.2, seed=2, unit_rows=5)
    (plan,) = _plans(mask, world=1)
    for worker in range(2):
        for runs, order in plan.worker_windows(3, worker, 2):
            assert runs.total == len(order) <= plan.config.window_rows
            assert np.all(runs.start // 16 == (runs.stop - 1) // 16)  # no run crosses a block boundary
            assert mask[runs.rows()].all()
            np.testing.assert_array_equal(np.sort(order), np.arange(len(order)))


def test_skipped_rows_count_whole_batches_of_the_worker() -> None:
    (plan,) = _plans(np.ones(100, dtype=bool), world=1, drop_last=False)
    assert plan.num_batches == 13 and plan.batch_sizes[-1] == 4
    assert plan.skipped_rows(0, 2, 5) == 3 * 8  # batches 0, 2, 4
    assert plan.skipped_rows(1, 2, 5) == 2 * 8  # batches 1, 3


def test_too_few_images_for_a_global_batch() -> None:
    with pytest.raises(ValueError, match="too few"):
        _plans(np.ones(15, dtype=bool), world=2, drop_last=True)


def test_validation_split_is_spread_over_the_file_in_contiguous_units() -> None:
    mask = validation_mask(10_000, 0.05, seed=0)  # units of 500 // 32 = 15 rows
    assert abs(mask.sum() - 500) <= 15
    runs = rows_to_runs(np.flatnonzero(mask))
    assert (runs.stop - runs.start).min() >= 15
    assert mask[:5000].any() and mask[5000:].any()
    np.testing.assert_array_equal(mask, validation_mask(10_000, 0.05, seed=0))
    assert not np.array_equal(mask, validation_mask(10_000, 0.05, seed=1))


def test_validation_split_of_a_tiny_file_uses_single_rows() -> None:
    mask = validation_mask(40, 0.1, seed=0)
    assert mask.sum() == 4 and not mask.all()
    assert not validation_mask(40, 0.0, seed=0).any()
    with pytest.raises(ValueError):
        validation_mask(40, 1.0, seed=0)


def test_runs_round_trip() -> None:
    rows = np.array([0, 1, 2, 5, 6, 15, 16, 17, 40])
    runs = rows_to_runs(rows, block_rows=16)
    np.testing.assert_array_equal(runs.start, [0, 5, 15, 16, 40])
    np.testing.assert_array_equal(runs.stop, [3, 7, 16, 18, 41])
    np.testing.assert_array_equal(runs.rows(), rows)
    assert Runs(np.zeros(0, np.int64), np.zeros(0, np.int64)).rows().size == 0
