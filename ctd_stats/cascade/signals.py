"""Delegation signals, threshold grids and the budget test shared by every calibrated policy.

* The DV score d(x) is given (a DV probe, CTD paper §4.1). The uncertainty score of McKenzie et
  al. (2025) is u(x) = −|F̂(p(x)) − 0.5|, F̂ the empirical CDF of a reference sample of probe
  scores (``searchsorted(side="left") / n``; CTD paper §5.1, "Unc." baselines). Both are used
  as "delegate iff signal > τ" (strict), the rule π_λ(x) = 1[d(x) > λ] of CTD paper §4.2.
* The budget risk R_B(τ) = P(signal > τ) is the mean of a Bernoulli loss, so its p-value for
  H0: R_B(τ) > α is the exact binomial tail P(Bin(n, α) ≤ k) (CTD paper §3). At α = 1 the null is
  impossible: every threshold passes. That case is decided here, in :func:`_budget_pvalues`,
  and nowhere else.

Public functions validate their inputs once; the ``_underscore`` kernels trust them.
"""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .._validation import (
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_level,
    check_positive_int,
    check_sorted,
)
from .metrics import MERGES, Merge, _both_classes, _evaluate, _probabilities, _same_length

__all__ = [
    "PERFORMANCE_RISKS",
    "PerformanceRisk",
    "Signal",
    "check_budget",
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
    return _uncertainty(p, ref)


def _uncertainty(p: FloatArray, sorted_ref: FloatArray) -> FloatArray:
    cdf = np.searchsorted(sorted_ref, p, side="left") / sorted_ref.size
    return np.asarray(-np.abs(cdf - 0.5), dtype=np.float64)


def threshold_grid(scores: ArrayLike, *, size: int = 100, margin: float = 0.01) -> FloatArray:
    """Candidate thresholds linspace(min − margin, max + margin, size) over ``scores``.

    With margin > 0 the largest threshold delegates nothing and the smallest everything.
    """
    s = as_float_array(scores, "scores", ndim=1)
    size = check_positive_int(size, "size", minimum=2)
    return _threshold_grid(s, size, check_margin(margin))


def check_margin(margin: float, name: str = "margin") -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(margin).__name__}")
    if not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"{name}: must be finite and >= 0, got {margin!r}")
    return float(margin)


def _threshold_grid(s: FloatArray, size: int = 100, margin: float = 0.01) -> FloatArray:
    return np.linspace(float(s.min()) - margin, float(s.max()) + margin, size)


def check_grid(grid: ArrayLike, name: str = "grid") -> FloatArray:
    """A user-given grid: finite, 1-d, strictly increasing."""
    g = as_float_array(grid, name, ndim=1)
    check_sorted(g, name)
    return g


def _counts_above(scores: FloatArray, grid: FloatArray) -> IntArray:
    """#{scores > τ} for every τ in the grid (one sort + searchsorted)."""
    s = np.sort(scores)
    return (s.size - np.searchsorted(s, grid, side="right")).astype(np.int64)


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
    p = _probabilities(probe, "probe")
    e = _probabilities(expert, "expert")
    _same_length(p, e, y)
    s = as_float_array(signal, "signal", ndim=1)
    if s.size != p.size:
        raise ValueError(f"signal: length {s.size} does not match probe (length {p.size})")
    _both_classes(y)
    return _performance_risk(y, p, e, s, check_grid(grid), performance, merge)


def _performance_risk(
    y: IntArray,
    p: FloatArray,
    e: FloatArray,
    s: FloatArray,
    grid: FloatArray,
    performance: str,
    merge: str,
) -> FloatArray:
    curves = _evaluate(y, p, e, s[None, :] > grid[:, None], merge)
    return 1.0 - (curves.accuracy if performance == "accuracy" else curves.auroc)


def _budget_pvalues(counts: IntArray, n: int, alpha: float) -> FloatArray:
    """Binomial p-values P(Bin(n, α) ≤ k) of H0: R_B > α; all 0 at α = 1 (the null is empty)."""
    if alpha >= 1.0:
        return np.zeros(counts.shape)
    return np.asarray(stats.binom.cdf(counts, n, alpha), dtype=np.float64)


def _passes(p: float, delta: float, strict: bool) -> bool:
    return p < delta if strict else p <= delta


def _min_n_test(alpha: float, delta: float, strict: bool) -> int:
    """Smallest n at which even zero delegations pass the budget test: (1 − α)^n ≤ δ."""
    if alpha >= 1.0:
        return 1
    guess = max(1, math.ceil(math.log(delta) / math.log1p(-alpha)))

    def ok(n: int) -> bool:
        p0 = float(_budget_pvalues(np.zeros(1, dtype=np.int64), n, alpha)[0])
        return _passes(p0, delta, strict)

    while guess > 1 and ok(guess - 1):
        guess -= 1
    while not ok(guess):
        guess += 1
    return guess


def _min_n_split(min_test: int, opt_fraction: float) -> int:
    """Smallest calibration size n whose ht part n − ⌊opt_fraction · n⌋ has ≥ ``min_test``."""
    n = max(2, math.floor((min_test - 1) / (1.0 - opt_fraction)))
    while n - int(opt_fraction * n) < min_test or int(opt_fraction * n) < 1:
        n += 1
    return n
