"""The shared random splits: named results, keyword-only options, reproducible from the seed."""

from __future__ import annotations

import numpy as np
import pytest

from ctd_stats.splits import SplitIndices, TrajectorySplit, split_by_trajectory, split_indices


def test_split_by_trajectory_is_a_named_sorted_partition() -> None:
    res = split_by_trajectory(37, calibration_fraction=0.2, seed=3)
    assert isinstance(res, TrajectorySplit)
    assert res.calibration.size == int(0.2 * 37)
    np.testing.assert_array_equal(np.sort(np.r_[res.calibration, res.test]), np.arange(37))
    assert np.all(np.diff(res.calibration) > 0) and np.all(np.diff(res.test) > 0)
    again = split_by_trajectory(37, calibration_fraction=0.2, seed=3)
    np.testing.assert_array_equal(res.calibration, again.calibration)
    # the reference split: default_rng(seed).choice(n, n_cal, replace=False), sorted
    expected = np.sort(np.random.default_rng(3).choice(37, size=7, replace=False))
    np.testing.assert_array_equal(res.calibration, expected)


def test_split_options_are_keyword_only() -> None:
    with pytest.raises(TypeError, match="positional argument"):
        split_by_trajectory(37, 0.2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional argument"):
        split_indices(10, 0.5, 1)  # type: ignore[call-arg]
    assert isinstance(split_indices(10, first_fraction=0.5, seed=1), SplitIndices)


def test_split_by_trajectory_rejects_an_empty_part() -> None:
    with pytest.raises(ValueError, match="calibration_fraction"):
        split_by_trajectory(3, calibration_fraction=0.2, seed=0)
