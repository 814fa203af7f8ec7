"""The CTD paper's evaluation protocol: its settings, FAIC and the per-group summaries.

* :class:`CTDSettings` — every knob of the protocol (defaults: the reference code; CTD paper
  §5.1), with named variants in :data:`SETTINGS` (App. E's AUROC risk, the text's budget grid,
  the reference's strict rule p < δ).
* :func:`faic` — the fraction of achievable improvement captured (CTD paper §5.3).
* :func:`group_summary` and :func:`cap_group_indices` — per-group delegation (CTD paper §5.5,
  Table 1) and the reference's per-group cap.

The sweep itself is :func:`ctd_stats.cascade.sweeps.sweep`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._validation import (
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_level,
    check_positive_int,
)
from .calibration import BUDGET_ONLY, CTD, PLUG_IN, SELECTIVE, UNC_CALIBRATED
from .metrics import MERGES, Merge
from .signals import PERFORMANCE_RISKS, PerformanceRisk, check_budget, check_margin

__all__ = [
    "DV_TOPK",
    "GLOBAL_ORACLE",
    "METHOD_LABELS",
    "METHOD_NAMES",
    "ORACLE_TOPK",
    "SETTINGS",
    "UNC_TOPK",
    "CTDSettings",
    "GroupSummary",
    "budget_grid",
    "cap_group_indices",
    "faic",
    "group_summary",
]

UNC_TOPK: Final = "unc_topk"
DV_TOPK: Final = "dv_topk"
ORACLE_TOPK: Final = "oracle_topk"
GLOBAL_ORACLE: Final = "global_oracle"
METHOD_NAMES: Final[tuple[str, ...]] = (
    CTD,
    UNC_CALIBRATED,
    BUDGET_ONLY,
    UNC_TOPK,
    DV_TOPK,
    ORACLE_TOPK,
    GLOBAL_ORACLE,
)
#: Display label of each method name (the CTD paper's legend), for plots and tables.
METHOD_LABELS: Final[dict[str, str]] = {
    CTD: "CTD",
    UNC_CALIBRATED: "Unc. calibrated",
    BUDGET_ONLY: "Budget-only LTT",
    PLUG_IN: "Plug-in",
    SELECTIVE: "Selective",
    UNC_TOPK: "Unc. top-k",
    DV_TOPK: "DV top-k",
    ORACLE_TOPK: "Oracle top-k",
    GLOBAL_ORACLE: "Global oracle",
}


@dataclass(frozen=True)
class CTDSettings:
    """Every knob of the CTD evaluation protocol (defaults: the reference code, CTD paper §5.1).

    Attributes
    ----------
    n_thresholds, threshold_margin
        Threshold grid linspace(min d − margin, max d + margin, n_thresholds) over the DV scores
        of the whole table (the reference's "test set").
    budgets
        Budget levels α (reference: linspace(0.05, 1.0, 20); the paper's text says [0.05, 0.95]).
    delta
        FWER level δ of the budget guarantee.
    calibration_fraction, opt_fraction, seed
        Table split calibration / evaluation (first ``calibration_fraction`` of a
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
    calibration_fraction: float = 0.5
    opt_fraction: float = 0.3
    seed: int = 42
    performance: PerformanceRisk = "accuracy"
    merge: Merge = "replace"
    batch_sizes: tuple[int, ...] = (32, 64, 128)
    topk_steps: int = 20
    strict: bool = False

    def __post_init__(self) -> None:
        check_positive_int(self.n_thresholds, "n_thresholds", minimum=2)
        check_margin(self.threshold_margin, "threshold_margin")
        _check_tuple(self.budgets, "budgets")
        for a in self.budgets:
            check_budget(a, "budgets")
        if len(self.budgets) == 0:
            raise ValueError("budgets: must not be empty")
        check_level(self.delta, "delta")
        check_level(self.calibration_fraction, "calibration_fraction")
        check_level(self.opt_fraction, "opt_fraction")
        check_choice(self.performance, "performance", PERFORMANCE_RISKS)
        check_choice(self.merge, "merge", MERGES)
        _check_tuple(self.batch_sizes, "batch_sizes")
        for b in self.batch_sizes:
            check_positive_int(b, "batch_sizes")
        check_positive_int(self.topk_steps, "topk_steps")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed: expected an integer, got {type(self.seed).__name__}")
        if not isinstance(self.strict, (bool, np.bool_)):
            raise TypeError(f"strict: expected a bool, got {type(self.strict).__name__}")

    def __repr__(self) -> str:
        b = self.budgets
        head = f"performance={self.performance!r}, merge={self.merge!r}, delta={self.delta}"
        budgets = ("budgets", f"{len(b)} in [{min(b):.4g}, {max(b):.4g}]")
        grid = ("grid", f"{self.n_thresholds} thresholds, margin {self.threshold_margin}")
        rest = ["calibration_fraction", "opt_fraction", "seed", "batch_sizes", "strict"]
        return result_repr(self, head, [budgets, grid, *rest])


def _check_tuple(value: object, name: str) -> None:
    """A field holding several values must be a sequence (tuple, list or 1-d array), not one
    scalar or a string."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name}: expected a sequence of values, got {type(value).__name__}")
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise ValueError(f"{name}: expected 1 dimension(s), got shape {value.shape}")


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
    return np.asarray(resolve_settings(settings).budgets, dtype=np.float64)


def resolve_settings(settings: CTDSettings | str) -> CTDSettings:
    if isinstance(settings, CTDSettings):
        return settings
    check_choice(settings, "settings", tuple(SETTINGS))
    return SETTINGS[settings]


def faic(
    method_alphas: ArrayLike,
    method_values: ArrayLike,
    *,
    oracle_alphas: ArrayLike,
    oracle_values: ArrayLike,
    oracle_budgets: ArrayLike,
    probe_value: float,
) -> float:
    """Fraction of achievable improvement captured, FAIC (CTD paper §5.3; reference definition).

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
    if isinstance(probe_value, bool) or not isinstance(probe_value, (int, float, np.number)):
        raise TypeError(f"probe_value: expected a number, got {type(probe_value).__name__}")
    return faic_unchecked(ma, mv, oa, ov, ob, float(probe_value))


def faic_unchecked(
    ma: FloatArray,
    mv: FloatArray,
    oa: FloatArray,
    ov: FloatArray,
    ob: FloatArray,
    probe_value: float,
) -> float:
    """Kernel of :func:`faic` (validated inputs)."""
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
    """Per-group delegation summary (CTD paper §5.5, Table 1), arrays aligned with ``groups``.

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

    def __repr__(self) -> str:
        rows = [
            (str(g), f"n={n}, rate={r:.4f}, mean v={mv:.4f}, mean v delegated={md:.4f}")
            for g, n, r, mv, md in zip(
                self.groups[:10],
                self.n.tolist(),
                self.delegation_rate.tolist(),
                self.mean_value.tolist(),
                self.mean_value_delegated.tolist(),
                strict=False,
            )
        ]
        more = [("...", f"{len(self.groups) - 10} more groups")] if len(self.groups) > 10 else []
        return result_repr("GroupSummary", f"n_groups={len(self.groups)}", rows + more)


def _as_array(value: ArrayLike, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from None


def _as_groups(value: ArrayLike, name: str = "groups") -> np.ndarray:
    """Group labels as a str array (any labels; compared as strings)."""
    return _as_array(value, name).astype(str)


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
    d = _as_array(delegated, "delegated")
    d = d.astype(bool) if d.dtype == np.bool_ else as_binary_array(d, "delegated").astype(bool)
    if d.ndim != 1 or d.size != v.size:
        raise ValueError(f"delegated: expected shape ({v.size},), got {d.shape}")
    g = _as_groups(groups)
    if g.ndim != 1 or g.size != v.size:
        raise ValueError(f"groups: expected shape ({v.size},), got {g.shape}")
    if names is not None and (
        isinstance(names, (str, bytes)) or not isinstance(names, (Sequence, np.ndarray))
    ):
        raise TypeError(f"names: expected a sequence of group names, got {type(names).__name__}")
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
    g = _as_groups(groups)
    if g.ndim != 1 or g.size == 0:
        raise ValueError("groups: expected a non-empty 1-d array")
    cap = check_positive_int(cap, "cap")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    seed = int(seed)
    _, first = np.unique(g, return_index=True)
    out: list[IntArray] = []
    for name in g[np.sort(first)]:
        rows = np.flatnonzero(g == name)
        if rows.size > cap:
            rng = random.Random(seed)
            rows = rows[np.asarray(rng.sample(range(rows.size), cap), dtype=np.int64)]
        out.append(rows)
    return np.concatenate(out).astype(np.int64)
