"""Empirical validation of the CTD budget guarantee (CTD paper App. D), vectorised.

The guarantee of budget-only LTT and of Pareto-LTT is P(R_B(τ̂) > α) ≤ δ over the calibration
data. App. D checks it by re-splitting a fixed table R times into calibration / evaluation halves,
calibrating on each calibration half and measuring the realised delegation rate on the evaluation
half; the violation rate should be about δ or below. An uncorrected plug-in threshold is run
alongside as a negative control (it violates about half the time).

Speed: everything is computed from integer counts. Each score is mapped once to its grid
position b = #{τ_j < d}; "d > τ_j" is then "j < b", so per-threshold counts for all re-splits are
one ``bincount`` + ``cumsum``; p-values for all budgets × re-splits × thresholds are one binomial
CDF call; fixed-sequence testing is the first failure found by ``argmax`` on a boolean array;
Pareto fronts of all re-splits are one broadcast comparison. R = 500 re-splits × 20 budgets run
in well under a second (see ``bench/sections/app_d.py``).

Conventions (as the reference code, CTD paper §5.1 / App. D): re-split r uses
``default_rng(seed + r)`` for the calibration / evaluation permutation (first ``calib_fraction``
= calibration) and again ``default_rng(seed + r)`` for the opt / ht permutation of the
calibration half (first ``opt_fraction`` = opt). Budget-only LTT and the plug-in use the whole
calibration half. A re-split where no threshold is certified never delegates (realised budget 0,
no violation); the reference code instead drops such re-splits from the denominator — both
rates are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_level,
    check_positive_int,
)
from ._repr import summarise
from .metrics import MERGES, CascadeTable, Merge
from .signals import (
    PERFORMANCE_RISKS,
    PerformanceRisk,
    _budget_pvalues,
    _threshold_grid,
    check_budget,
    check_grid,
)

__all__ = [
    "VALIDATION_METHODS",
    "BatchCalibration",
    "BudgetValidationResult",
    "MethodValidation",
    "calibrate_batch",
    "validate_budget_guarantee",
    "violation_tolerance",
]

VALIDATION_METHODS: Final[tuple[str, ...]] = ("budget_only", "pareto", "plug_in")


def violation_tolerance(n_runs: int, delta: float, *, confidence: float = 1e-4) -> int:
    """Largest violation count compatible with a valid guarantee: binom.ppf(1 − c, R, δ).

    A valid procedure exceeds it with probability ≤ ``confidence``.
    """
    n_runs = check_positive_int(n_runs, "n_runs")
    delta = check_level(delta, "delta")
    confidence = check_level(confidence, "confidence")
    return int(stats.binom.ppf(1.0 - confidence, n_runs, delta))


@dataclass(frozen=True)
class BatchCalibration:
    """Chosen grid indices of each method for A budgets × R calibration sets (−1 = none found).

    Guarantee: for ``budget_only`` and ``pareto``, for each budget α and each calibration set
    drawn exchangeably with deployment data, P(true budget of the chosen τ > α) ≤ δ. ``plug_in``
    has no guarantee.
    """

    alphas: FloatArray
    delta: float
    grid: FloatArray
    budget_only: IntArray
    pareto: IntArray
    plug_in: IntArray

    def __repr__(self) -> str:
        a, r = self.budget_only.shape
        found = ", ".join(
            f"{name} {int((getattr(self, name) >= 0).sum())}"
            for name in ("budget_only", "pareto", "plug_in")
        )
        return (
            f"BatchCalibration({a} budgets x {r} calibration sets, delta={self.delta}; "
            f"found: {found} of {a * r})"
        )


def _grid_positions(scores: FloatArray, grid: FloatArray) -> IntArray:
    """b = #{τ_j < d}: the input is delegated at τ_j (d > τ_j) iff j < b."""
    return np.searchsorted(grid, scores, side="left").astype(np.int64)


def _counts_above(b: IntArray, m: int, weights: FloatArray | None = None) -> FloatArray:
    """Per row, Σ_{i: b_i > j} w_i for every grid index j (w = 1 by default); shape (R, m)."""
    r, _n = b.shape
    flat = (b + (m + 1) * np.arange(r)[:, None]).ravel()
    w = None if weights is None else weights.ravel()
    hist = np.bincount(flat, weights=w, minlength=r * (m + 1)).reshape(r, m + 1)
    total = hist.sum(axis=1, keepdims=True)
    return np.asarray(total - np.cumsum(hist, axis=1)[:, :m], dtype=np.float64)


