"""Factor values to indices (rank among sorted unique values) and the factorial-order check."""

from __future__ import annotations

import numpy as np
import pytest

from tripod_pl.data import DatasetError
from tripod_pl.data.prepare.factors import check_factorial_order, factorial_indices, values_to_indices


def test_values_map_to_their_rank_among_sorted_unique_values() -> None:
    values = np.array([[0.5, -3.0], [0.1, 7.0], [0.3, -3.0], [0.1, 2.5]])
    indices = values_to_indices(values, ["a", "b"], [3, 3], "f")
    np.testing.assert_array_equal(indices, [[2, 0], [0, 2], [1, 0], [0, 1]])


def test_wrong_number_of_values_names_the_factor() -> None:
    values = np.array([[0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(DatasetError, match="f: factor 'b' has 1 distinct values, expected 2"):
        values_to_indices(values, ["a", "b"], [2, 2], "f")


def test_nan_labels_are_refused() -> None:
    with pytest.raises(DatasetError, match="NaN"):
        values_to_indices(np.array([[np.nan], [1.0]]), ["a"], [2], "f")


def test_factorial_indices_are_row_major() -> None:
    np.testing.assert_array_equal(factorial_indices(2, 5, [2, 3]), [[0, 2], [1, 0], [1, 1]])


def test_grid_in_order_passes() -> None:
    check_factorial_order(factorial_indices(0, 24, [2, 3, 4]), ["a", "b", "c"], [2, 3, 4], "f")


def test_swapped_rows_name_the_first_wrong_row_and_factor() -> None:
    indices = factorial_indices(0, 24, [2, 3, 4])
    indices[[5, 9]] = indices[[9, 5]]
    with pytest.raises(DatasetError, match="row 5 has factor 'b' at index 2, expected 1"):
        check_factorial_order(indices, ["a", "b", "c"], [2, 3, 4], "f")


def test_row_count_must_match_the_grid() -> None:
    with pytest.raises(DatasetError, match="has 23 rows, but the factor sizes 2 x 3 x 4 make 24"):
        check_factorial_order(factorial_indices(0, 23, [2, 3, 4]), ["a", "b", "c"], [2, 3, 4], "f")
