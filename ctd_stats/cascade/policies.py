"""Calibrated threshold policies: CTD, "Unc. calibrated", budget-only LTT and the plug-in.

Each returns a :class:`~ctd_stats.cascade.calibration.ThresholdCalibration` for the rule
"delegate iff signal > τ" on a grid of thresholds τ (CTD paper §4.2):

* :func:`calibrate_ctd` — Calibrate-Then-Delegate: Pareto testing (Laufer-Goldshtein et al.
  2023) of the DV score. On the opt split, the empirical budget R_B(τ) and performance risk
  R_P(τ) (1 − accuracy, or 1 − AUROC as in App. E) give a Pareto front; the front is tested on
  the ht split from the largest τ down by fixed-sequence binomial tests of H0: R_B(τ) > α
  (Learn-then-Test, §3); among the certified τ the lowest opt R_P wins (ties: the largest τ).
* :func:`calibrate_uncertainty` — the same on u(x) = −|F̂(p(x)) − 0.5| (F̂ from the calibration
  probe scores).
* :func:`calibrate_budget_only` — LTT on the budget alone, fixed-sequence from the largest τ down
  on the whole calibration set; the smallest certified τ.
* :func:`calibrate_plug_in` — the uncorrected plug-in (smallest τ with empirical budget ≤ α).
  NO guarantee (it violates the budget ~40–50 % of the time, App. D); kept as the contrast.

Guarantee of the first three: P(true budget of the chosen τ > α) ≤ δ over the calibration data.
Choices where the sources leave room: fixed-sequence rejects p ≤ δ by default (``strict=True``:
p < δ, the reference code); a budget with no certified threshold means "never delegate" (τ = +∞,
``found=False`` with the reason and, when the sample is simply too small, ``min_n``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._serialize import array_sha256
from .._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_grid,
    check_level,
)
from ..pvalues import binomial_kernel, min_n_for_zero_losses
from ..splits import split_indices
from .calibration import BUDGET_ONLY, CTD, PLUG_IN, UNC_CALIBRATED, ThresholdCalibration
from .metrics import MERGES, Merge, as_probabilities, check_both_classes, check_cascade_lengths
from .signals import (
    PERFORMANCE_RISKS,
    PerformanceRisk,
    Signal,
    check_budget,
    performance_risk_unchecked,
    threshold_grid_unchecked,
    uncertainty_from_sorted,
)

__all__ = [
    "calibrate_budget_only",
    "calibrate_ctd",
    "calibrate_plug_in",
    "calibrate_uncertainty",
]


# --------------------------------------------------------------------------- budget test kernels
# One implementation each, shared by the single calibrations below and the batched App. D path
# (:mod:`~ctd_stats.cascade.budget_validation`).
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


def _not_found_reason(
    k: int, n_test: int, p: float, alpha: float, delta: float, strict: bool
) -> tuple[str, bool]:
    """Why the first (least aggressive) tested threshold failed; True if n_test is the cause."""
    rule = "<" if strict else "<="
    if n_test < min_n_test(alpha, delta, strict):
        return (
            f"n: {n_test} test points cannot certify alpha={alpha:.6g} at delta={delta:.6g}: "
            f"even zero delegations give p = {p:.4g}, not {rule} delta",
            True,
        )
    return (
        f"the least aggressive tested threshold delegates {k} of {n_test} test points "
        f"(p = {p:.4g}, not {rule} delta={delta:.6g})",
        False,
    )


@dataclass(frozen=True)
class ParetoData:
    """Validated calibration data and Pareto-LTT options (everything but the signal and α)."""

    labels: IntArray
    probe: FloatArray
    expert: FloatArray
    delta: float
    performance: str
    merge: str
    opt_fraction: float
    seed: int
    strict: bool


def pareto_ltt(
    data: ParetoData,
    method: str,
    signal_kind: Signal,
    signal: FloatArray,
    grid: FloatArray,
    alphas: list[float],
    reference: FloatArray | None,
) -> list[ThresholdCalibration]:
    """Pareto-LTT kernel at several budgets; the opt risks and the front do not depend on α."""
    labels, delta, strict, opt_fraction = data.labels, data.delta, data.strict, data.opt_fraction
    split = split_indices(signal.size, first_fraction=opt_fraction, seed=data.seed)
    opt, ht = split.first, split.second
    check_both_classes(labels[opt])
    opt_perf = performance_risk_unchecked(
        labels[opt],
        data.probe[opt],
        data.expert[opt],
        signal[opt],
        grid,
        data.performance,
        data.merge,
    )
    opt_budget = delegated_counts(signal[opt], grid) / opt.size
    ht_counts = delegated_counts(signal[ht], grid)
    m, n_ht = grid.size, int(ht.size)
    descending = np.arange(m - 1, -1, -1)
    on_front = pareto_front_sorted(opt_budget[None, :], opt_perf[None, :])[0]
    front = descending[on_front[descending]]
    settings: dict[str, Any] = {
        "performance": data.performance,
        "merge": data.merge,
        "opt_fraction": opt_fraction,
        "seed": data.seed,
        "strict": strict,
    }
    # What the calibration saw: the signal (DV scores, or the probe for the uncertainty signal).
    seen = signal if reference is None else data.probe
    sha256 = array_sha256(np.stack([seen, data.probe, data.expert, labels]))
    out: list[ThresholdCalibration] = []
    for alpha in alphas:
        pvals = budget_pvalues(ht_counts, n_ht, alpha)
        certified = certify_descending(passes(pvals, delta, strict), on_front)
        best = int(best_certified(certified, opt_perf))
        index = None if best < 0 else best
        reason: str | None = None
        min_n: int | None = None
        if index is None:
            j = int(front[0])
            reason, small = _not_found_reason(
                int(ht_counts[j]), n_ht, float(pvals[j]), alpha, delta, strict
            )
            if small:
                min_n = min_n_split(min_n_test(alpha, delta, strict), opt_fraction)
        out.append(
            ThresholdCalibration(
                method=method,
                signal=signal_kind,
                alpha=float(alpha),
                delta=delta,
                found=index is not None,
                threshold=float("inf") if index is None else float(grid[index]),
                index=index,
                reason=reason,
                min_n=min_n,
                grid=grid,
                certified=certified,
                front=front,
                pvalues=pvals,
                opt_budget=opt_budget,
                opt_performance=opt_perf,
                n_opt=int(opt.size),
                n_test=n_ht,
                reference=reference,
                calibration_sha256=sha256,
                settings=settings,
            )
        )
    return out


def _pareto_iv(
    labels: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    alpha: float,
    delta: float,
    performance: str,
    merge: str,
    opt_fraction: float,
    seed: int,
    strict: bool,
) -> tuple[ParetoData, float]:
    alpha = check_budget(alpha)
    delta = check_level(delta, "delta")
    check_choice(performance, "performance", PERFORMANCE_RISKS)
    check_choice(merge, "merge", MERGES)
    opt_fraction = check_level(opt_fraction, "opt_fraction")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict: expected a bool, got {type(strict).__name__}")
    y = as_binary_array(labels, "labels")
    p = as_probabilities(probe, "probe")
    e = as_probabilities(expert, "expert")
    check_cascade_lengths(p, e, y)
    if y.size < 4:
        raise ValueError(f"labels: need at least 4 calibration points, got {y.size}")
    data = ParetoData(y, p, e, delta, performance, merge, opt_fraction, int(seed), bool(strict))
    return data, alpha


def calibrate_ctd(
    labels: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    dv: ArrayLike,
    *,
    alpha: float,
    delta: float = 0.1,
    grid: ArrayLike | None = None,
    performance: PerformanceRisk = "accuracy",
    merge: Merge = "replace",
    opt_fraction: float = 0.3,
    seed: int = 42,
    strict: bool = False,
) -> ThresholdCalibration:
    """Calibrate-Then-Delegate: Pareto-LTT of "delegate iff d(x) > τ" (CTD paper §4.2).

    The calibration set is split once (``default_rng(seed)`` permutation, first ``opt_fraction``
    = opt). On opt: empirical budget and performance risk (1 − accuracy or 1 − AUROC) per τ; the
    Pareto front is tested on ht from the largest τ down by fixed-sequence binomial tests of
    H0: budget(τ) > α; among the certified τ the one with the lowest opt performance risk is
    chosen (ties: the largest τ). Guarantee: P(true budget of the chosen τ > α) ≤ δ.

    ``grid`` defaults to :func:`~ctd_stats.cascade.threshold_grid` of ``dv`` (the reference builds
    it on the DV scores of the whole test table; pass that grid to reproduce it). α = 1 is
    allowed (every threshold is certified).
    """
    data, alpha = _pareto_iv(
        labels, probe, expert, alpha, delta, performance, merge, opt_fraction, seed, strict
    )
    d = as_float_array(dv, "dv", ndim=1)
    if d.size != data.probe.size:
        raise ValueError(f"dv: length {d.size} does not match probe (length {data.probe.size})")
    g = threshold_grid_unchecked(d) if grid is None else check_grid(grid)
    return pareto_ltt(data, CTD, "dv", d, g, [alpha], None)[0]


def calibrate_uncertainty(
    labels: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    *,
    alpha: float,
    delta: float = 0.1,
    grid: ArrayLike | None = None,
    performance: PerformanceRisk = "accuracy",
    merge: Merge = "replace",
    opt_fraction: float = 0.3,
    seed: int = 42,
    strict: bool = False,
) -> ThresholdCalibration:
    """ "Unc. calibrated": the CTD procedure on u(x) = −|F̂(p(x)) − 0.5|.

    F̂ is the empirical CDF of the calibration probe scores (stored as ``reference``; at
    deployment :meth:`ThresholdCalibration.delegate` takes probe scores). ``grid`` defaults to
    linspace(min u − 0.01, max u + 0.01, 100) over the calibration u. Same guarantee as CTD.
    """
    data, alpha = _pareto_iv(
        labels, probe, expert, alpha, delta, performance, merge, opt_fraction, seed, strict
    )
    ref = np.sort(data.probe)
    u = uncertainty_from_sorted(data.probe, ref)
    g = threshold_grid_unchecked(u) if grid is None else check_grid(grid)
    return pareto_ltt(data, UNC_CALIBRATED, "uncertainty", u, g, [alpha], ref)[0]


def budget_only_unchecked(
    s: FloatArray, g: FloatArray, alpha: float, delta: float, strict: bool, sha256: str
) -> ThresholdCalibration:
    """Budget-only LTT kernel (validated inputs)."""
    counts = delegated_counts(s, g)
    m, n = g.size, int(s.size)
    pvals = budget_pvalues(counts, n, alpha)
    certified = certify_descending(passes(pvals, delta, strict), np.ones(m, dtype=bool))
    index = int(np.flatnonzero(certified).min()) if certified.any() else None
    reason: str | None = None
    min_n: int | None = None
    if index is None:
        reason, small = _not_found_reason(
            int(counts[-1]), n, float(pvals[-1]), alpha, delta, strict
        )
        min_n = min_n_test(alpha, delta, strict) if small else None
    return ThresholdCalibration(
        method=BUDGET_ONLY,
        signal="dv",
        alpha=alpha,
        delta=delta,
        found=index is not None,
        threshold=float("inf") if index is None else float(g[index]),
        index=index,
        reason=reason,
        min_n=min_n,
        grid=g,
        certified=certified,
        front=np.arange(m - 1, -1, -1, dtype=np.int64),
        pvalues=pvals,
        opt_budget=counts / s.size,
        opt_performance=np.full(m, np.nan),
        n_opt=0,
        n_test=n,
        calibration_sha256=sha256,
        settings={"strict": strict},
    )


def calibrate_budget_only(
    scores: ArrayLike,
    *,
    alpha: float,
    delta: float = 0.1,
    grid: ArrayLike | None = None,
    strict: bool = False,
) -> ThresholdCalibration:
    """Budget-only LTT: certify τ from the largest down, return the smallest certified τ.

    Uses the whole calibration set (no opt/ht split, as the reference). Guarantee: with
    probability ≥ 1 − δ every certified τ — hence the returned one — has true budget ≤ α
    (Learn-then-Test, CTD paper §3).
    """
    alpha = check_budget(alpha)
    delta = check_level(delta, "delta")
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict: expected a bool, got {type(strict).__name__}")
    s = as_float_array(scores, "scores", ndim=1)
    g = threshold_grid_unchecked(s) if grid is None else check_grid(grid)
    return budget_only_unchecked(s, g, alpha, delta, bool(strict), array_sha256(s))


def plug_in_unchecked(
    s: FloatArray, g: FloatArray, alpha: float, sha256: str
) -> ThresholdCalibration:
    counts = delegated_counts(s, g)
    ok = counts <= alpha * s.size
    index = int(np.flatnonzero(ok).min()) if ok.any() else None
    return ThresholdCalibration(
        method=PLUG_IN,
        signal="dv",
        alpha=alpha,
        delta=None,
        found=index is not None,
        threshold=float("inf") if index is None else float(g[index]),
        index=index,
        reason=None if index is not None else "no grid threshold has empirical budget <= alpha",
        min_n=None,
        grid=g,
        certified=ok,
        front=np.zeros(0, dtype=np.int64),
        pvalues=np.full(g.size, np.nan),
        opt_budget=counts / s.size,
        opt_performance=np.full(g.size, np.nan),
        n_opt=0,
        n_test=int(s.size),
        calibration_sha256=sha256,
    )


def calibrate_plug_in(
    scores: ArrayLike, *, alpha: float, grid: ArrayLike | None = None
) -> ThresholdCalibration:
    """Uncorrected plug-in: the smallest τ whose empirical calibration budget is ≤ α.

    NO guarantee (``delta=None``) — its true budget exceeds α about half the time (CTD paper
    App. D). A negative control for the budget-validation checks, never a policy to deploy.
    """
    alpha = check_budget(alpha)
    s = as_float_array(scores, "scores", ndim=1)
    g = threshold_grid_unchecked(s) if grid is None else check_grid(grid)
    return plug_in_unchecked(s, g, alpha, array_sha256(s))
