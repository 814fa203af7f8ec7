"""CTD, "Unc. calibrated" and budget-only LTT with a delegation cap per group (beyond the papers).

The rule stays "delegate iff signal > τ" (CTD paper §4.2); calibration rows carry a group g (a
tenant, a product surface) and R_g(τ) = P(signal > τ | g) is group g's delegation rate, capped
at α_g. Both modes are :func:`ctd_stats.grouped.learn_then_test_grouped` on the per-group
counts of :func:`ctd_stats.grouped.group_counts_above` (one implementation of the grouped
p-values and FWER control), reached through ``groups=`` of
:func:`~ctd_stats.cascade.calibrate_ctd`, :func:`~ctd_stats.cascade.calibrate_uncertainty` and
:func:`~ctd_stats.cascade.calibrate_budget_only`:

shared (default)
    One threshold. H0(τ) = {R(τ) > α} ∪ ⋃_g {R_g(τ) > α_g} has the valid p-value
    max(p_all, max_g p_g) (intersection–union, Berger 1982), tested by fixed-sequence LTT at δ
    with no correction (Angelopoulos et al. 2022, Thm. 1) — along the opt split's Pareto front
    for CTD (Laufer-Goldshtein et al. 2023), as the ungrouped CTD. Guarantee: with probability
    ≥ 1 − δ the chosen τ has overall rate ≤ α and every group's rate ≤ its cap, at once. No
    group is needed at decision time.
``per_group=True``
    One threshold per group: fixed-sequence LTT on each group's test rows at δ/G (Bonferroni,
    a union bound: valid for any dependence), CTD choosing along the group's own opt-split
    Pareto front. Guarantee: with probability ≥ 1 − δ every group's rate is ≤ its cap, for all
    groups at once; every cap must be ≤ α, so the overall rate Σ_g π_g R_g(τ_g) ≤ α for any
    group mix π. The group of each input must be known when it is decided.

Why testing the whole grid (per group) certifies the same front points as testing the front:
counts above τ fall as τ grows, so the binomial p-values do too, and the points that pass form
an upper set of τ; fixed-sequence from the top certifies exactly the passing tested points.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._validation import BoolArray, FloatArray, IntArray, plain
from ..fwer import Order
from ..grouped import (
    Caps,
    GroupedLTTResult,
    GroupLabel,
    caps_iv,
    group_counts_above,
    group_labels,
    learn_then_test_grouped,
)
from ._budget_kernels import best_certified, delegated_counts, min_n_split
from .calibration import (
    BUDGET_ONLY_GROUPED,
    CTD_GROUPED,
    UNC_CALIBRATED_GROUPED,
    ThresholdCalibration,
)
from .policies import (
    ParetoData,
    opt_front,
    pareto_settings,
    pareto_sha256,
    pareto_split,
)
from .signals import Signal

__all__: list[str] = []  # reached through calibrate_ctd(groups=...) and friends

_GROUPED_NAMES = {"ctd": CTD_GROUPED, "unc_calibrated": UNC_CALIBRATED_GROUPED}


@dataclass(frozen=True)
class GroupCaps:
    """Validated groups of the calibration rows: labels (sorted), each row's index, the caps."""

    labels: tuple[GroupLabel, ...]
    inverse: IntArray
    caps: FloatArray
    per_group: bool


def group_caps_iv(
    groups: ArrayLike,
    group_alpha: Caps | None,
    per_group: bool,
    n: int,
    alpha: float,
    name: str = "groups",
) -> GroupCaps:
    """Check ``groups`` (one label per row), ``group_alpha`` (default: α for every group)."""
    if not isinstance(per_group, (bool, np.bool_)):
        raise TypeError(f"per_group: expected a bool, got {type(per_group).__name__}")
    labels, inverse = group_labels(groups, name)
    if inverse.size != n:
        raise ValueError(f"{name}: length {inverse.size} does not match the {n} calibration rows")
    if group_alpha is None:
        if alpha >= 1.0:
            raise ValueError("group_alpha: required when alpha = 1 (a cap must be below 1)")
        group_alpha = alpha
    caps = caps_iv(group_alpha, labels, "group_alpha")
    if per_group and (caps > alpha).any():
        g = int(np.argmax(caps > alpha))
        raise ValueError(
            f"group_alpha: with per_group=True every cap must be <= alpha={plain(alpha)} (so the "
            f"overall budget holds for any group mix); group {labels[g]!r} has {float(caps[g])!r}"
        )
    return GroupCaps(labels, inverse, caps, bool(per_group))


