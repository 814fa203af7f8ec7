"""The random splits both halves of the package use, in one place.

* :func:`split_indices` — one seeded permutation cut in two: the CTD protocol's calibration /
  evaluation halves and, inside calibration, the Pareto-testing opt / ht parts (CTD paper §4.2,
  Learn-then-Test with Pareto testing, Laufer-Goldshtein et al. 2023).
* :func:`split_by_trajectory` — whole trajectories to calibration or test, never steps of one
  trajectory to both (the online-monitoring paper's protocol, §5).

Both are reproducible from ``seed`` alone (``numpy.random.default_rng``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import IntArray, check_level, check_positive_int

__all__ = ["SplitIndices", "TrajectorySplit", "split_by_trajectory", "split_indices"]


@dataclass(frozen=True)
class SplitIndices:
    """Two disjoint index sets drawn by one seeded permutation (``first`` = its first part)."""

    first: IntArray
    second: IntArray


def split_indices(n: int, *, first_fraction: float, seed: int) -> SplitIndices:
    """Split ``range(n)`` by ``numpy.random.default_rng(seed).permutation(n)``.

    The first ``int(first_fraction * n)`` entries of the permutation form ``first`` (the CTD
    reference protocol: 50 % calibration / evaluation, then 30 % opt / 70 % ht, seed 42).
    """
    n = check_positive_int(n, "n", minimum=2)
    first_fraction = check_level(first_fraction, "first_fraction")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    cut = int(first_fraction * n)
    if cut == 0 or cut == n:
        raise ValueError(f"first_fraction: {first_fraction} of n={n} leaves one side empty")
    return SplitIndices(first=perm[:cut], second=perm[cut:])


@dataclass(frozen=True)
class TrajectorySplit:
    """Sorted trajectory indices of the calibration and the test part (disjoint, covering all)."""

    calibration: IntArray
    test: IntArray


def split_by_trajectory(n: int, *, calibration_fraction: float, seed: int) -> TrajectorySplit:
    """Whole trajectories to calibration or test, by ``default_rng(seed).choice`` (no replacement).

    ``int(calibration_fraction * n)`` trajectories go to calibration, the rest to test; both
    index sets are sorted (the online-monitoring paper's reference split of the unique ids, §5).
    """
    n = check_positive_int(n, "n", minimum=2)
    frac = check_level(calibration_fraction, "calibration_fraction")
    n_cal = int(frac * n)
    if n_cal < 1 or n_cal >= n:
        raise ValueError(
            f"calibration_fraction: {frac} of {n} trajectories leaves an empty calibration or "
            "test part"
        )
    cal = np.sort(np.random.default_rng(seed).choice(n, size=n_cal, replace=False))
    test = np.setdiff1d(np.arange(n), cal)
    return TrajectorySplit(calibration=cal.astype(np.int64), test=test.astype(np.int64))
