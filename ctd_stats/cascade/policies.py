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

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._serialize import array_sha256
from .._validation import (
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_level,
)
from ..fwer import fixed_sequence
from ..pareto import pareto_front
from ..splits import split_indices
from .calibration import BUDGET_ONLY, CTD, PLUG_IN, UNC_CALIBRATED, ThresholdCalibration
from .metrics import MERGES, Merge, _both_classes, _probabilities, _same_length
from .signals import (
    PERFORMANCE_RISKS,
    PerformanceRisk,
    Signal,
    _budget_pvalues,
    _counts_above,
    _min_n_split,
    _min_n_test,
    _performance_risk,
    _threshold_grid,
    _uncertainty,
    check_budget,
    check_grid,
)

__all__ = [
    "calibrate_budget_only",
    "calibrate_ctd",
    "calibrate_plug_in",
    "calibrate_uncertainty",
]


def _not_found_reason(
    k: int, n_test: int, p: float, alpha: float, delta: float, strict: bool
) -> tuple[str, bool]:
    """Why the first (least aggressive) tested threshold failed; True if n_test is the cause."""
    rule = "<" if strict else "<="
    if n_test < _min_n_test(alpha, delta, strict):
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


def _pareto_ltt(
    *,
    method: str,
    signal_kind: Signal,
    signal: FloatArray,
    probe: FloatArray,
    expert: FloatArray,
    labels: IntArray,
    grid: FloatArray,
    alphas: list[float],
    delta: float,
    performance: str,
    merge: str,
    opt_fraction: float,
    seed: int,
    strict: bool,
    reference: FloatArray | None,
    sha256: str,
) -> list[ThresholdCalibration]:
    """Pareto-LTT kernel at several budgets; the opt risks and the front do not depend on α."""
    split = split_indices(signal.size, first_fraction=opt_fraction, seed=seed)
    opt, ht = split.first, split.second
    _both_classes(labels[opt])
    opt_perf = _performance_risk(
        labels[opt], probe[opt], expert[opt], signal[opt], grid, performance, merge
    )
    opt_budget = _counts_above(signal[opt], grid) / opt.size
    ht_counts = _counts_above(signal[ht], grid)
    m, n_ht = grid.size, int(ht.size)
    descending = np.arange(m - 1, -1, -1)
    on_front = pareto_front(np.column_stack([opt_budget, opt_perf]))
    front = descending[on_front[descending]]
    settings: dict[str, Any] = {
        "performance": performance,
        "merge": merge,
        "opt_fraction": opt_fraction,
        "seed": seed,
        "strict": strict,
    }
    out: list[ThresholdCalibration] = []
    for alpha in alphas:
        pvals = _budget_pvalues(ht_counts, n_ht, alpha)
        tested = fixed_sequence(pvals, delta, order=front, strict=strict)
        index: int | None = None
        reason: str | None = None
        min_n: int | None = None
        if tested.n_rejected:
            # argmin returns the first minimum: the least aggressive among ties.
            index = int(tested.indices[np.argmin(opt_perf[tested.indices])])
        else:
            j = int(front[0])
            reason, small = _not_found_reason(
                int(ht_counts[j]), n_ht, float(pvals[j]), alpha, delta, strict
            )
            if small:
                min_n = _min_n_split(_min_n_test(alpha, delta, strict), opt_fraction)
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
                certified=tested.rejected,
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
) -> tuple[IntArray, FloatArray, FloatArray, float, float, float]:
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
    p = _probabilities(probe, "probe")
    e = _probabilities(expert, "expert")
    _same_length(p, e, y)
    if y.size < 4:
        raise ValueError(f"labels: need at least 4 calibration points, got {y.size}")
    return y, p, e, alpha, delta, opt_fraction


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
    y, p, e, alpha, delta, opt_fraction = _pareto_iv(
        labels, probe, expert, alpha, delta, performance, merge, opt_fraction, seed, strict
    )
    d = as_float_array(dv, "dv", ndim=1)
    if d.size != p.size:
        raise ValueError(f"dv: length {d.size} does not match probe (length {p.size})")
    g = _threshold_grid(d) if grid is None else check_grid(grid)
    return _pareto_ltt(
        method=CTD,
        signal_kind="dv",
        signal=d,
        probe=p,
        expert=e,
        labels=y,
        grid=g,
        alphas=[alpha],
        delta=delta,
        performance=performance,
        merge=merge,
        opt_fraction=opt_fraction,
        seed=int(seed),
        strict=bool(strict),
        reference=None,
        sha256=array_sha256(np.stack([d, p, e, y])),
    )[0]


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
    y, p, e, alpha, delta, opt_fraction = _pareto_iv(
        labels, probe, expert, alpha, delta, performance, merge, opt_fraction, seed, strict
    )
    ref = np.sort(p)
    u = _uncertainty(p, ref)
    g = _threshold_grid(u) if grid is None else check_grid(grid)
    return _pareto_ltt(
        method=UNC_CALIBRATED,
        signal_kind="uncertainty",
        signal=u,
        probe=p,
        expert=e,
        labels=y,
        grid=g,
        alphas=[alpha],
        delta=delta,
        performance=performance,
        merge=merge,
        opt_fraction=opt_fraction,
        seed=int(seed),
        strict=bool(strict),
        reference=ref,
        sha256=array_sha256(np.stack([p, p, e, y])),
    )[0]


def _budget_only(
    s: FloatArray, g: FloatArray, alpha: float, delta: float, strict: bool, sha256: str
) -> ThresholdCalibration:
    """Budget-only LTT kernel (validated inputs)."""
    counts = _counts_above(s, g)
    m, n = g.size, int(s.size)
    pvals = _budget_pvalues(counts, n, alpha)
    tested = fixed_sequence(pvals, delta, order="descending", strict=strict)
    certified = tested.rejected
    index = int(np.flatnonzero(certified).min()) if certified.any() else None
    reason: str | None = None
    min_n: int | None = None
    if index is None:
        reason, small = _not_found_reason(
            int(counts[-1]), n, float(pvals[-1]), alpha, delta, strict
        )
        min_n = _min_n_test(alpha, delta, strict) if small else None
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
    g = _threshold_grid(s) if grid is None else check_grid(grid)
    return _budget_only(s, g, alpha, delta, bool(strict), array_sha256(s))


def _plug_in(s: FloatArray, g: FloatArray, alpha: float, sha256: str) -> ThresholdCalibration:
    counts = _counts_above(s, g)
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
    g = _threshold_grid(s) if grid is None else check_grid(grid)
    return _plug_in(s, g, alpha, array_sha256(s))
