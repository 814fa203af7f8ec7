"""The CTD paper's sweep: every method at every budget on one table (CTD paper §5.3, Fig. 3–4).

:func:`sweep` validates its inputs once (a :class:`~ctd_stats.cascade.CascadeTable` is validated
when it is built, a :class:`~ctd_stats.cascade.protocol.CTDSettings` when it is created) and then
runs only internal kernels: the grid, the calibration / evaluation split, Pareto-LTT (CTD and
"Unc. calibrated"), budget-only LTT, the global oracle, the batched top-k baselines and FAIC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._serialize import array_sha256
from .._validation import BoolArray, FloatArray, IntArray, check_grid, check_positive_int, plain
from ..grouped import Caps
from ..splits import split_indices
from . import grouped_policies as gp
from .baselines import oracle_masks_unchecked, topk_budgets_unchecked, topk_masks_unchecked
from .calibration import (
    BUDGET_ONLY,
    BUDGET_ONLY_GROUPED,
    CTD,
    CTD_GROUPED,
    UNC_CALIBRATED,
    ThresholdCalibration,
)
from .metrics import (
    CascadeMetrics,
    CascadeTable,
    delegation_value_unchecked,
    evaluate_unchecked,
    metrics_at,
)
from .policies import ParetoData, budget_only_unchecked, pareto_ltt
from .protocol import (
    DV_TOPK,
    GLOBAL_ORACLE,
    METHOD_NAMES,
    ORACLE_TOPK,
    UNC_TOPK,
    CTDSettings,
    GroupSummary,
    faic_unchecked,
    group_summary,
    resolve_settings,
)
from .signals import check_budget, threshold_grid_unchecked, uncertainty_from_sorted

__all__ = [
    "GROUPED_METHOD_LABELS",
    "FAICScore",
    "SweepCurve",
    "SweepPoint",
    "SweepResult",
    "sweep",
    "sweep_delegation_mask",
    "sweep_group_summary",
]


#: Display labels of the grouped sweep methods (beside :data:`~ctd_stats.cascade.METHOD_LABELS`).
GROUPED_METHOD_LABELS: Final[dict[str, str]] = {
    CTD_GROUPED: "CTD (group caps)",
    BUDGET_ONLY_GROUPED: "Budget-only LTT (group caps)",
}


@dataclass(frozen=True)
class SweepPoint:
    """One (method, batch size, budget) point of a sweep, evaluated on the evaluation split.

    ``alpha`` is the budget level asked for (k/B for top-k methods); ``budget`` the realised
    delegation rate; ``threshold`` the calibrated τ (+∞ when no τ was certified, in which case
    nothing is delegated; ``None`` for the batched methods and the oracle, which have none);
    ``found`` whether a τ was certified.
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

    def __repr__(self) -> str:
        head = f"method={self.method}, alpha={self.alpha:.4g}, found={self.found}"
        fields = ["batch_size", "threshold", "budget", "auroc", "accuracy", "mean_value"]
        return result_repr(self, head, fields)


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

    def __repr__(self) -> str:
        head = f"method={self.method}, n_points={self.alpha.size}, n_found={int(self.found.sum())}"
        return result_repr(self, head, ["batch_size", "alpha", "budget", "auroc", "accuracy"])


@dataclass(frozen=True)
class FAICScore:
    """FAIC of one method curve (top-k methods: at the largest batch size, as the reference)."""

    method: str
    batch_size: int | None
    auroc: float
    accuracy: float

    def __repr__(self) -> str:
        head = f"method={self.method}, auroc={self.auroc:.4f}, accuracy={self.accuracy:.4f}"
        return result_repr(self, head, ["batch_size"])


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

    def __repr__(self) -> str:
        found = sum(c.found for c in self.calibrations)
        faic_txt = ", ".join(
            f"{f.method}{'' if f.batch_size is None else f' B={f.batch_size}'} "
            f"{f.auroc:.3f}/{f.accuracy:.3f}"
            for f in self.faic
        )
        head = f"n_curves={len(self.methods)}, n_points={len(self.points)}"
        lines: list[tuple[str, Any]] = [
            ("calibrations", f"{found} of {len(self.calibrations)} found"),
            ("n", f"calibration {self.calib_index.size}, evaluation {self.eval_index.size}"),
            ("capacity", self.capacity),
            ("probe_only", _brief(self.probe_only)),
            ("expert_only", _brief(self.expert_only)),
            ("faic (auroc/accuracy)", faic_txt),
            ("settings", f"performance={self.settings.performance!r}, delta={self.settings.delta}"),
        ]
        return result_repr("SweepResult", head, lines)

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
                f"method: no points for ({plain(method)}, batch_size={batch_size}); "
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
            raise ValueError(f"method: no calibrations for {plain(method)}")
        return min(cands, key=lambda c: abs(c.alpha - alpha))


def _brief(m: CascadeMetrics) -> str:
    return f"auroc={m.auroc:.4f}, accuracy={m.accuracy:.4f}, budget={m.budget:.4f}"