def no_groups_iv(group_alpha: object, per_group: object) -> None:
    """``group_alpha`` and ``per_group`` need ``groups``."""
    if group_alpha is not None:
        raise ValueError("group_alpha: only used with groups= (one label per calibration row)")
    if per_group is not False:
        raise ValueError("per_group: only used with groups= (one label per calibration row)")


def _present(inverse: IntArray, labels: tuple[GroupLabel, ...], where: str) -> None:
    """Every group needs rows in ``where`` (a split of the calibration set)."""
    sizes = np.bincount(inverse, minlength=len(labels))
    if (sizes == 0).any():
        g = labels[int(np.argmin(sizes))]
        raise ValueError(
            f"groups: group {plain(g)} has no rows in the {where}; it cannot be calibrated "
            "(more calibration rows for it, or merge it with another group)"
        )


def _ltt(
    spec: GroupCaps,
    signal: FloatArray,
    inverse: IntArray,
    grid: FloatArray,
    alpha: float,
    delta: float,
    strict: bool,
    order: Order,
) -> GroupedLTTResult:
    """The grouped LTT of "signal > τ" on the test rows: shared or simultaneous (Bonferroni)."""
    c = group_counts_above(signal, groups=inverse, grid=grid)
    shared = not spec.per_group
    return learn_then_test_grouped(
        counts=c.counts,
        n=c.n,
        groups=spec.labels,
        alpha=spec.caps,
        delta=delta,
        order=order,
        mode="shared" if shared else "simultaneous",
        correction="bonferroni",
        overall_alpha=alpha if shared and alpha < 1.0 else None,
        procedure="fixed_sequence",
        strict=strict,
    )


def _min_n(res: GroupedLTTResult) -> int | None:
    """Test rows a too-small group would need (the largest over such groups), else ``None``."""
    short = (res.min_n >= 0) & (res.n < res.min_n) & ~res.found
    return int(res.min_n[short].max()) if short.any() else None


def _calibration(
    res: GroupedLTTResult,
    spec: GroupCaps,
    grid: FloatArray,
    group_certified: BoolArray,
    group_index: IntArray,
    **common: Any,
) -> ThresholdCalibration:
    """The :class:`ThresholdCalibration` of a grouped result (chosen grid index per group)."""
    g_thr = np.where(group_index >= 0, grid[np.maximum(group_index, 0)], np.inf)
    if spec.per_group:
        found = bool((group_index >= 0).all())
        index = int(group_index.max()) if found else None
        certified = np.logical_and.reduce(group_certified, axis=0)
        pvalues = res.pvalues.max(axis=0)
        reason = next((r for r in res.reason if r is not None), None)
        if found is False and reason is None:
            reason = "a group certified thresholds but none on its Pareto front"
    else:
        index = None if group_index[0] < 0 else int(group_index[0])
        found = index is not None
        certified = res.certified[0]
        assert res.shared_pvalues is not None
        pvalues = res.shared_pvalues
        reason = res.reason[0]
    return ThresholdCalibration(
        found=found,
        threshold=float("inf") if index is None else float(grid[index]),
        index=index,
        reason=None if found else reason,
        grid=grid,
        certified=certified,
        pvalues=pvalues,
        groups=spec.labels,
        group_mode="per_group" if spec.per_group else "shared",
        group_alpha=spec.caps,
        group_delta=res.group_delta,
        group_thresholds=g_thr,
        group_found=group_index >= 0,
        group_certified=group_certified,
        group_pvalues=res.pvalues,
        group_n_test=res.n,
        group_reasons=tuple(
            None if i >= 0 else (r or "nothing certified on the group's Pareto front")
            for i, r in zip(group_index.tolist(), res.reason, strict=True)
        ),
        **common,
    )


