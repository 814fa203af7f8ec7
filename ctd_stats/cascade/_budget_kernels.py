"""Budget-test kernels of the threshold policies (:mod:`~ctd_stats.cascade.policies`).

One implementation each, shared by the single calibrations, the grouped ones
(:mod:`~ctd_stats.cascade.grouped_policies`) and the batched App. D path
(:mod:`~ctd_stats.cascade.budget_validation`): counts above a threshold grid, the exact binomial
budget p-values (CTD paper §3, Eq. 5), fixed-sequence testing from the largest τ down (LTT,
Angelopoulos et al. 2022, Sec. 3) and the Pareto front / choice (Laufer-Goldshtein et al. 2023).
"""

from __future__ import annotations

import math

import numpy as np

from .._validation import BoolArray, FloatArray, IntArray
from ..pvalues import binomial_kernel, min_n_for_zero_losses


def grid_positions(scores: FloatArray, grid: FloatArray) -> IntArray:
    """b = #{τ_j < d}: the input is delegated at τ_j (d > τ_j) iff j < b."""
    return np.searchsorted(grid, scores, side="left").astype(np.int64)


def counts_above(b: IntArray, m: int, weights: FloatArray | None = None) -> FloatArray:
    """Per row of grid positions ``b`` (R, n): Σ_{i: b_i > j} w_i for every grid index j.

    With w = 1 (default) the number of inputs delegated at each τ_j, shape (R, m): one
    ``bincount`` + ``cumsum`` for all rows at once.
    """
    r, _n = b.shape
    flat = (b + (m + 1) * np.arange(r)[:, None]).ravel()
    w = None if weights is None else weights.ravel()
    hist = np.bincount(flat, weights=w, minlength=r * (m + 1)).reshape(r, m + 1)
    total = hist.sum(axis=1, keepdims=True)
    return np.asarray(total - np.cumsum(hist, axis=1)[:, :m], dtype=np.float64)


def delegated_counts(scores: FloatArray, grid: FloatArray) -> FloatArray:
    """#{scores > τ} for every τ in the grid, shape (m,)."""
    counts: FloatArray = counts_above(grid_positions(scores, grid)[None, :], grid.size)[0]
    return counts


def budget_pvalues(counts: FloatArray | IntArray, n: int, alpha: float) -> FloatArray:
    """Exact binomial p-values P(Bin(n, α) ≤ k) of H0: budget > α (CTD paper §3, Eq. 5).

    :func:`ctd_stats.pvalues.binomial_pvalue`'s kernel; all 0 at α = 1, where the null is empty.
    """
    return binomial_kernel(np.asarray(counts, dtype=np.int64), n, alpha)


def min_n_test(alpha: float, delta: float, strict: bool) -> int:
    """Smallest n at which even zero delegations pass the budget test: (1 − α)^n ≤ δ."""
    n = min_n_for_zero_losses(alpha, delta, "binomial", strict=strict)
    assert n is not None  # the binomial p-value of zero losses falls below any δ > 0
    return n


def min_n_split(min_test: int, opt_fraction: float) -> int:
    """Smallest calibration size n whose ht part n − ⌊opt_fraction · n⌋ has ≥ ``min_test``."""
    n = max(2, math.floor((min_test - 1) / (1.0 - opt_fraction)))
    while n - int(opt_fraction * n) < min_test or int(opt_fraction * n) < 1:
        n += 1
    return n


def certify_descending(passed: BoolArray, tested: BoolArray) -> BoolArray:
    """Fixed-sequence testing from the largest τ down (LTT, Angelopoulos et al. 2022, Sec. 3).

    Along the last (grid) axis, the ``tested`` points are visited from the last index down; the
    certified ones are those before the first tested point that fails (``passed`` False). Any
    leading axes are a batch: one calibration per row (budget × re-split in App. D).
    """
    fail = (tested & ~passed)[..., ::-1]
    m = fail.shape[-1]
    first = np.where(fail.any(axis=-1), np.argmax(fail, axis=-1), m)[..., None]
    return np.asarray(tested & (np.arange(m)[::-1] < first))


def best_certified(certified: BoolArray, performance: FloatArray) -> IntArray:
    """Grid index of the certified τ of lowest performance risk, −1 where none is certified.

    Ties go to the largest τ, the first one tested (Laufer-Goldshtein et al. 2023, Alg. 1).
    Batched like :func:`certify_descending`; ``performance`` broadcasts against ``certified``.
    """
    m = certified.shape[-1]
    rev = np.where(certified, performance, np.inf)[..., ::-1]
    best = m - 1 - np.argmin(rev, axis=-1)
    return np.where(certified.any(axis=-1), best, -1).astype(np.int64)


def pareto_front_sorted(budget: FloatArray, performance: FloatArray) -> BoolArray:
    """Pareto front (both minimised) per row when ``budget`` is non-increasing along the row.

    The delegated fraction falls as τ grows, so this is every policy's case. Point j is
    dominated iff some k has budget_k ≤ budget_j and perf_k ≤ perf_j with one strict: either a
    point of strictly smaller budget (a later index, past j's block of equal budgets) with
    perf ≤ perf_j, or a point of equal budget with strictly smaller perf. O(R m), and the same
    mask as :func:`ctd_stats.pareto.pareto_front` (exact duplicates are kept; if nothing
    survived, every point would be kept). Shape (R, m).
    """
    r, m = budget.shape
    new_block = np.ones((r, m), dtype=bool)
    new_block[:, 1:] = budget[:, 1:] != budget[:, :-1]
    flat_starts = np.flatnonzero(new_block.ravel())
    block_id = np.cumsum(new_block.ravel()) - 1
    block_min = np.minimum.reduceat(performance.ravel(), flat_starts)[block_id].reshape(r, m)
    block_end = (np.append(flat_starts[1:], r * m) - 1)[block_id].reshape(r, m)
    block_end -= (np.arange(r) * m)[:, None]  # index within the row
    suffix_min = np.minimum.accumulate(performance[:, ::-1], axis=1)[:, ::-1]
    padded = np.concatenate([suffix_min, np.full((r, 1), np.inf)], axis=1)
    later_min = np.take_along_axis(padded, block_end + 1, axis=1)
    dominated = (later_min <= performance) | (block_min < performance)
    front = ~dominated
    front[~front.any(axis=1)] = True
    return np.asarray(front)


def passes(pvalues: FloatArray, delta: float, strict: bool) -> BoolArray:
    """The budget test's rejection rule: p < δ (``strict``) or p ≤ δ."""
    return np.asarray(pvalues < delta) if strict else np.asarray(pvalues <= delta)
