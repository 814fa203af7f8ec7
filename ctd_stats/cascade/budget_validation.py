"""Empirical validation of the CTD budget guarantee (CTD paper App. D), vectorised.

The guarantee of budget-only LTT and of Pareto-LTT is P(R_B(τ̂) > α) ≤ δ over the calibration
data. App. D checks it by re-splitting a fixed table R times into calibration / evaluation halves,
calibrating on each calibration half and measuring the realised delegation rate on the evaluation
half; the violation rate should be about δ or below. An uncorrected plug-in threshold is run
alongside as a negative control (it violates about half the time).

Speed: everything is computed from integer counts. Each score is mapped once to its grid
position b = #{τ_j < d}; "d > τ_j" is then "j < b", so per-threshold counts for all re-splits are
one ``bincount`` + ``cumsum``; p-values for all budgets × re-splits × thresholds come from one
binomial CDF call per budget. The counts, the fixed-sequence step, the Pareto front and the
choice among certified thresholds are the kernels of the single calibrations
(:mod:`~ctd_stats.cascade.policies`: ``counts_above``, ``certify_descending``,
``pareto_front_sorted``, ``best_certified``), applied with a leading batch axis. R = 500
re-splits × 20 budgets run in well under a second (see ``bench/sections/app_d.py``).

Conventions (as the reference code, CTD paper §5.1 / App. D): re-split r uses
``default_rng(seed + r)`` for the calibration / evaluation permutation (first
``calibration_fraction`` = calibration) and again ``default_rng(seed + r)`` for the opt / ht
permutation of the calibration half (first ``opt_fraction`` = opt). Budget-only LTT and the
plug-in use the whole calibration half. A re-split where no threshold is certified never
delegates (realised budget 0, no violation); the reference code instead drops such re-splits from
the denominator — both rates are reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .._repr import result_repr
from .._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_grid,
    check_level,
    check_levels,
    check_positive_int,
)
from .calibration import BUDGET_ONLY, CTD, PLUG_IN
from .metrics import MERGES, CascadeTable, Merge
from .policies import (
    best_certified,
    budget_pvalues,
    certify_descending,
    counts_above,
    grid_positions,
    pareto_front_sorted,
)
from .signals import PERFORMANCE_RISKS, PerformanceRisk, threshold_grid_unchecked

__all__ = [
    "VALIDATION_METHODS",
    "BatchCalibration",
    "BudgetValidationResult",
    "MethodValidation",
    "calibrate_batch",
    "validate_budget_guarantee",
    "violation_tolerance",
]

VALIDATION_METHODS: Final[tuple[str, ...]] = (BUDGET_ONLY, CTD, PLUG_IN)


def violation_tolerance(n_runs: int, *, delta: float, confidence: float = 1e-4) -> int:
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

    Guarantee: for ``budget_only`` and ``ctd`` (Pareto-LTT), for each budget α and each
    calibration set drawn exchangeably with deployment data, P(true budget of the chosen τ > α)
    ≤ δ. ``plug_in`` has no guarantee.
    """

    alpha: FloatArray
    delta: float
    grid: FloatArray
    budget_only: IntArray
    ctd: IntArray
    plug_in: IntArray

    def __repr__(self) -> str:
        a, r = self.budget_only.shape
        head = f"n_budgets={a}, n_calibration_sets={r}, delta={self.delta}"
        found = [(f"found ({m})", f"{int((getattr(self, m) >= 0).sum())} of {a * r}")
                 for m in VALIDATION_METHODS]  # fmt: skip
        return result_repr("BatchCalibration", head, found)


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


def _pvalue_pass(
    counts: FloatArray, n: int, alpha: FloatArray, delta: float, strict: bool
) -> BoolArray:
    """(A, R, m) mask of binomial p-value ≤ δ (or < δ) for H0: budget > α.

    The p-value P(Bin(n, α) ≤ k) increases with k, so it passes exactly for k ≤ k_max(α): one
    CDF evaluation per possible count (A × (n + 1)) instead of one per (budget, row, threshold).
    The p-values are the single calibrations' :func:`~ctd_stats.cascade.policies.budget_pvalues`.
    """
    k = np.arange(n + 1)
    cdf = np.stack([budget_pvalues(k, n, float(a)) for a in alpha])
    ok = np.asarray(cdf < delta) if strict else np.asarray(cdf <= delta)
    k_max = ok.sum(axis=1) - 1  # −1: not even k = 0 passes
    return np.asarray(counts[None, :, :] <= k_max[:, None, None])