def pareto_ltt_grouped(
    data: ParetoData,
    method: str,
    signal_kind: Signal,
    signal: FloatArray,
    grid: FloatArray,
    alpha: float,
    reference: FloatArray | None,
    spec: GroupCaps,
) -> ThresholdCalibration:
    """Grouped Pareto-LTT (CTD / "Unc. calibrated") at one budget α and the caps of ``spec``."""
    opt, ht = pareto_split(data, signal.size)
    _present(spec.inverse[opt], spec.labels, "opt split")
    _present(spec.inverse[ht], spec.labels, "hypothesis-testing split")
    opt_perf, opt_budget, _, front = opt_front(data, signal, grid, opt)
    n_groups = len(spec.labels)
    # Per group every point is tested (each group has its own front); shared: the front.
    order: Order = "descending" if spec.per_group else front
    res = _ltt(spec, signal[ht], spec.inverse[ht], grid, alpha, data.delta, data.strict, order)
    if spec.per_group:
        fronts = np.empty((n_groups, grid.size), dtype=bool)
        chosen = np.empty(n_groups, dtype=np.int64)
        for g in range(n_groups):
            rows = opt[spec.inverse[opt] == g]
            if data.performance == "auroc":
                n1 = int(data.labels[rows].sum())
                if n1 == 0 or n1 == rows.size:
                    raise ValueError(
                        f"labels: group {plain(spec.labels[g])} needs both classes in its opt "
                        "split "
                        "for performance='auroc' with per_group=True"
                    )
            with np.errstate(invalid="ignore", divide="ignore"):  # one-class AUROC: unused
                perf_g, _, on_front_g, _ = opt_front(data, signal, grid, rows)
            fronts[g] = res.certified[g] & on_front_g
            chosen[g] = best_certified(fronts[g], perf_g)
        group_certified = fronts
    else:
        group_certified = res.certified
        chosen = np.full(n_groups, best_certified(res.certified[0], opt_perf), dtype=np.int64)
    cal = _calibration(
        res,
        spec,
        grid,
        group_certified,
        chosen,
        method=_GROUPED_NAMES[method],
        signal=signal_kind,
        alpha=float(alpha),
        delta=data.delta,
        min_n=None,
        front=front,
        opt_budget=opt_budget,
        opt_performance=opt_perf,
        n_opt=int(opt.size),
        n_test=int(ht.size),
        reference=reference,
        calibration_sha256=pareto_sha256(data, signal, reference, spec.inverse),
        settings=pareto_settings(data),
    )
    short = _min_n(res)
    if short is None or cal.found:
        return cal
    return replace(cal, min_n=min_n_split(short, data.opt_fraction))


def budget_only_grouped(
    s: FloatArray,
    g: FloatArray,
    alpha: float,
    delta: float,
    strict: bool,
    sha256: str,
    spec: GroupCaps,
) -> ThresholdCalibration:
    """Grouped budget-only LTT on the whole calibration set: the smallest certified τ."""
    res = _ltt(spec, s, spec.inverse, g, alpha, delta, strict, "descending")
    m = g.size
    chosen = np.array(
        [int(np.flatnonzero(c).min()) if c.any() else -1 for c in res.certified], dtype=np.int64
    )
    return _calibration(
        res,
        spec,
        g,
        res.certified,
        chosen,
        method=BUDGET_ONLY_GROUPED,
        signal="dv",
        alpha=alpha,
        delta=delta,
        min_n=None if chosen.min() >= 0 else _min_n(res),
        front=np.arange(m - 1, -1, -1, dtype=np.int64),
        opt_budget=delegated_counts(s, g) / s.size,
        opt_performance=np.full(m, np.nan),
        n_opt=0,
        n_test=int(s.size),
        calibration_sha256=sha256,
        settings={"strict": strict},
    )
