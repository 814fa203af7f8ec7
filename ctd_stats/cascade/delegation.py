"""Delegation policies for probe–expert cascades: Calibrate-Then-Delegate and its baselines.

Signals
    The DV score d(x) (given, from a DV probe) and the uncertainty score of McKenzie et al.,
    u(x) = −|F̂(p(x)) − 0.5| with F̂ the empirical CDF of a *reference* sample of probe scores
    (``searchsorted(side="left") / n``, SPEC §5). Both are "delegate iff signal > τ" (strict).

Calibrated threshold policies (one decision per input, no batch statistics)
    * :func:`calibrate_ctd` — CTD: Pareto-LTT (SPEC §4) on the DV score, with performance risk
      1 − accuracy or 1 − AUROC. Guarantee: with probability ≥ 1 − δ over the calibration
      data, the chosen τ has true delegation rate ≤ α.
    * :func:`calibrate_uncertainty` — "Unc. calibrated": the same procedure on u(x), with F̂ from
      the calibration probe scores (the reference is stored in the result). Same guarantee.
    * :func:`calibrate_budget_only` — LTT on the budget alone (no Pareto step), fixed-sequence from
      the largest τ down, returning the smallest certified τ. Same guarantee.
    * :func:`calibrate_plug_in` — the uncorrected plug-in (smallest τ whose empirical budget ≤ α).
      NO guarantee: it violates the budget ~40–50 % of the time; kept to show the contrast.

Batched baselines (need a whole batch; no guarantee)
    :func:`topk_masks` — "Unc. top-k" (a window of k around the batch-median rank of p), "DV top-k"
    (k largest d), "Oracle top-k" (k largest true v); :func:`global_oracle_masks`.

Evaluation
    :func:`sweep` runs every method at every budget on a :class:`~ctd_stats.cascade.CascadeTable`
    with the reference protocol (:class:`CTDSettings`, names in :data:`SETTINGS`);
    :func:`faic` (fraction of achievable improvement captured); :func:`group_summary` (paper
    Table 1).

Choices where the sources leave room (documented, all switchable):
    * Fixed-sequence rejects p ≤ δ by default (``strict=False``); the reference code uses p < δ.
      Both are valid; the binomial p-value equals δ essentially never.
    * At α = 1 every threshold satisfies the budget, so every candidate is certified (H0: R > 1
      is impossible); the binomial test is skipped.
    * A budget with no certified threshold means "never delegate" (the cascade is the probe), a
      legitimate outcome. The reference code drops such budgets from its curves instead.
    * ⌈αn⌉ for the oracle is computed as ⌈round(αn, 9)⌉ so that floating-point noise such as
      0.3·100 = 30.000000000000004 does not add one delegation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from .._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    as_int_array,
    check_choice,
    check_level,
    check_positive_int,
    check_sorted,
)
from ..ltt import learn_then_test
from ..pareto import pareto_front, pareto_test
from ..splits import split_indices
from .metrics import (
    MERGES,
    CascadeMetrics,
    CascadeTable,
    Merge,
    delegation_capacity,
    evaluate_cascade,
    evaluate_cascades,
)

__all__ = [
    "METHOD_NAMES",
    "PERFORMANCE_RISKS",
    "SETTINGS",
    "CTDSettings",
    "FAICScore",
    "GroupSummary",
    "PerformanceRisk",
    "Signal",
    "SweepCurve",
    "SweepPoint",
    "SweepResult",
    "ThresholdCalibration",
    "budget_grid",
    "calibrate_budget_only",
    "calibrate_ctd",
    "calibrate_plug_in",
    "calibrate_uncertainty",
    "cap_group_indices",
    "check_budget",
    "faic",
    "global_oracle_masks",
    "group_summary",
    "performance_risk",
    "sweep",
    "sweep_delegation_mask",
    "sweep_group_summary",
    "threshold_grid",
    "topk_budgets",
    "topk_masks",
    "uncertainty_score",
]

PerformanceRisk = Literal["accuracy", "auroc"]
PERFORMANCE_RISKS: Final[tuple[str, ...]] = ("accuracy", "auroc")
Signal = Literal["dv", "uncertainty"]
TopkWindow = Literal["top", "median"]

CTD: Final = "CTD"
UNC_CALIBRATED: Final = "Unc. calibrated"
BUDGET_ONLY: Final = "Budget-only LTT"
UNC_TOPK: Final = "Unc. top-k"
DV_TOPK: Final = "DV top-k"
ORACLE_TOPK: Final = "Oracle top-k"
GLOBAL_ORACLE: Final = "Global oracle"
METHOD_NAMES: Final[tuple[str, ...]] = (
    CTD,
    UNC_CALIBRATED,
    BUDGET_ONLY,
    UNC_TOPK,
    DV_TOPK,
    ORACLE_TOPK,
    GLOBAL_ORACLE,
)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def check_budget(value: float, name: str = "alpha") -> float:
    """A delegation budget α must be a number in (0, 1]."""
    return check_level(value, name, closed_right=True)


@dataclass(frozen=True)
class CTDSettings:
    """Every knob of the CTD evaluation protocol (defaults: the reference code, SPEC §5).

    Attributes
    ----------
    n_thresholds, threshold_margin
        Threshold grid linspace(min d − margin, max d + margin, n_thresholds) over the DV scores
        of the whole table (the reference's "test set").
    budgets
        Budget levels α (reference: linspace(0.05, 1.0, 20); the paper's text says [0.05, 0.95]).
    delta
        FWER level δ of the budget guarantee.
    calib_fraction, opt_fraction, seed
        Table split calibration / evaluation (first ``calib_fraction`` of a
        ``default_rng(seed)`` permutation = calibration), then calibration split opt / ht (first
        ``opt_fraction`` = opt, same seed).
    performance
        Pareto performance risk: ``"accuracy"`` (1 − accuracy; main text) or ``"auroc"``
        (1 − AUROC; App. E).
    merge
        ``"replace"`` or ``"average"`` cascade output.
    batch_sizes, topk_steps
        Batched top-k baselines: batch sizes B and k = unique(int(linspace(0, B, steps + 1))).
    strict
        Fixed-sequence rule p < δ (reference code) instead of p ≤ δ (default).
    """

    n_thresholds: int = 100
    threshold_margin: float = 0.01
    budgets: tuple[float, ...] = tuple(float(a) for a in np.linspace(0.05, 1.0, 20))
    delta: float = 0.1
    calib_fraction: float = 0.5
    opt_fraction: float = 0.3
    seed: int = 42
    performance: PerformanceRisk = "accuracy"
    merge: Merge = "replace"
    batch_sizes: tuple[int, ...] = (32, 64, 128)
    topk_steps: int = 20
    strict: bool = False

    def __post_init__(self) -> None:
        check_positive_int(self.n_thresholds, "n_thresholds", minimum=2)
        if not (self.threshold_margin >= 0 and math.isfinite(self.threshold_margin)):
            raise ValueError(
                f"threshold_margin: must be finite and >= 0, got {self.threshold_margin!r}"
            )
        for a in self.budgets:
            check_budget(a, "budgets")
        if len(self.budgets) == 0:
            raise ValueError("budgets: must not be empty")
        check_level(self.delta, "delta")
        check_level(self.calib_fraction, "calib_fraction")
        check_level(self.opt_fraction, "opt_fraction")
        check_choice(self.performance, "performance", PERFORMANCE_RISKS)
        check_choice(self.merge, "merge", MERGES)
        for b in self.batch_sizes:
            check_positive_int(b, "batch_sizes")
        check_positive_int(self.topk_steps, "topk_steps")


SETTINGS: Final[dict[str, CTDSettings]] = {
    # The reference code's protocol: accuracy-error Pareto risk, α ∈ linspace(0.05, 1, 20).
    "reference": CTDSettings(),
    # Paper App. E: the same with 1 − AUROC as the Pareto performance risk.
    "reference_auroc": CTDSettings(performance="auroc"),
    # The paper's text: 20 budgets in [0.05, 0.95].
    "paper_text": CTDSettings(budgets=tuple(float(a) for a in np.linspace(0.05, 0.95, 20))),
    # The reference code's strict fixed-sequence rule p < δ.
    "reference_strict": CTDSettings(strict=True),
}


def budget_grid(settings: CTDSettings | str = "reference") -> FloatArray:
    """The budget levels α of a settings object or of a named setting in :data:`SETTINGS`."""
    return np.asarray(_settings(settings).budgets, dtype=np.float64)


def _settings(settings: CTDSettings | str) -> CTDSettings:
    if isinstance(settings, CTDSettings):
        return settings
    check_choice(settings, "settings", tuple(SETTINGS))
    return SETTINGS[settings]


# --------------------------------------------------------------------------------------------
# Signals and grids
# --------------------------------------------------------------------------------------------


def uncertainty_score(probe: ArrayLike, *, reference: ArrayLike) -> FloatArray:
    """McKenzie et al.'s proximity-to-median score u = −|F̂(p) − 0.5| ∈ [−0.5, 0].

    F̂(t) = #{reference < t} / n_ref (``searchsorted(side="left")``) is the empirical CDF of the
    reference probe scores (the calibration set's, for "Unc. calibrated"). Larger u = closer to
    the reference median = delegated first.
    """
    p = as_float_array(probe, "probe", ndim=(0, 1, 2), low=0.0, high=1.0)
    ref = np.sort(as_float_array(reference, "reference", ndim=1, low=0.0, high=1.0))
    cdf = np.searchsorted(ref, p, side="left") / ref.size
    return np.asarray(-np.abs(cdf - 0.5), dtype=np.float64)


def threshold_grid(scores: ArrayLike, *, size: int = 100, margin: float = 0.01) -> FloatArray:
    """Candidate thresholds linspace(min − margin, max + margin, size) over ``scores``.

    With margin > 0 the largest threshold delegates nothing and the smallest everything.
    """
    s = as_float_array(scores, "scores", ndim=1)
    size = check_positive_int(size, "size", minimum=2)
    if not (margin >= 0 and math.isfinite(margin)):
        raise ValueError(f"margin: must be finite and >= 0, got {margin!r}")
    return np.linspace(float(s.min()) - margin, float(s.max()) + margin, size)


def _check_grid(grid: ArrayLike) -> FloatArray:
    g = as_float_array(grid, "grid", ndim=1)
    check_sorted(g, "grid")
    return g


def _counts_above(scores: FloatArray, grid: FloatArray) -> IntArray:
    """#{scores > τ} for every τ in the grid (one sort + searchsorted)."""
    s = np.sort(scores)
    return (s.size - np.searchsorted(s, grid, side="right")).astype(np.int64)


def performance_risk(
    *,
    signal: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    labels: ArrayLike,
    grid: ArrayLike,
    performance: PerformanceRisk = "accuracy",
    merge: Merge = "replace",
) -> FloatArray:
    """Empirical performance risk of "delegate iff signal > τ" for every τ in the grid.

    1 − accuracy (``"accuracy"``) or 1 − AUROC (``"auroc"``) of the cascade output; shape (m,).
    """
    check_choice(performance, "performance", PERFORMANCE_RISKS)
    s = as_float_array(signal, "signal", ndim=1)
    g = _check_grid(grid)
    curves = evaluate_cascades(probe, expert, labels, s[None, :] > g[:, None], merge=merge)
    return 1.0 - (curves.accuracy if performance == "accuracy" else curves.auroc)


# --------------------------------------------------------------------------------------------
# Calibrated threshold policies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdCalibration:
    """A calibrated "delegate iff signal > τ" policy.

    Guarantee (methods ``"CTD"``, ``"Unc. calibrated"``, ``"Budget-only LTT"``): with probability
    ≥ 1 − ``delta`` over the calibration data (exchangeable with the deployment data), the chosen
    threshold has true delegation rate P(signal > τ) ≤ ``alpha``; and every threshold in
    ``certified`` does. Method ``"Plug-in"`` has NO guarantee.

    Attributes
    ----------
    method
        ``"CTD"``, ``"Unc. calibrated"``, ``"Budget-only LTT"`` or ``"Plug-in"``.
    signal
        ``"dv"`` (inputs to :meth:`delegate` are DV scores) or ``"uncertainty"`` (inputs are probe
        scores, turned into u = −|F̂(p) − 0.5| with F̂ from ``reference``).
    alpha, delta
        Budget level and FWER level.
    found
        Whether a threshold was certified; if not, the policy never delegates.
    threshold, index
        The chosen τ and its grid index (``None`` when not found).
    grid
        The candidate thresholds (increasing).
    certified
        Boolean mask over the grid of the certified thresholds.
    front
        Pareto-front grid indices in testing order (largest τ first); all indices in decreasing
        order for budget-only LTT; empty for the plug-in.
    pvalues
        Budget p-values per grid point (NaN for the plug-in).
    opt_budget, opt_performance
        Opt-split empirical budget and performance risk per grid point (Pareto methods; the whole
        calibration set's budget and NaN performance otherwise).
    n_opt, n_test
        Sizes of the optimisation and hypothesis-testing sets.
    reference
        Sorted calibration probe scores defining F̂ (``signal="uncertainty"`` only).
    """

    method: str
    signal: Signal
    alpha: float
    delta: float
    found: bool
    threshold: float | None
    index: int | None
    grid: FloatArray
    certified: BoolArray
    front: IntArray
    pvalues: FloatArray
    opt_budget: FloatArray
    opt_performance: FloatArray
    n_opt: int
    n_test: int
    reference: FloatArray | None = field(default=None)

    def signal_scores(self, scores: ArrayLike) -> FloatArray:
        """The delegation signal for raw inputs (DV scores, or probe scores → u)."""
        if self.signal == "uncertainty":
            assert self.reference is not None
            return uncertainty_score(scores, reference=self.reference)
        return as_float_array(scores, "scores", ndim=(0, 1, 2))

    def delegate(self, scores: ArrayLike) -> BoolArray:
        """Delegation decisions (signal > τ) for raw inputs; all False when nothing was found."""
        s = self.signal_scores(scores)
        if self.threshold is None:
            return np.zeros(s.shape, dtype=bool)
        return np.asarray(s > self.threshold)


def _pareto_ltt(
    *,
    method: str,
    signal_kind: Signal,
    signal: FloatArray,
    probe: FloatArray,
    expert: FloatArray,
    labels: IntArray,
    grid: FloatArray,
    alphas: Sequence[float],
    delta: float,
    performance: PerformanceRisk,
    merge: Merge,
    opt_fraction: float,
    seed: int,
    strict: bool,
    reference: FloatArray | None,
) -> list[ThresholdCalibration]:
    """Pareto-LTT at several budgets; the opt risks and the front do not depend on α."""
    split = split_indices(signal.size, first_fraction=opt_fraction, seed=seed)
    opt, ht = split.first, split.second
    opt_perf = performance_risk(
        signal=signal[opt],
        probe=probe[opt],
        expert=expert[opt],
        labels=labels[opt],
        grid=grid,
        performance=performance,
        merge=merge,
    )
    opt_budget = _counts_above(signal[opt], grid) / opt.size
    ht_counts = _counts_above(signal[ht], grid)
    m = grid.size
    out: list[ThresholdCalibration] = []
    for alpha in alphas:
        if alpha < 1.0:
            res = pareto_test(
                opt_control=opt_budget,
                opt_performance=opt_perf,
                ht_counts=ht_counts,
                n_ht=int(ht.size),
                alpha=alpha,
                delta=delta,
                order="descending",
                strict=strict,
            )
            index, front, certified, pvals = res.index, res.front, res.certified, res.pvalues
        else:  # α = 1: H0 "budget > 1" is impossible, every front point is certified.
            on_front = pareto_front(np.column_stack([opt_budget, opt_perf]))
            order = np.arange(m - 1, -1, -1)
            front = order[on_front[order]]
            certified = np.zeros(m, dtype=bool)
            certified[front] = True
            index = int(front[np.argmin(opt_perf[front])])
            pvals = np.zeros(m)
        out.append(
            ThresholdCalibration(
                method=method,
                signal=signal_kind,
                alpha=float(alpha),
                delta=delta,
                found=index is not None,
                threshold=None if index is None else float(grid[index]),
                index=index,
                grid=grid,
                certified=certified,
                front=front,
                pvalues=pvals,
                opt_budget=opt_budget,
                opt_performance=opt_perf,
                n_opt=int(opt.size),
                n_test=int(ht.size),
                reference=reference,
            )
        )
    return out


def _check_calibration_inputs(
    signal: ArrayLike, probe: ArrayLike, expert: ArrayLike, labels: ArrayLike, signal_name: str
) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
    table = CascadeTable.from_arrays(probe=probe, expert=expert, dv=signal, labels=labels)
    if table.n < 4:
        raise ValueError(f"{signal_name}: need at least 4 calibration points, got {table.n}")
    return table.dv, table.probe, table.expert, table.labels


def calibrate_ctd(
    *,
    dv: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    labels: ArrayLike,
    alpha: float,
    delta: float = 0.1,
    grid: ArrayLike | None = None,
    performance: PerformanceRisk = "accuracy",
    merge: Merge = "replace",
    opt_fraction: float = 0.3,
    seed: int = 42,
    strict: bool = False,
) -> ThresholdCalibration:
    """Calibrate-Then-Delegate: Pareto-LTT of "delegate iff d(x) > τ" on a calibration set.

    The calibration set is split once (``default_rng(seed)`` permutation, first ``opt_fraction``
    = opt). On opt: empirical budget and performance risk (1 − accuracy or 1 − AUROC) per τ; the
    Pareto front is tested on ht from the largest τ down by fixed-sequence binomial tests of
    H0: budget(τ) > α; among the certified τ the one with the lowest opt performance risk is
    chosen (ties: the largest τ). Guarantee: P(true budget of the chosen τ > α) ≤ δ.

    ``grid`` defaults to :func:`threshold_grid` of ``dv`` (the reference builds it on the DV scores
    of the whole test table; pass that grid to reproduce it).
    """
    alpha = check_budget(alpha)
    delta = check_level(delta, "delta")
    check_choice(performance, "performance", PERFORMANCE_RISKS)
    check_choice(merge, "merge", MERGES)
    d, p, e, y = _check_calibration_inputs(dv, probe, expert, labels, "dv")
    g = threshold_grid(d) if grid is None else _check_grid(grid)
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
        opt_fraction=check_level(opt_fraction, "opt_fraction"),
        seed=seed,
        strict=strict,
        reference=None,
    )[0]


def calibrate_uncertainty(
    *,
    probe: ArrayLike,
    expert: ArrayLike,
    labels: ArrayLike,
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
    alpha = check_budget(alpha)
    delta = check_level(delta, "delta")
    check_choice(performance, "performance", PERFORMANCE_RISKS)
    check_choice(merge, "merge", MERGES)
    p0 = as_float_array(probe, "probe", ndim=1, low=0.0, high=1.0)
    u0 = uncertainty_score(p0, reference=p0)
    u, p, e, y = _check_calibration_inputs(u0, p0, expert, labels, "probe")
    g = threshold_grid(u) if grid is None else _check_grid(grid)
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
        opt_fraction=check_level(opt_fraction, "opt_fraction"),
        seed=seed,
        strict=strict,
        reference=np.sort(p),
    )[0]


def calibrate_budget_only(
    *,
    scores: ArrayLike,
    alpha: float,
    delta: float = 0.1,
    grid: ArrayLike | None = None,
    strict: bool = False,
) -> ThresholdCalibration:
    """Budget-only LTT: certify τ from the largest down, return the smallest certified τ.

    Uses the whole calibration set (no opt/ht split, as the reference). Guarantee: with
    probability ≥ 1 − δ every certified τ — hence the returned one — has true budget ≤ α.
    """
    alpha = check_budget(alpha)
    delta = check_level(delta, "delta")
    s = as_float_array(scores, "scores", ndim=1)
    g = threshold_grid(s) if grid is None else _check_grid(grid)
    counts = _counts_above(s, g)
    m = g.size
    if alpha < 1.0:
        res = learn_then_test(
            counts=counts,
            n=int(s.size),
            alpha=alpha,
            delta=delta,
            order="descending",
            strict=strict,
        )
        certified, pvals = res.certified, res.pvalues
    else:
        certified, pvals = np.ones(m, dtype=bool), np.zeros(m)
    index = int(np.flatnonzero(certified).min()) if certified.any() else None
    return ThresholdCalibration(
        method=BUDGET_ONLY,
        signal="dv",
        alpha=alpha,
        delta=delta,
        found=index is not None,
        threshold=None if index is None else float(g[index]),
        index=index,
        grid=g,
        certified=certified,
        front=np.arange(m - 1, -1, -1, dtype=np.int64),
        pvalues=pvals,
        opt_budget=counts / s.size,
        opt_performance=np.full(m, np.nan),
        n_opt=0,
        n_test=int(s.size),
    )


def calibrate_plug_in(
    *, scores: ArrayLike, alpha: float, grid: ArrayLike | None = None
) -> ThresholdCalibration:
    """Uncorrected plug-in: the smallest τ whose empirical calibration budget is ≤ α.

    NO guarantee — its true budget exceeds α about half the time. A negative control for the
    budget-validation checks, never a policy to deploy.
    """
    alpha = check_budget(alpha)
    s = as_float_array(scores, "scores", ndim=1)
    g = threshold_grid(s) if grid is None else _check_grid(grid)
    counts = _counts_above(s, g)
    ok = counts <= alpha * s.size
    index = int(np.flatnonzero(ok).min()) if ok.any() else None
    return ThresholdCalibration(
        method="Plug-in",
        signal="dv",
        alpha=alpha,
        delta=1.0,
        found=index is not None,
        threshold=None if index is None else float(g[index]),
        index=index,
        grid=g,
        certified=ok,
        front=np.zeros(0, dtype=np.int64),
        pvalues=np.full(g.size, np.nan),
        opt_budget=counts / s.size,
        opt_performance=np.full(g.size, np.nan),
        n_opt=0,
        n_test=int(s.size),
    )


# --------------------------------------------------------------------------------------------
# Batched top-k baselines and the global oracle
# --------------------------------------------------------------------------------------------


def topk_budgets(batch_size: int, *, steps: int = 20) -> IntArray:
    """k values of the batched baselines: unique(int(linspace(0, B, steps + 1)))."""
    b = check_positive_int(batch_size, "batch_size")
    steps = check_positive_int(steps, "steps")
    return np.unique(np.linspace(0, b, steps + 1).astype(np.int64))


def _batch_ranks(scores: FloatArray, batch_size: int, *, descending: bool) -> IntArray:
    """Rank of each score inside its consecutive batch (0 = first); stable for ties."""
    n = scores.size
    ranks = np.empty(n, dtype=np.int64)
    n_full = (n // batch_size) * batch_size
    key = -scores if descending else scores
    if n_full:
        blocks = key[:n_full].reshape(-1, batch_size)
        order = np.argsort(blocks, axis=1, kind="stable")
        r = np.empty_like(order)
        np.put_along_axis(r, order, np.arange(batch_size)[None, :], axis=1)
        ranks[:n_full] = r.ravel()
    if n_full < n:
        order = np.argsort(key[n_full:], kind="stable")
        r1 = np.empty_like(order)
        r1[order] = np.arange(order.size)
        ranks[n_full:] = r1
    return ranks


def topk_masks(
    scores: ArrayLike, *, batch_size: int, k: ArrayLike, window: TopkWindow = "top"
) -> BoolArray:
    """Batched top-k delegation masks, one row per k (shape (len(k), n)).

    The stream is cut into consecutive batches of ``batch_size`` (the last, partial batch is kept;
    in a batch of L items at most min(k, L) are delegated). ``window="top"``: the k largest
    scores of each batch ("DV top-k" on d, "Oracle top-k" on v; ties go to the earlier item).
    ``window="median"`` ("Unc. top-k" on probe scores p): the items with ascending rank in
    [start, start + k) where start = max(0, L//2 − k//2), shifted back when it overflows L.
    Every full batch delegates exactly k items.
    """
    s = as_float_array(scores, "scores", ndim=1)
    b = check_positive_int(batch_size, "batch_size")
    check_choice(window, "window", ("top", "median"))
    ks = as_int_array(k, "k", ndim=(0, 1), low=0, high=b)
    ks = np.atleast_1d(ks)
    n = s.size
    ranks = _batch_ranks(s, b, descending=(window == "top"))
    length = np.full(n, b, dtype=np.int64)
    n_full = (n // b) * b
    length[n_full:] = n - n_full
    k_eff = np.minimum(ks[:, None], length[None, :])
    if window == "top":
        return np.asarray(ranks[None, :] < k_eff)
    start = np.maximum(0, length[None, :] // 2 - k_eff // 2)
    end = np.minimum(length[None, :], start + k_eff)
    start = end - k_eff
    return np.asarray((ranks[None, :] >= start) & (ranks[None, :] < end))


def _ceil_count(alpha: float, n: int) -> int:
    return math.ceil(round(alpha * n, 9))


def global_oracle_masks(values: ArrayLike, alphas: ArrayLike) -> BoolArray:
    """Global oracle at each budget α: delegate the top min(⌈αn⌉, #{v > 0}) inputs by true v.

    Shape (len(alphas), n). Never delegates an input with v ≤ 0.
    """
    v = as_float_array(values, "values", ndim=1)
    a = np.atleast_1d(as_float_array(alphas, "alphas", ndim=(0, 1)))
    for x in a:
        check_budget(float(x), "alphas")
    n = v.size
    capacity = int(np.sum(v > 0))
    ks = np.array([min(_ceil_count(float(x), n), capacity) for x in a], dtype=np.int64)
    order = np.argsort(-v, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return np.asarray(rank[None, :] < ks[:, None])


# --------------------------------------------------------------------------------------------
# FAIC and group summaries
# --------------------------------------------------------------------------------------------


def faic(
    method_alphas: ArrayLike,
    method_values: ArrayLike,
    *,
    oracle_alphas: ArrayLike,
    oracle_values: ArrayLike,
    oracle_budgets: ArrayLike,
    probe_value: float,
) -> float:
    """Fraction of achievable improvement captured (reference definition).

    The capacity budget α_c is the largest oracle α with realised budget > 0 and metric > probe.
    Both curves are restricted to α ≤ α_c and FAIC = ∫(method − probe) / ∫(oracle − probe)
    (trapezoid over α), clipped at 0. Returns 0 when the oracle never improves on the probe or a
    restricted curve has fewer than two points.
    """
    ma = as_float_array(method_alphas, "method_alphas", ndim=1)
    mv = as_float_array(method_values, "method_values", ndim=1)
    oa = as_float_array(oracle_alphas, "oracle_alphas", ndim=1)
    ov = as_float_array(oracle_values, "oracle_values", ndim=1)
    ob = as_float_array(oracle_budgets, "oracle_budgets", ndim=1)
    if mv.size != ma.size:
        raise ValueError(f"method_values: length {mv.size} does not match method_alphas")
    if ov.size != oa.size or ob.size != oa.size:
        raise ValueError("oracle_values: oracle_alphas, oracle_values, oracle_budgets differ")
    improving = (ob > 0) & (ov > probe_value)
    if not improving.any():
        return 0.0
    cap = float(oa[improving].max())
    om, mm = oa <= cap, ma <= cap
    if om.sum() < 2 or mm.sum() < 2:
        return 0.0
    oracle_area = float(np.trapezoid(ov[om] - probe_value, oa[om]))
    method_area = float(np.trapezoid(mv[mm] - probe_value, ma[mm]))
    if oracle_area <= 0:
        return 0.0
    return max(0.0, method_area / oracle_area)


@dataclass(frozen=True)
class GroupSummary:
    """Per-group delegation summary (paper Table 1), arrays aligned with ``groups``.

    Attributes
    ----------
    groups
        Group names (sorted, or in the order given).
    n
        Number of inputs per group.
    mean_value
        Mean true delegation value v over the group ("All").
    mean_value_delegated
        Mean v over the group's delegated inputs (NaN if none delegated).
    delegation_rate
        Fraction of the group's inputs delegated.
    """

    groups: tuple[str, ...]
    n: IntArray
    mean_value: FloatArray
    mean_value_delegated: FloatArray
    delegation_rate: FloatArray


def group_summary(
    values: ArrayLike,
    delegated: ArrayLike,
    groups: ArrayLike,
    *,
    names: Sequence[str] | None = None,
) -> GroupSummary:
    """Mean v of all / of the delegated inputs and the delegation rate, per group.

    ``names`` fixes the groups and their order; a named group with no inputs is an error.
    """
    v = as_float_array(values, "values", ndim=1)
    d = np.asarray(delegated)
    d = d.astype(bool) if d.dtype == np.bool_ else as_binary_array(d, "delegated").astype(bool)
    if d.ndim != 1 or d.size != v.size:
        raise ValueError(f"delegated: expected shape ({v.size},), got {d.shape}")
    g = np.asarray(groups).astype(str)
    if g.ndim != 1 or g.size != v.size:
        raise ValueError(f"groups: expected shape ({v.size},), got {g.shape}")
    labels = tuple(sorted(set(g.tolist()))) if names is None else tuple(str(x) for x in names)
    if not labels:
        raise ValueError("names: must not be empty")
    member = g[None, :] == np.asarray(labels)[:, None]
    n = member.sum(axis=1)
    if np.any(n == 0):
        empty = [labels[i] for i in np.flatnonzero(n == 0)]
        raise ValueError(f"groups: no inputs in group(s) {empty}")
    k = (member & d[None, :]).sum(axis=1)
    vsum_del = (member & d[None, :]) @ v
    mean_del = np.full(len(labels), np.nan)
    np.divide(vsum_del, k, out=mean_del, where=k > 0)
    return GroupSummary(
        groups=labels,
        n=n.astype(np.int64),
        mean_value=(member @ v) / n,
        mean_value_delegated=mean_del,
        delegation_rate=k / n,
    )


def cap_group_indices(groups: ArrayLike, *, cap: int = 500, seed: int = 42) -> IntArray:
    """Row indices keeping at most ``cap`` rows per group (reference protocol).

    For a group of size n > cap the kept rows are ``random.seed(seed); random.sample(range(n),
    cap)`` (Python's ``random``, reseeded per group), in that order; groups appear in order of
    first occurrence. Smaller groups are kept whole.
    """
    g = np.asarray(groups).astype(str)
    if g.ndim != 1 or g.size == 0:
        raise ValueError("groups: expected a non-empty 1-d array")
    cap = check_positive_int(cap, "cap")
    _, first = np.unique(g, return_index=True)
    out: list[IntArray] = []
    for name in g[np.sort(first)]:
        rows = np.flatnonzero(g == name)
        if rows.size > cap:
            rng = random.Random(seed)
            rows = rows[np.asarray(rng.sample(range(rows.size), cap), dtype=np.int64)]
        out.append(rows)
    return np.concatenate(out).astype(np.int64)


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPoint:
    """One (method, batch size, budget) point of a sweep, evaluated on the evaluation split.

    ``alpha`` is the budget level asked for (k/B for top-k methods); ``budget`` the realised
    delegation rate; ``threshold`` the calibrated τ (``None`` for batched methods or when no τ is
    certified, in which case nothing is delegated); ``found`` whether a τ was certified.
    """

    method: str
    batch_size: int | None
    alpha: float
    threshold: float | None
    found: bool
    budget: float
    auroc: float
    accuracy: float
    mean_value: float


@dataclass(frozen=True)
class SweepCurve:
    """The points of one method (and batch size) as arrays, sorted by ``alpha``."""

    method: str
    batch_size: int | None
    alpha: FloatArray
    budget: FloatArray
    auroc: FloatArray
    accuracy: FloatArray
    mean_value: FloatArray
    found: BoolArray


@dataclass(frozen=True)
class FAICScore:
    """FAIC of one method curve (top-k methods: at the largest batch size, as the reference)."""

    method: str
    batch_size: int | None
    auroc: float
    accuracy: float


@dataclass(frozen=True)
class SweepResult:
    """Every method at every budget on one table (a tidy, plot-ready record).

    Attributes
    ----------
    points
        All :class:`SweepPoint` records.
    probe_only, expert_only
        Reference cascades (delegate nothing / everything) on the evaluation split.
    capacity
        Effective delegation capacity mean(v > 0) of the evaluation split.
    faic
        FAIC of each method against the global oracle.
    calibrations
        The calibrated policies, keyed (method, α) in ``points`` order.
    settings
        The protocol used.
    calib_index, eval_index
        Row indices of the calibration and evaluation splits of the table.
    """

    points: tuple[SweepPoint, ...]
    probe_only: CascadeMetrics
    expert_only: CascadeMetrics
    capacity: float
    faic: tuple[FAICScore, ...]
    calibrations: tuple[ThresholdCalibration, ...]
    settings: CTDSettings
    calib_index: IntArray
    eval_index: IntArray

    @property
    def methods(self) -> tuple[tuple[str, int | None], ...]:
        """Distinct (method, batch size) pairs in order of appearance."""
        seen: dict[tuple[str, int | None], None] = {}
        for p in self.points:
            seen.setdefault((p.method, p.batch_size), None)
        return tuple(seen)

    def curve(self, method: str, *, batch_size: int | None = None) -> SweepCurve:
        """The points of ``method`` (and ``batch_size`` for top-k methods) as arrays."""
        pts = [p for p in self.points if p.method == method and p.batch_size == batch_size]
        if not pts:
            raise ValueError(
                f"method: no points for ({method!r}, batch_size={batch_size}); "
                f"available: {list(self.methods)}"
            )
        pts.sort(key=lambda p: p.alpha)
        return SweepCurve(
            method=method,
            batch_size=batch_size,
            alpha=np.array([p.alpha for p in pts]),
            budget=np.array([p.budget for p in pts]),
            auroc=np.array([p.auroc for p in pts]),
            accuracy=np.array([p.accuracy for p in pts]),
            mean_value=np.array([p.mean_value for p in pts]),
            found=np.array([p.found for p in pts], dtype=bool),
        )

    def calibration(self, method: str, alpha: float) -> ThresholdCalibration:
        """The calibrated policy of ``method`` at the budget closest to ``alpha``."""
        cands = [c for c in self.calibrations if c.method == method]
        if not cands:
            raise ValueError(f"method: no calibrations for {method!r}")
        return min(cands, key=lambda c: abs(c.alpha - alpha))


def _points_from_curves(
    method: str,
    batch_size: int | None,
    alphas: FloatArray,
    thresholds: Sequence[float | None],
    found: Sequence[bool],
    probe: FloatArray,
    expert: FloatArray,
    labels: IntArray,
    masks: BoolArray,
    merge: Merge,
) -> list[SweepPoint]:
    c = evaluate_cascades(probe, expert, labels, masks, merge=merge)
    return [
        SweepPoint(
            method=method,
            batch_size=batch_size,
            alpha=float(alphas[i]),
            threshold=thresholds[i],
            found=bool(found[i]),
            budget=float(c.budget[i]),
            auroc=float(c.auroc[i]),
            accuracy=float(c.accuracy[i]),
            mean_value=float(c.mean_value[i]),
        )
        for i in range(alphas.size)
    ]


def sweep(
    table: CascadeTable, *, settings: CTDSettings | str = "reference", grid: ArrayLike | None = None
) -> SweepResult:
    """Run every method at every budget on ``table`` with the given protocol.

    Steps (SPEC §5, reference protocol): threshold grid over the DV scores of the whole table
    (unless ``grid`` is given); split calibration / evaluation; on the calibration split
    calibrate CTD, Unc. calibrated and budget-only LTT at every α; on the evaluation split
    evaluate them, the global oracle at every α, and Unc./DV/Oracle top-k for every batch size
    and k; finally FAIC of each method (AUROC and accuracy) against the global oracle.
    """
    if not isinstance(table, CascadeTable):
        raise TypeError(f"table: expected a CascadeTable, got {type(table).__name__}")
    st = _settings(settings)
    g = (
        threshold_grid(table.dv, size=st.n_thresholds, margin=st.threshold_margin)
        if grid is None
        else _check_grid(grid)
    )
    split = split_indices(table.n, first_fraction=st.calib_fraction, seed=st.seed)
    cal, ev = table.take(split.first), table.take(split.second)
    if len(set(ev.labels.tolist())) < 2:
        raise ValueError("table: the evaluation split needs both labels")
    alphas = np.asarray(st.budgets, dtype=np.float64)
    a_list = [float(a) for a in alphas]
    common = {
        "probe": cal.probe,
        "expert": cal.expert,
        "labels": cal.labels,
        "delta": st.delta,
        "performance": st.performance,
        "merge": st.merge,
        "opt_fraction": st.opt_fraction,
        "seed": st.seed,
        "strict": st.strict,
    }
    u_cal = uncertainty_score(cal.probe, reference=cal.probe)
    calibrations: list[ThresholdCalibration] = []
    points: list[SweepPoint] = []
    for method in (CTD, UNC_CALIBRATED, BUDGET_ONLY):
        cals: list[ThresholdCalibration]
        if method == CTD:
            cals = _pareto_ltt(
                method=CTD,
                signal_kind="dv",
                signal=cal.dv,
                grid=g,
                alphas=a_list,
                reference=None,
                **common,  # type: ignore[arg-type]
            )
        elif method == UNC_CALIBRATED:
            cals = _pareto_ltt(
                method=UNC_CALIBRATED,
                signal_kind="uncertainty",
                signal=u_cal,
                grid=threshold_grid(u_cal),
                alphas=a_list,
                reference=np.sort(cal.probe),
                **common,  # type: ignore[arg-type]
            )
        else:
            cals = [
                calibrate_budget_only(
                    scores=cal.dv, alpha=a, delta=st.delta, grid=g, strict=st.strict
                )
                for a in a_list
            ]
        raw = ev.probe if method == UNC_CALIBRATED else ev.dv
        masks = np.stack([c.delegate(raw) for c in cals])
        points += _points_from_curves(
            method,
            None,
            alphas,
            [c.threshold for c in cals],
            [c.found for c in cals],
            ev.probe,
            ev.expert,
            ev.labels,
            masks,
            st.merge,
        )
        calibrations += cals

    v_eval = ev.values()
    oracle = global_oracle_masks(v_eval, alphas)
    points += _points_from_curves(
        GLOBAL_ORACLE,
        None,
        alphas,
        [None] * alphas.size,
        [True] * alphas.size,
        ev.probe,
        ev.expert,
        ev.labels,
        oracle,
        st.merge,
    )
    for b in st.batch_sizes:
        ks = topk_budgets(b, steps=st.topk_steps)
        fr = ks / b
        for method, sig, window in (
            (UNC_TOPK, ev.probe, "median"),
            (DV_TOPK, ev.dv, "top"),
            (ORACLE_TOPK, v_eval, "top"),
        ):
            masks = topk_masks(sig, batch_size=b, k=ks, window=window)  # type: ignore[arg-type]
            points += _points_from_curves(
                method,
                b,
                fr,
                [None] * ks.size,
                [True] * ks.size,
                ev.probe,
                ev.expert,
                ev.labels,
                masks,
                st.merge,
            )

    n_ev = ev.n
    probe_only = evaluate_cascade(
        ev.probe, ev.expert, ev.labels, np.zeros(n_ev, dtype=bool), merge=st.merge
    )
    expert_only = evaluate_cascade(
        ev.probe, ev.expert, ev.labels, np.ones(n_ev, dtype=bool), merge=st.merge
    )
    partial = SweepResult(
        points=tuple(points),
        probe_only=probe_only,
        expert_only=expert_only,
        capacity=delegation_capacity(v_eval),
        faic=(),
        calibrations=tuple(calibrations),
        settings=st,
        calib_index=split.first,
        eval_index=split.second,
    )
    oc = partial.curve(GLOBAL_ORACLE)
    largest = max(st.batch_sizes) if st.batch_sizes else None
    scores: list[FAICScore] = []
    faic_curves: list[tuple[str, int | None]] = [(CTD, None), (UNC_CALIBRATED, None)]
    faic_curves.append((BUDGET_ONLY, None))
    if largest is not None:
        faic_curves += [(UNC_TOPK, largest), (DV_TOPK, largest), (ORACLE_TOPK, largest)]
    for method, bsz in faic_curves:
        mc = partial.curve(method, batch_size=bsz)
        scores.append(
            FAICScore(
                method=method,
                batch_size=bsz,
                auroc=faic(
                    mc.alpha,
                    mc.auroc,
                    oracle_alphas=oc.alpha,
                    oracle_values=oc.auroc,
                    oracle_budgets=oc.budget,
                    probe_value=probe_only.auroc,
                ),
                accuracy=faic(
                    mc.alpha,
                    mc.accuracy,
                    oracle_alphas=oc.alpha,
                    oracle_values=oc.accuracy,
                    oracle_budgets=oc.budget,
                    probe_value=probe_only.accuracy,
                ),
            )
        )
    return replace(partial, faic=tuple(scores))


def sweep_delegation_mask(
    result: SweepResult,
    table: CascadeTable,
    method: str,
    *,
    alpha: float,
    batch_size: int | None = None,
) -> BoolArray:
    """The evaluation-split delegation mask of ``method`` at the budget closest to ``alpha``.

    ``table`` must be the table the sweep ran on. Calibrated methods reuse their calibrated
    threshold; top-k methods (``batch_size`` required) use the k whose k/B is closest to α; the
    global oracle uses ⌈αn⌉ capped at the capacity.
    """
    if not isinstance(table, CascadeTable) or table.n != (
        result.calib_index.size + result.eval_index.size
    ):
        raise ValueError("table: must be the CascadeTable the sweep was run on")
    check_budget(alpha)
    ev = table.take(result.eval_index)
    if method in (CTD, UNC_CALIBRATED, BUDGET_ONLY):
        cal = result.calibration(method, alpha)
        return cal.delegate(ev.probe if cal.signal == "uncertainty" else ev.dv)
    if method == GLOBAL_ORACLE:
        a = min(result.settings.budgets, key=lambda x: abs(x - alpha))
        oracle: BoolArray = global_oracle_masks(ev.values(), [a])[0]
        return oracle
    signals = {UNC_TOPK: (ev.probe, "median"), DV_TOPK: (ev.dv, "top"), ORACLE_TOPK: (None, "top")}
    if method not in signals:
        raise ValueError(f"method: must be one of {list(METHOD_NAMES)}, got {method!r}")
    if batch_size is None:
        raise ValueError("batch_size: required for the batched top-k methods")
    b = check_positive_int(batch_size, "batch_size")
    ks = topk_budgets(b, steps=result.settings.topk_steps)
    k = int(ks[np.argmin(np.abs(ks / b - alpha))])
    sig, window = signals[method]
    scores = ev.values() if sig is None else sig
    win: TopkWindow = "median" if window == "median" else "top"
    topk: BoolArray = topk_masks(scores, batch_size=b, k=k, window=win)[0]
    return topk


def sweep_group_summary(
    result: SweepResult,
    table: CascadeTable,
    method: str,
    *,
    alpha: float,
    batch_size: int | None = None,
    names: Sequence[str] | None = None,
) -> GroupSummary:
    """Paper Table 1 for one method: per-group mean v (all / delegated) and delegation rate.

    Computed on the sweep's evaluation split, e.g. ``method="CTD", alpha=0.2`` and
    ``method="Unc. top-k", alpha=0.2, batch_size=128``.
    """
    mask = sweep_delegation_mask(result, table, method, alpha=alpha, batch_size=batch_size)
    ev = table.take(result.eval_index)
    return group_summary(ev.values(), mask, ev.groups, names=names)