def calibrate_batch(
    labels: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    dv: ArrayLike,
    *,
    n_opt: int,
    grid: ArrayLike,
    alpha: float | ArrayLike,
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
    a = check_levels(alpha, "alpha", closed_right=True)
    delta = check_level(delta, "delta")
    check_choice(performance, "performance", PERFORMANCE_RISKS)
    check_choice(merge, "merge", MERGES)
    return _calibrate_batch(y, p, e, d, n_opt, g, a, delta, performance, merge, bool(strict))


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

    b = grid_positions(d, g)
    counts_cal = counts_above(b, m)

    # Budget-only LTT: fixed sequence from the largest τ down on the whole calibration set.
    passed = _pvalue_pass(counts_cal, n_cal, a, delta, strict)
    cert = certify_descending(passed, np.ones_like(passed))
    n_cert = cert.sum(axis=-1)
    budget_only = np.where(n_cert > 0, m - n_cert, -1).astype(np.int64)

    # Plug-in: the smallest τ whose empirical budget is ≤ α (no guarantee).
    ok = counts_cal[None, :, :] <= a[:, None, None] * n_cal
    plug_in = np.where(ok.any(axis=-1), np.argmax(ok, axis=-1), -1).astype(np.int64)

    # Pareto-LTT: front on opt, fixed-sequence on ht along the front, best opt performance.
    b_opt, b_ht = b[:, :n_opt], b[:, n_opt:]
    p_opt, e_opt, y_opt = p[:, :n_opt], e[:, :n_opt], y[:, :n_opt]
    merged = e_opt if merge == "replace" else 0.5 * (p_opt + e_opt)
    budget_opt = counts_above(b_opt, m)
    if performance == "accuracy":
        wrong_p = ((p_opt >= 0.5) != y_opt.astype(bool)).astype(np.float64)
        wrong_m = ((merged >= 0.5) != y_opt.astype(bool)).astype(np.float64)
        perf = wrong_p.sum(axis=1, keepdims=True) + counts_above(b_opt, m, wrong_m - wrong_p)
        perf = np.rint(perf)  # integer error counts (exact ties)
    else:
        perf = _batched_auroc_risk(b_opt, p_opt, merged, y_opt, m)
    front = pareto_front_sorted(budget_opt, perf)
    counts_ht = counts_above(b_ht, m)
    passed_ht = _pvalue_pass(counts_ht, n_ht, a, delta, strict)
    cert = certify_descending(passed_ht, np.broadcast_to(front[None], passed_ht.shape))
    ctd = best_certified(cert, perf[None])

    return BatchCalibration(
        alpha=a, delta=delta, grid=g, budget_only=budget_only, ctd=ctd, plug_in=plug_in
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
        head = f"method={self.method}, n_budgets={a}, n_resplits={r}"
        found = ("found", f"{int(self.found.sum())} of {a * r}")
        return result_repr(self, head, [found, "violation_rate", "population_violations"])


@dataclass(frozen=True)
class BudgetValidationResult:
    """Paper App. D: violation rates of the budget guarantee over R random re-splits.

    Guarantee being checked: for budget-only LTT and Pareto-LTT, P(realised budget > α) ≤ δ per
    budget — up to the evaluation half's sampling noise, which App. D ignores as the paper does
    (the realised rate on a finite evaluation half is itself random).

    Attributes
    ----------
    alpha, delta
        Budgets (1-d, one per row of the method arrays) and FWER level.
    n_resplits, n_calibration, n_evaluation, n_opt
        Numbers of re-splits and split sizes.
    grid
        Threshold grid.
    budget_only, ctd, plug_in
        Per-method results.
    tolerance
        binom.ppf(1 − 1e−4, R, δ): the most violations a valid method should show.
    """

    alpha: FloatArray
    delta: float
    n_resplits: int
    n_calibration: int
    n_evaluation: int
    n_opt: int
    grid: FloatArray
    budget_only: MethodValidation
    ctd: MethodValidation
    plug_in: MethodValidation
    tolerance: int

    def __repr__(self) -> str:
        def worst(m: MethodValidation) -> str:
            v = int(m.population_violations.max())
            ok = "within" if v <= self.tolerance else "ABOVE"
            note = " [no guarantee]" if m.method == PLUG_IN else ""
            return f"max {v} population violations ({ok} tolerance){note}"

        head = (
            f"n_budgets={self.alpha.size}, n_resplits={self.n_resplits}, delta={self.delta}, "
            f"tolerance={self.tolerance}"
        )
        lines: list[tuple[str, Any]] = [
            ("n", f"calibration {self.n_calibration} (opt {self.n_opt}), "
                  f"evaluation {self.n_evaluation}"),
            ("grid", self.grid),
        ]  # fmt: skip
        lines += [(m, worst(getattr(self, m))) for m in VALIDATION_METHODS]
        return result_repr("BudgetValidationResult", head, lines)

    def method(self, name: str) -> MethodValidation:
        """The results of ``"budget_only"``, ``"ctd"`` or ``"plug_in"``."""
        check_choice(name, "name", VALIDATION_METHODS)
        result: MethodValidation = getattr(self, name)
        return result


def _method_validation(
    name: str,
    index: IntArray,
    counts_eval: FloatArray,
    n_eval: int,
    alpha: FloatArray,
    counts_all: FloatArray,
    n_all: int,
) -> MethodValidation:
    found = index >= 0
    safe = np.where(found, index, 0)
    counts = np.take_along_axis(counts_eval[None, :, :], safe[..., None], axis=-1)[..., 0]
    counts = np.where(found, counts, 0.0)
    realised = counts / n_eval
    viol = realised > alpha[:, None]
    n_found = found.sum(axis=1)
    n_viol = viol.sum(axis=1)
    cond = np.full(alpha.size, np.nan)
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
        population_violations=(population > alpha[:, None]).sum(axis=1).astype(np.int64),
    )


def validate_budget_guarantee(
    table: CascadeTable,
    *,
    alpha: float | ArrayLike = 0.3,
    delta: float = 0.1,
    n_resplits: int = 500,
    seed: int = 42,
    calibration_fraction: float = 0.5,
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
    a = check_levels(alpha, "alpha", closed_right=True)
    delta = check_level(delta, "delta")
    check_choice(performance, "performance", PERFORMANCE_RISKS)
    check_choice(merge, "merge", MERGES)
    n_resplits = check_positive_int(n_resplits, "n_resplits")
    calibration_fraction = check_level(calibration_fraction, "calibration_fraction")
    opt_fraction = check_level(opt_fraction, "opt_fraction")
    n = table.n
    n_cal = int(calibration_fraction * n)
    n_opt = int(opt_fraction * n_cal)
    if n_cal < 2 or n_cal >= n or n_opt < 1 or n_opt >= n_cal:
        raise ValueError(f"table: {n} rows are too few for the requested splits")
    g = threshold_grid_unchecked(table.dv) if grid is None else check_grid(grid)
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
    counts_eval = counts_above(grid_positions(table.dv[eval_rows], batch.grid), batch.grid.size)
    n_eval = n - n_cal
    a = batch.alpha
    counts_all = counts_above(grid_positions(table.dv[None, :], batch.grid), batch.grid.size)[0]
    extra = (counts_all, n)
    return BudgetValidationResult(
        alpha=a,
        delta=batch.delta,
        n_resplits=n_resplits,
        n_calibration=n_cal,
        n_evaluation=n_eval,
        n_opt=n_opt,
        grid=batch.grid,
        budget_only=_method_validation(
            BUDGET_ONLY, batch.budget_only, counts_eval, n_eval, a, *extra
        ),
        ctd=_method_validation(CTD, batch.ctd, counts_eval, n_eval, a, *extra),
        plug_in=_method_validation(PLUG_IN, batch.plug_in, counts_eval, n_eval, a, *extra),
        tolerance=violation_tolerance(n_resplits, delta=batch.delta),
    )