def _eval_signal(cal: ThresholdCalibration, ev: CascadeTable) -> FloatArray:
    """The calibration's signal on the (trusted) rows of ``ev``."""
    if cal.signal == "uncertainty":
        assert cal.reference is not None
        return uncertainty_from_sorted(ev.probe, cal.reference)
    return ev.dv


def _points(
    method: str,
    batch_size: int | None,
    alphas: FloatArray,
    thresholds: Sequence[float | None],
    found: Sequence[bool],
    ev: CascadeTable,
    masks: BoolArray,
    merge: str,
) -> list[SweepPoint]:
    c = evaluate_unchecked(ev.labels, ev.probe, ev.expert, masks, merge)
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
    table: CascadeTable,
    *,
    settings: CTDSettings | str = "reference",
    grid: ArrayLike | None = None,
    group_alpha: Caps | Literal["alpha"] | None = None,
) -> SweepResult:
    """Run every method at every budget on ``table`` with the given protocol.

    Steps (CTD paper §5.1, reference protocol): threshold grid over the DV scores of the whole
    table (unless ``grid`` is given); split calibration / evaluation; on the calibration split
    calibrate CTD, Unc. calibrated and budget-only LTT at every α; on the evaluation split
    evaluate them, the global oracle at every α, and Unc./DV/Oracle top-k for every batch size
    and k; finally FAIC of each method (AUROC and accuracy) against the global oracle.

    ``group_alpha`` (beyond the paper) adds the grouped policies ``"ctd_grouped"`` and
    ``"budget_only_grouped"`` (:mod:`~ctd_stats.cascade.grouped_policies`, one shared threshold
    with the overall budget α and a cap per group of ``table.groups``): ``"alpha"`` caps every
    group at the sweep's α (at α = 1 nothing is capped: the ungrouped calibration), otherwise
    fixed caps (a number, a mapping group → cap, or a sequence in sorted-group order).
    """
    if not isinstance(table, CascadeTable):
        raise TypeError(f"table: expected a CascadeTable, got {type(table).__name__}")
    st = resolve_settings(settings)
    g = (
        threshold_grid_unchecked(table.dv, st.n_thresholds, st.threshold_margin)
        if grid is None
        else check_grid(grid)
    )
    split = split_indices(table.n, first_fraction=st.calibration_fraction, seed=st.seed)
    cal, ev = table.take(split.first), table.take(split.second)
    n1 = int(ev.labels.sum())
    if n1 == 0 or n1 == ev.n:
        raise ValueError("table: the evaluation split needs both labels")
    if cal.n < 4:
        raise ValueError(f"table: need at least 4 calibration rows, got {cal.n}")
    alphas = np.asarray(st.budgets, dtype=np.float64)
    a_list = [float(a) for a in alphas]
    data = ParetoData(
        cal.labels,
        cal.probe,
        cal.expert,
        st.delta,
        st.performance,
        st.merge,
        st.opt_fraction,
        int(st.seed),
        bool(st.strict),
    )
    ref = np.sort(cal.probe)
    u_cal = uncertainty_from_sorted(cal.probe, ref)
    calibrations: list[ThresholdCalibration] = []
    points: list[SweepPoint] = []
    for method in (CTD, UNC_CALIBRATED, BUDGET_ONLY):
        cals: list[ThresholdCalibration]
        if method == CTD:
            cals = pareto_ltt(data, CTD, "dv", cal.dv, g, a_list, None)
        elif method == UNC_CALIBRATED:
            u_grid = threshold_grid_unchecked(u_cal)
            cals = pareto_ltt(data, UNC_CALIBRATED, "uncertainty", u_cal, u_grid, a_list, ref)
        else:
            sha_dv = array_sha256(cal.dv)
            cals = [
                budget_only_unchecked(cal.dv, g, a, st.delta, st.strict, sha_dv) for a in a_list
            ]
        signal = _eval_signal(cals[0], ev)
        masks = np.stack([c._delegate(signal) for c in cals])
        points += _points(
            method,
            None,
            alphas,
            [c.threshold for c in cals],
            [c.found for c in cals],
            ev,
            masks,
            st.merge,
        )
        calibrations += cals
    if group_alpha is not None:
        for method in (CTD_GROUPED, BUDGET_ONLY_GROUPED):
            cals = [_grouped(method, data, cal, g, a, group_alpha) for a in a_list]
            masks = np.stack([c._delegate(ev.dv) for c in cals])
            thresholds = [c.threshold for c in cals]
            found = [c.found for c in cals]
            points += _points(method, None, alphas, thresholds, found, ev, masks, st.merge)
            calibrations += cals

    v_eval = delegation_value_unchecked(ev.labels, ev.probe, ev.expert)
    oracle = oracle_masks_unchecked(v_eval, alphas)
    n_a = alphas.size
    points += _points(GLOBAL_ORACLE, None, alphas, [None] * n_a, [True] * n_a, ev, oracle, st.merge)
    for b in st.batch_sizes:
        ks = topk_budgets_unchecked(b, st.topk_steps)
        fr = ks / b
        for method, sig, window in (
            (UNC_TOPK, ev.probe, "median"),
            (DV_TOPK, ev.dv, "top"),
            (ORACLE_TOPK, v_eval, "top"),
        ):
            masks = topk_masks_unchecked(sig, b, ks, window)
            points += _points(
                method, b, fr, [None] * ks.size, [True] * ks.size, ev, masks, st.merge
            )

    ends = np.stack([np.zeros(ev.n, dtype=bool), np.ones(ev.n, dtype=bool)])
    both = evaluate_unchecked(ev.labels, ev.probe, ev.expert, ends, st.merge)
    probe_only, expert_only = metrics_at(both, 0), metrics_at(both, 1)
    partial = SweepResult(
        points=tuple(points),
        probe_only=probe_only,
        expert_only=expert_only,
        capacity=float(np.mean(v_eval > 0)),
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
    if group_alpha is not None:  # after the paper's curves, which stay as they were
        faic_curves += [(CTD_GROUPED, None), (BUDGET_ONLY_GROUPED, None)]
    for method, bsz in faic_curves:
        mc = partial.curve(method, batch_size=bsz)
        scores.append(
            FAICScore(
                method=method,
                batch_size=bsz,
                auroc=faic_unchecked(
                    mc.alpha, mc.auroc, oc.alpha, oc.auroc, oc.budget, probe_only.auroc
                ),
                accuracy=faic_unchecked(
                    mc.alpha, mc.accuracy, oc.alpha, oc.accuracy, oc.budget, probe_only.accuracy
                ),
            )
        )
    return replace(partial, faic=tuple(scores))


def _grouped(
    method: str,
    data: ParetoData,
    cal: CascadeTable,
    grid: FloatArray,
    alpha: float,
    group_alpha: Caps | Literal["alpha"],
) -> ThresholdCalibration:
    """One grouped calibration of the sweep (shared threshold, caps from ``group_alpha``)."""
    ctd = method == CTD_GROUPED
    if isinstance(group_alpha, str) and group_alpha == "alpha":
        if alpha >= 1.0:  # a cap of 1 binds nothing: the ungrouped calibration
            plain = (
                pareto_ltt(data, CTD, "dv", cal.dv, grid, [alpha], None)[0]
                if ctd
                else budget_only_unchecked(
                    cal.dv, grid, alpha, data.delta, data.strict, array_sha256(cal.dv)
                )
            )
            return replace(plain, method=method)
        caps: Caps | None = None
    else:
        caps = group_alpha
    spec = gp.group_caps_iv(cal.groups, caps, False, cal.n, alpha, name="table")
    if ctd:
        return gp.pareto_ltt_grouped(data, CTD, "dv", cal.dv, grid, alpha, None, spec)
    sha = array_sha256(np.stack([cal.dv, spec.inverse]))
    return gp.budget_only_grouped(cal.dv, grid, alpha, data.delta, data.strict, sha, spec)


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
    if not isinstance(result, SweepResult):
        raise TypeError(f"result: expected a SweepResult, got {type(result).__name__}")
    if not isinstance(table, CascadeTable) or table.n != (
        result.calib_index.size + result.eval_index.size
    ):
        raise ValueError("table: must be the CascadeTable the sweep was run on")
    check_budget(alpha)
    ev = table.take(result.eval_index)
    if method in (CTD, UNC_CALIBRATED, BUDGET_ONLY, CTD_GROUPED, BUDGET_ONLY_GROUPED):
        cal = result.calibration(method, alpha)
        return cal._delegate(_eval_signal(cal, ev))
    if method == GLOBAL_ORACLE:
        a = min(result.settings.budgets, key=lambda x: abs(x - alpha))
        oracle: BoolArray = oracle_masks_unchecked(ev.values(), np.array([a]))[0]
        return oracle
    signals = {UNC_TOPK: (ev.probe, "median"), DV_TOPK: (ev.dv, "top"), ORACLE_TOPK: (None, "top")}
    if method not in signals:
        raise ValueError(f"method: must be one of {list(METHOD_NAMES)}, got {plain(method)}")
    if batch_size is None:
        raise ValueError("batch_size: required for the batched top-k methods")
    b = check_positive_int(batch_size, "batch_size")
    ks = topk_budgets_unchecked(b, result.settings.topk_steps)
    k = int(ks[np.argmin(np.abs(ks / b - alpha))])
    sig, window = signals[method]
    scores = ev.values() if sig is None else sig
    topk: BoolArray = topk_masks_unchecked(scores, b, np.array([k], dtype=np.int64), window)[0]
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
    """CTD paper Table 1 for one method: per-group mean v (all / delegated) and delegation rate.

    Computed on the sweep's evaluation split, e.g. ``method="ctd", alpha=0.2`` and
    ``method="unc_topk", alpha=0.2, batch_size=128``.
    """
    mask = sweep_delegation_mask(result, table, method, alpha=alpha, batch_size=batch_size)
    ev = table.take(result.eval_index)
    return group_summary(ev.values(), mask, ev.groups, names=names)
