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
With ``groups=`` they also cap each group's rate (one shared τ, or one τ per group):
:mod:`~ctd_stats.cascade.grouped_policies`. The budget-test kernels live in
:mod:`~ctd_stats.cascade._budget_kernels`.
Choices where the sources leave room: fixed-sequence rejects p ≤ δ by default (``strict=True``:
p < δ, the reference code); a budget with no certified threshold means "never delegate" (τ = +∞,
``found=False`` with the reason and, when the sample is simply too small, ``min_n``).
"""

from __future__ import annotations

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
from ..grouped import Caps
from ..splits import split_indices

# isort: off
from ._budget_kernels import (  # re-exported for budget_validation and selective
    best_certified as best_certified,
    budget_pvalues as budget_pvalues,
    certify_descending as certify_descending,
    counts_above as counts_above,
    delegated_counts as delegated_counts,
    grid_positions as grid_positions,
    min_n_split as min_n_split,
    min_n_test as min_n_test,
    pareto_front_sorted as pareto_front_sorted,
    passes as passes,
)

# isort: on
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


def pareto_split(data: ParetoData, n: int) -> tuple[IntArray, IntArray]:
    """The opt / ht split of the calibration set (``default_rng(seed)`` permutation)."""
    split = split_indices(n, first_fraction=data.opt_fraction, seed=data.seed)
    check_both_classes(data.labels[split.first])
    return split.first, split.second


def opt_front(
    data: ParetoData, signal: FloatArray, grid: FloatArray, opt: IntArray
) -> tuple[FloatArray, FloatArray, BoolArray, IntArray]:
    """Opt-split performance risk and budget per τ, the Pareto-front mask, the front (τ down)."""
    opt_perf = performance_risk_unchecked(
        data.labels[opt],
        data.probe[opt],
        data.expert[opt],
        signal[opt],
        grid,
        data.performance,
        data.merge,
    )
    opt_budget = delegated_counts(signal[opt], grid) / opt.size
    descending = np.arange(grid.size - 1, -1, -1)
    on_front = pareto_front_sorted(opt_budget[None, :], opt_perf[None, :])[0]
    return opt_perf, opt_budget, on_front, descending[on_front[descending]]


def pareto_settings(data: ParetoData) -> dict[str, Any]:
    return {
        "performance": data.performance,
        "merge": data.merge,
        "opt_fraction": data.opt_fraction,
        "seed": data.seed,
        "strict": data.strict,
    }


def pareto_sha256(
    data: ParetoData, signal: FloatArray, reference: FloatArray | None, *extra: IntArray
) -> str:
    """sha256 of what the calibration saw: the signal (the probe for the uncertainty signal)."""
    seen = signal if reference is None else data.probe
    return array_sha256(np.stack([seen, data.probe, data.expert, data.labels, *extra]))


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
    delta, strict, opt_fraction = data.delta, data.strict, data.opt_fraction
    opt, ht = pareto_split(data, signal.size)
    opt_perf, opt_budget, on_front, front = opt_front(data, signal, grid, opt)
    ht_counts = delegated_counts(signal[ht], grid)
    n_ht = int(ht.size)
    settings = pareto_settings(data)
    sha256 = pareto_sha256(data, signal, reference)
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
    groups: ArrayLike | None = None,
    group_alpha: Caps | None = None,
    per_group: bool = False,
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

    With ``groups`` (one label per calibration row) and ``group_alpha`` (the cap α_g: one
    number, a mapping group → cap, or a sequence in sorted-label order; default α for every
    group) each group's delegation rate is capped too (:mod:`~ctd_stats.cascade.grouped_policies`):
    by default one shared threshold with P(overall rate ≤ α and every R_g ≤ α_g) ≥ 1 − δ
    (intersection–union, no correction); ``per_group=True`` one threshold per group with
    P(every R_g(τ_g) ≤ α_g) ≥ 1 − δ (Bonferroni δ/G; caps ≤ α). Method ``"ctd_grouped"``.
    """
    data, alpha = _pareto_iv(
        labels, probe, expert, alpha, delta, performance, merge, opt_fraction, seed, strict
    )
    d = as_float_array(dv, "dv", ndim=1)
    if d.size != data.probe.size:
        raise ValueError(f"dv: length {d.size} does not match probe (length {data.probe.size})")
    g = threshold_grid_unchecked(d) if grid is None else check_grid(grid)
    from . import grouped_policies as gp  # imports this module

    if groups is None:
        gp.no_groups_iv(group_alpha, per_group)
        return pareto_ltt(data, CTD, "dv", d, g, [alpha], None)[0]
    spec = gp.group_caps_iv(groups, group_alpha, per_group, d.size, alpha)
    return gp.pareto_ltt_grouped(data, CTD, "dv", d, g, alpha, None, spec)


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
    groups: ArrayLike | None = None,
    group_alpha: Caps | None = None,
    per_group: bool = False,
) -> ThresholdCalibration:
    """ "Unc. calibrated": the CTD procedure on u(x) = −|F̂(p(x)) − 0.5|.

    F̂ is the empirical CDF of the calibration probe scores (stored as ``reference``; at
    deployment :meth:`ThresholdCalibration.delegate` takes probe scores). ``grid`` defaults to
    linspace(min u − 0.01, max u + 0.01, 100) over the calibration u. Same guarantee as CTD;
    ``groups``, ``group_alpha``, ``per_group`` as for :func:`calibrate_ctd` (method
    ``"unc_calibrated_grouped"``).
    """
    data, alpha = _pareto_iv(
        labels, probe, expert, alpha, delta, performance, merge, opt_fraction, seed, strict
    )
    ref = np.sort(data.probe)
    u = uncertainty_from_sorted(data.probe, ref)
    g = threshold_grid_unchecked(u) if grid is None else check_grid(grid)
    from . import grouped_policies as gp  # imports this module

    if groups is None:
        gp.no_groups_iv(group_alpha, per_group)
        return pareto_ltt(data, UNC_CALIBRATED, "uncertainty", u, g, [alpha], ref)[0]
    spec = gp.group_caps_iv(groups, group_alpha, per_group, u.size, alpha)
    return gp.pareto_ltt_grouped(data, UNC_CALIBRATED, "uncertainty", u, g, alpha, ref, spec)


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
    groups: ArrayLike | None = None,
    group_alpha: Caps | None = None,
    per_group: bool = False,
) -> ThresholdCalibration:
    """Budget-only LTT: certify τ from the largest down, return the smallest certified τ.

    Uses the whole calibration set (no opt/ht split, as the reference). Guarantee: with
    probability ≥ 1 − δ every certified τ — hence the returned one — has true budget ≤ α
    (Learn-then-Test, CTD paper §3). ``groups``, ``group_alpha``, ``per_group`` as for
    :func:`calibrate_ctd`, without the opt split (method ``"budget_only_grouped"``; per group
    the smallest certified τ of each group).
    """
    alpha = check_budget(alpha)
    delta = check_level(delta, "delta")
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict: expected a bool, got {type(strict).__name__}")
    s = as_float_array(scores, "scores", ndim=1)
    g = threshold_grid_unchecked(s) if grid is None else check_grid(grid)
    from . import grouped_policies as gp  # imports this module

    if groups is None:
        gp.no_groups_iv(group_alpha, per_group)
        return budget_only_unchecked(s, g, alpha, delta, bool(strict), array_sha256(s))
    spec = gp.group_caps_iv(groups, group_alpha, per_group, s.size, alpha)
    sha256 = array_sha256(np.stack([s, spec.inverse]))
    return gp.budget_only_grouped(s, g, alpha, delta, bool(strict), sha256, spec)


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
