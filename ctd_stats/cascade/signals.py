"""Delegation signals, threshold grids and the budget test shared by every calibrated policy.

* The DV score d(x) is given (a DV probe, CTD paper §4.1). The uncertainty score of McKenzie et
  al. (2025) is u(x) = −|F̂(p(x)) − 0.5|, F̂ the empirical CDF of a reference sample of probe
  scores (``searchsorted(side="left") / n``; CTD paper §5.1, "Unc." baselines). Both are used
  as "delegate iff signal > τ" (strict), the rule π_λ(x) = 1[d(x) > λ] of CTD paper §4.2.
* The budget risk R_B(τ) = P(signal > τ) is tested in :mod:`~ctd_stats.cascade.policies`
  (:func:`~ctd_stats.cascade.policies.budget_pvalues`), once for the single calibrations and the
  batched App. D path.

Public functions validate their inputs once; the ``*_unchecked`` kernels trust them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Final, Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from .._validation import (
    as_binary_array,
    as_float_array,
    check_choice,
    check_grid,
    check_level,
    check_positive_int,
    plain,
)
from ..typing import FloatArray, IntArray
from .metrics import (
    MERGES,
    Merge,
    as_probabilities,
    check_both_classes,
    check_cascade_lengths,
    evaluate_unchecked,
)

__all__ = [
    "PERFORMANCE_RISKS",
    "PerformanceRisk",
    "Signal",
    "performance_risk",
    "threshold_grid",
    "uncertainty_score",
]

PerformanceRisk = Literal["accuracy", "auroc"]
PERFORMANCE_RISKS: Final[tuple[str, ...]] = ("accuracy", "auroc")
Signal = Literal["dv", "uncertainty"]


def check_budget(value: float, name: str = "alpha") -> float:
    """A delegation budget α must be a number in (0, 1] (α = 1: everything may be delegated)."""
    return check_level(value, name, closed_right=True)


def uncertainty_score(probe: ArrayLike, *, reference: ArrayLike) -> FloatArray:
    """McKenzie et al.'s proximity-to-median score u = −|F̂(p) − 0.5| ∈ [−0.5, 0].

    F̂(t) = #{reference < t} / n_ref (``searchsorted(side="left")``) is the empirical CDF of the
    reference probe scores (the calibration set's, for "Unc. calibrated"). Larger u = closer to
    the reference median = delegated first.
    """
    p = as_float_array(probe, "probe", ndim=(0, 1, 2), low=0.0, high=1.0)
    ref = np.sort(as_float_array(reference, "reference", ndim=1, low=0.0, high=1.0))
    return uncertainty_from_sorted(p, ref)


@overload
def uncertainty_from_sorted(p: float, sorted_ref: Sequence[float]) -> float: ...


@overload
def uncertainty_from_sorted(p: FloatArray, sorted_ref: FloatArray) -> FloatArray: ...


def uncertainty_from_sorted(
    p: float | FloatArray, sorted_ref: Sequence[float] | FloatArray
) -> float | FloatArray:
    """u = −|F̂(p) − 0.5| for validated probe scores and a SORTED reference (no checks).

    The one implementation of the uncertainty signal, for a batch (arrays: ``searchsorted``) and
    for one input of a live delegator (a float and a list: ``bisect_left``, the same rank
    without numpy's per-call overhead). #{ref < p} / n and −|· − 0.5| are the same IEEE
    operations on both paths, so a stream decided one input at a time matches the batch.
    """
    if isinstance(p, float):
        return -abs(bisect.bisect_left(sorted_ref, p) / len(sorted_ref) - 0.5)
    ref = np.asarray(sorted_ref)
    cdf = np.searchsorted(ref, p, side="left") / ref.size
    return np.asarray(-np.abs(cdf - 0.5), dtype=np.float64)


def threshold_grid(scores: ArrayLike, *, size: int = 100, margin: float = 0.01) -> FloatArray:
    """Candidate thresholds linspace(min − margin, max + margin, size) over ``scores``.

    With margin > 0 the largest threshold delegates nothing and the smallest everything.
    """
    s = as_float_array(scores, "scores", ndim=1)
    size = check_positive_int(size, "size", minimum=2)
    return threshold_grid_unchecked(s, size, check_margin(margin))


def check_margin(margin: float, name: str = "margin") -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(margin).__name__}")
    if not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"{name}: must be finite and >= 0, got {plain(margin)}")
    return float(margin)


def threshold_grid_unchecked(s: FloatArray, size: int = 100, margin: float = 0.01) -> FloatArray:
    return np.linspace(float(s.min()) - margin, float(s.max()) + margin, size)


def performance_risk(
    labels: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    signal: ArrayLike,
    *,
    grid: ArrayLike,
    performance: PerformanceRisk = "accuracy",
    merge: Merge = "replace",
) -> FloatArray:
    """Empirical performance risk R_P(τ) of "delegate iff signal > τ" for every τ in the grid.

    1 − accuracy (``"accuracy"``, CTD paper §5.1) or 1 − AUROC (``"auroc"``, CTD paper App. E)
    of the cascade output; shape (m,).
    """
    check_choice(performance, "performance", PERFORMANCE_RISKS)
    check_choice(merge, "merge", MERGES)
    y = as_binary_array(labels, "labels")
    p = as_probabilities(probe, "probe")
    e = as_probabilities(expert, "expert")
    check_cascade_lengths(p, e, y)
    s = as_float_array(signal, "signal", ndim=1)
    if s.size != p.size:
        raise ValueError(f"signal: length {s.size} does not match probe (length {p.size})")
    check_both_classes(y)
    return performance_risk_unchecked(y, p, e, s, check_grid(grid), performance, merge)


def performance_risk_unchecked(
    y: IntArray,
    p: FloatArray,
    e: FloatArray,
    s: FloatArray,
    grid: FloatArray,
    performance: str,
    merge: str,
) -> FloatArray:
    curves = evaluate_unchecked(y, p, e, s[None, :] > grid[:, None], merge)
    return 1.0 - (curves.accuracy if performance == "accuracy" else curves.auroc)