def _batched_auroc_risk(
    b: IntArray, probe: FloatArray, merged: FloatArray, labels: IntArray, m: int
) -> FloatArray:
    """1 − AUROC of the cascade for every row and grid index; shape (R, m)."""
    r, n = b.shape
    n1 = labels.sum(axis=1)
    if np.any(n1 == 0) or np.any(n1 == n):
        raise ValueError("labels: every optimisation split needs both classes for AUROC")
    n0 = n - n1
    out = np.empty((r, m))
    j = np.arange(m)
    chunk = max(1, 2_000_000 // max(1, m * n))
    for s in range(0, r, chunk):
        sl = slice(s, min(r, s + chunk))
        mask = b[sl, None, :] > j[None, :, None]
        scores = np.where(mask, merged[sl, None, :], probe[sl, None, :])
        ranks = stats.rankdata(scores, axis=-1, method="average")
        rank_sum = (ranks * labels[sl, None, :]).sum(axis=-1)
        n1s = n1[sl, None]
        out[sl] = 1.0 - (rank_sum - n1s * (n1s + 1) / 2.0) / (n1s * n0[sl, None])
    return out


def _first_fail_prefix(passed_rev: BoolArray, tested_rev: BoolArray) -> BoolArray:
    """Fixed-sequence along the last axis: certified = tested points before the first failure."""
    fail = tested_rev & ~passed_rev
    m = fail.shape[-1]
    any_fail = fail.any(axis=-1, keepdims=True)
    first = np.where(any_fail, np.argmax(fail, axis=-1)[..., None], m)
    pos = np.arange(m)
    return np.asarray(tested_rev & (pos < first))


def _pvalue_pass(
    counts: FloatArray, n: int, alphas: FloatArray, delta: float, strict: bool
) -> BoolArray:
    """(A, R, m) mask of binomial p-value ≤ δ (or < δ) for H0: budget > α.

    The p-value P(Bin(n, α) ≤ k) increases with k, so it passes exactly for k ≤ k_max(α): one
    CDF evaluation per possible count (A × (n + 1)) instead of one per (budget, row, threshold).
    The p-values are :func:`~ctd_stats.cascade.signals._budget_pvalues` (which decides α = 1).
    """
    k = np.arange(n + 1)
    cdf = np.stack([_budget_pvalues(k, n, float(a)) for a in alphas])
    ok = np.asarray(cdf < delta) if strict else np.asarray(cdf <= delta)
    k_max = ok.sum(axis=1) - 1  # −1: not even k = 0 passes
    return np.asarray(counts[None, :, :] <= k_max[:, None, None])


def _pareto_front_monotone(budget: FloatArray, perf: FloatArray) -> BoolArray:
    """Pareto front per row when ``budget`` is non-increasing along the row (O(R m)).

    Point j is dominated iff some k has budget_k ≤ budget_j and perf_k ≤ perf_j with one strict:
    either a point of strictly smaller budget (a later index, past j's block of equal budgets)
    with perf ≤ perf_j, or a point of equal budget with strictly smaller perf. Exact duplicates
    are kept, as in :func:`ctd_stats.pareto.pareto_front`.
    """
    r, m = budget.shape
    new_block = np.ones((r, m), dtype=bool)
    new_block[:, 1:] = budget[:, 1:] != budget[:, :-1]
    flat_starts = np.flatnonzero(new_block.ravel())
    block_id = np.cumsum(new_block.ravel()) - 1
    block_min = np.minimum.reduceat(perf.ravel(), flat_starts)[block_id].reshape(r, m)
    block_end = (np.append(flat_starts[1:], r * m) - 1)[block_id].reshape(r, m)
    block_end -= (np.arange(r) * m)[:, None]  # index within the row
    suffix_min = np.minimum.accumulate(perf[:, ::-1], axis=1)[:, ::-1]
    padded = np.concatenate([suffix_min, np.full((r, 1), np.inf)], axis=1)
    later_min = np.take_along_axis(padded, block_end + 1, axis=1)
    dominated = (later_min <= perf) | (block_min < perf)
    front = ~dominated
    front[~front.any(axis=1)] = True
    return np.asarray(front)


def calibrate_batch(
    labels: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    dv: ArrayLike,
    *,
    n_opt: int,
    grid: ArrayLike,
    alphas: ArrayLike,
    delta: float = 0.1,
    performance: PerformanceRisk = "accuracy",
    merge: Merge = "replace",
    strict: bool = False,
) -> BatchCalibration:
    """Calibrate budget-only LTT, Pareto-LTT (CTD) and the plug-in on R calibration sets at once.

    Inputs have shape (R, n_cal): one calibration set per row. For Pareto-LTT the first
    ``n_opt`` columns of each row are its opt split and the rest its ht split; budget-only LTT
    and the plug-in use the whole row. Returns, per budget and row, the chosen grid index —
    exactly what :func:`~ctd_stats.cascade.calibrate_ctd`,
    :func:`~ctd_stats.cascade.calibrate_budget_only` and
    :func:`~ctd_stats.cascade.calibrate_plug_in` would choose row by row.
    """
    y = as_binary_array(labels, "labels", ndim=2)
    p = as_float_array(probe, "probe", ndim=2, low=0.0, high=1.0)
    e = as_float_array(expert, "expert", ndim=2, low=0.0, high=1.0)
    d = as_float_array(dv, "dv", ndim=2)
    for name, arr in (("probe", p), ("expert", e), ("dv", d)):
        if arr.shape != y.shape:
            raise ValueError(f"{name}: shape {arr.shape} does not match labels {y.shape}")
    _r, n_cal = d.shape
    n_opt = check_positive_int(n_opt, "n_opt")
    if n_opt >= n_cal:
        raise ValueError(f"n_opt: must be < the calibration size {n_cal}, got {n_opt}")
    g = check_grid(grid)
    a = _check_alphas(alphas)
    delta = check_level(delta, "delta")
    check_choice(performance, "performance", PERFORMANCE_RISKS)
    check_choice(merge, "merge", MERGES)
    return _calibrate_batch(y, p, e, d, n_opt, g, a, delta, performance, merge, bool(strict))


def _check_alphas(alphas: ArrayLike) -> FloatArray:
    a = np.atleast_1d(as_float_array(alphas, "alphas", ndim=(0, 1)))
    for x in a:
        check_budget(float(x), "alphas")
    return a


def _calibrate_batch(
    y: IntArray,
    p: FloatArray,
    e: FloatArray,
    d: FloatArray,
    n_opt: int,
    g: FloatArray,
    a: FloatArray,
    delta: float,
    performance: str,
    merge: str,
    strict: bool,
) -> BatchCalibration:
    """Kernel of :func:`calibrate_batch` (validated inputs)."""
    n_cal = d.shape[1]
    m = g.size
    n_ht = n_cal - n_opt

    b = _grid_positions(d, g)
    counts_cal = _counts_above(b, m)

    # Budget-only LTT: fixed sequence from the largest τ down on the whole calibration set.
    passed = _pvalue_pass(counts_cal, n_cal, a, delta, strict)[..., ::-1]
    cert = _first_fail_prefix(passed, np.ones_like(passed))
    n_cert = cert.sum(axis=-1)
    budget_only = np.where(n_cert > 0, m - n_cert, -1).astype(np.int64)

    # Plug-in: the smallest τ whose empirical budget is ≤ α (no guarantee).
    ok = counts_cal[None, :, :] <= a[:, None, None] * n_cal
    plug_in = np.where(ok.any(axis=-1), np.argmax(ok, axis=-1), -1).astype(np.int64)

    # Pareto-LTT: front on opt, fixed-sequence on ht along the front, best opt performance.
    b_opt, b_ht = b[:, :n_opt], b[:, n_opt:]
    p_opt, e_opt, y_opt = p[:, :n_opt], e[:, :n_opt], y[:, :n_opt]
    merged = e_opt if merge == "replace" else 0.5 * (p_opt + e_opt)
    budget_opt = _counts_above(b_opt, m)
    if performance == "accuracy":
        wrong_p = ((p_opt >= 0.5) != y_opt.astype(bool)).astype(np.float64)
        wrong_m = ((merged >= 0.5) != y_opt.astype(bool)).astype(np.float64)
        perf = wrong_p.sum(axis=1, keepdims=True) + _counts_above(b_opt, m, wrong_m - wrong_p)
        perf = np.rint(perf)  # integer error counts (exact ties)
    else:
        perf = _batched_auroc_risk(b_opt, p_opt, merged, y_opt, m)
    front = _pareto_front_monotone(budget_opt, perf)
    counts_ht = _counts_above(b_ht, m)
    passed_ht = _pvalue_pass(counts_ht, n_ht, a, delta, strict)[..., ::-1]
    front_rev = np.broadcast_to(front[None, :, ::-1], passed_ht.shape)
    cert_rev = _first_fail_prefix(passed_ht, front_rev)
    perf_rev = np.where(cert_rev, perf[None, :, ::-1], np.inf)
    best_rev = np.argmin(perf_rev, axis=-1)
    pareto = np.where(cert_rev.any(axis=-1), m - 1 - best_rev, -1).astype(np.int64)

    return BatchCalibration(
        alphas=a, delta=delta, grid=g, budget_only=budget_only, pareto=pareto, plug_in=plug_in
    )


@dataclass(frozen=True)
class MethodValidation:
    """Re-split results of one method, arrays of shape (A, R) (A budgets, R re-splits).

    ``realised_budget`` is the delegation rate on the evaluation half (the paper's App. D
    quantity); ``violations`` / ``violation_rate`` count realised > α, a re-split with no
    certified threshold counting as no violation (it never delegates);
    ``conditional_violation_rate`` divides by the re-splits that found a threshold (the
    reference code's convention; NaN if none found).

    ``population_budget`` is the rate of the chosen threshold on the WHOLE table. The calibration
    half is a sample without replacement from the table, and the binomial test stays valid for
    hypergeometric sampling (Hoeffding 1963), so for the valid methods
    P(population budget > α) ≤ δ exactly: ``population_violations`` is the count to hold against
    the binomial tolerance. The evaluation-half rate adds the evaluation half's own sampling
    noise, so its violation rate can exceed δ even for a valid method (typically 5–20 %).
    """

    method: str
    index: IntArray
    found: BoolArray
    realised_budget: FloatArray
    violations: IntArray
    violation_rate: FloatArray
    conditional_violation_rate: FloatArray
    population_budget: FloatArray
    population_violations: IntArray

    def __repr__(self) -> str:
        a, r = self.index.shape
        return "\n".join(
            [
                f"MethodValidation({self.method}: {a} budgets x {r} re-splits, "
                f"{int(self.found.sum())} of {a * r} found)",
                "  " + summarise("violation_rate", self.violation_rate),
                "  " + summarise("population_violations", self.population_violations),
            ]
        )


@dataclass(frozen=True)
class BudgetValidationResult:
    """Paper App. D: violation rates of the budget guarantee over R random re-splits.

    Guarantee being checked: for budget-only LTT and Pareto-LTT, P(realised budget > α) ≤ δ per
    budget — up to the evaluation half's sampling noise, which App. D ignores as the paper does
    (the realised rate on a finite evaluation half is itself random).

    Attributes
    ----------
    alphas, delta
        Budgets and FWER level.
    n_resplits, n_calibration, n_evaluation, n_opt
        Numbers of re-splits and split sizes.
    grid
        Threshold grid.
    budget_only, pareto, plug_in
        Per-method results.
    tolerance
        binom.ppf(1 − 1e−4, R, δ): the most violations a valid method should show.
    """

    alphas: FloatArray
    delta: float
    n_resplits: int
    n_calibration: int
    n_evaluation: int
    n_opt: int
    grid: FloatArray
    budget_only: MethodValidation
    pareto: MethodValidation
    plug_in: MethodValidation
    tolerance: int

    def __repr__(self) -> str:
        def worst(m: MethodValidation) -> str:
            v = int(m.population_violations.max())
            ok = "within" if v <= self.tolerance else "ABOVE"
            return f"{m.method}: max {v} population violations ({ok} tolerance)"

        return "\n".join(
            [
                f"BudgetValidationResult({self.alphas.size} budgets x {self.n_resplits} re-splits, "
                f"delta={self.delta}, tolerance={self.tolerance} violations)",
                f"  n_calibration={self.n_calibration} (opt {self.n_opt}), "
                f"n_evaluation={self.n_evaluation}, grid of {self.grid.size}",
                f"  {worst(self.budget_only)}",
                f"  {worst(self.pareto)}",
                f"  {worst(self.plug_in)} [no guarantee]",
            ]
        )

    def method(self, name: str) -> MethodValidation:
        """The results of ``"budget_only"``, ``"pareto"`` or ``"plug_in"``."""
        check_choice(name, "name", VALIDATION_METHODS)
        result: MethodValidation = getattr(self, name)
        return result


def _method_validation(
    name: str,
    index: IntArray,
    counts_eval: FloatArray,
    n_eval: int,
    alphas: FloatArray,
    counts_all: FloatArray,
    n_all: int,
) -> MethodValidation:
    found = index >= 0
    safe = np.where(found, index, 0)
    counts = np.take_along_axis(counts_eval[None, :, :], safe[..., None], axis=-1)[..., 0]
    counts = np.where(found, counts, 0.0)
    realised = counts / n_eval
    viol = realised > alphas[:, None]
    n_found = found.sum(axis=1)
    n_viol = viol.sum(axis=1)
    cond = np.full(alphas.size, np.nan)
    np.divide(n_viol, n_found, out=cond, where=n_found > 0)
    population = np.where(found, counts_all[safe], 0.0) / n_all
    return MethodValidation(
        method=name,
        index=index,
        found=found,
        realised_budget=realised,
        violations=n_viol.astype(np.int64),
        violation_rate=n_viol / index.shape[1],
        conditional_violation_rate=cond,
        population_budget=population,
        population_violations=(population > alphas[:, None]).sum(axis=1).astype(np.int64),
    )


def validate_budget_guarantee(
    table: CascadeTable,
    *,
    alphas: ArrayLike = 0.3,
    delta: float = 0.1,
    n_resplits: int = 500,
    seed: int = 42,
    calib_fraction: float = 0.5,
    opt_fraction: float = 0.3,
    grid: ArrayLike | None = None,
    performance: PerformanceRisk = "accuracy",
    merge: Merge = "replace",
    strict: bool = False,
) -> BudgetValidationResult:
    """Re-split ``table`` ``n_resplits`` times and measure budget violations (CTD paper App. D).

    ``grid`` defaults to 100 thresholds over the DV scores of the whole table (reference).
    """
    if not isinstance(table, CascadeTable):
        raise TypeError(f"table: expected a CascadeTable, got {type(table).__name__}")
    a = _check_alphas(alphas)
    delta = check_level(delta, "delta")
    check_choice(performance, "performance", PERFORMANCE_RISKS)
    check_choice(merge, "merge", MERGES)
    n_resplits = check_positive_int(n_resplits, "n_resplits")
    calib_fraction = check_level(calib_fraction, "calib_fraction")
    opt_fraction = check_level(opt_fraction, "opt_fraction")
    n = table.n
    n_cal = int(calib_fraction * n)
    n_opt = int(opt_fraction * n_cal)
    if n_cal < 2 or n_cal >= n or n_opt < 1 or n_opt >= n_cal:
        raise ValueError(f"table: {n} rows are too few for the requested splits")
    g = _threshold_grid(table.dv) if grid is None else check_grid(grid)
    cal_rows = np.empty((n_resplits, n_cal), dtype=np.int64)
    eval_rows = np.empty((n_resplits, n - n_cal), dtype=np.int64)
    for r in range(n_resplits):
        perm = np.random.default_rng(seed + r).permutation(n)
        sub = np.random.default_rng(seed + r).permutation(n_cal)
        cal_rows[r] = perm[:n_cal][sub]
        eval_rows[r] = perm[n_cal:]
    batch = _calibrate_batch(
        table.labels[cal_rows],
        table.probe[cal_rows],
        table.expert[cal_rows],
        table.dv[cal_rows],
        n_opt,
        g,
        a,
        delta,
        performance,
        merge,
        bool(strict),
    )
    counts_eval = _counts_above(_grid_positions(table.dv[eval_rows], batch.grid), batch.grid.size)
    n_eval = n - n_cal
    a = batch.alphas
    counts_all = _counts_above(_grid_positions(table.dv[None, :], batch.grid), batch.grid.size)[0]
    extra = (counts_all, n)
    return BudgetValidationResult(
        alphas=a,
        delta=batch.delta,
        n_resplits=n_resplits,
        n_calibration=n_cal,
        n_evaluation=n_eval,
        n_opt=n_opt,
        grid=batch.grid,
        budget_only=_method_validation(
            "budget_only", batch.budget_only, counts_eval, n_eval, a, *extra
        ),
        pareto=_method_validation("pareto", batch.pareto, counts_eval, n_eval, a, *extra),
        plug_in=_method_validation("plug_in", batch.plug_in, counts_eval, n_eval, a, *extra),
        tolerance=violation_tolerance(n_resplits, batch.delta),
    )
