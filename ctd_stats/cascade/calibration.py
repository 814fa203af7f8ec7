"""The calibrated "delegate iff signal > τ" policy: :class:`ThresholdCalibration`.

One result class for every calibrated method (CTD, "Unc. calibrated", budget-only LTT and the
uncorrected plug-in). It applies itself to new inputs one score at a time (no batch statistic),
states its guarantee, and ships as exact JSON (``to_json`` / ``from_json``) with the sha256 of
the calibration data, so the threshold used in serving is provably the one calibrated offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._serialize import JSONSerializable, exact_eq
from .._validation import BoolArray, FloatArray, IntArray, as_float_array
from ..grouped import GroupLabel, group_labels, group_position
from .signals import Signal, uncertainty_from_sorted

__all__ = [
    "BUDGET_ONLY",
    "BUDGET_ONLY_GROUPED",
    "CALIBRATED_METHODS",
    "CTD",
    "CTD_GROUPED",
    "GROUPED_METHODS",
    "PLUG_IN",
    "UNC_CALIBRATED",
    "UNC_CALIBRATED_GROUPED",
    "ThresholdCalibration",
]

# Method names: one snake_case scheme in code and results; display labels are derived from
# them by :data:`ctd_stats.cascade.protocol.METHOD_LABELS`.
CTD: Final = "ctd"
UNC_CALIBRATED: Final = "unc_calibrated"
BUDGET_ONLY: Final = "budget_only"
PLUG_IN: Final = "plug_in"
# exported by :mod:`~ctd_stats.cascade.selective`, whose results carry it
SELECTIVE: Final = "selective"
CALIBRATED_METHODS: Final[tuple[str, ...]] = (CTD, UNC_CALIBRATED, BUDGET_ONLY, PLUG_IN, SELECTIVE)
# The same procedures with group caps (:mod:`~ctd_stats.cascade.grouped_policies`).
CTD_GROUPED: Final = "ctd_grouped"
UNC_CALIBRATED_GROUPED: Final = "unc_calibrated_grouped"
BUDGET_ONLY_GROUPED: Final = "budget_only_grouped"
GROUPED_METHODS: Final[tuple[str, ...]] = (CTD_GROUPED, UNC_CALIBRATED_GROUPED, BUDGET_ONLY_GROUPED)
#: Fields that only grouped calibrations carry (left out of an ungrouped payload, which thus
#: stays exactly the 1.0 payload).
_GROUP_FIELDS: Final[tuple[str, ...]] = (
    "groups",
    "group_mode",
    "group_alpha",
    "group_delta",
    "group_thresholds",
    "group_found",
    "group_certified",
    "group_pvalues",
    "group_n_test",
    "group_reasons",
)

_GUARANTEE = (
    "With probability at least 1 - delta over the calibration data (exchangeable with the "
    "deployment data), the chosen threshold has true delegation rate P(signal > threshold) <= "
    "alpha, and so does every certified threshold (Learn-then-Test with fixed-sequence testing{}; "
    "CTD paper Sec. 4.2, problem (5)). If nothing was certified the threshold is +inf: the policy "
    "never delegates."
)
_SELECTIVE_GUARANTEE = (
    "With probability at least 1 - delta over the calibration data (exchangeable with the "
    "deployment data), the weak verdict's error rate among kept inputs P(wrong | signal <= "
    "threshold) is <= {error_alpha!r}, and so is it at every certified threshold; with "
    "budget={budget!r} (not None) the delegation rate P(signal > threshold) is <= budget at the "
    "same time (Learn-then-Test with one sample size per threshold, intersection-union over the "
    "two risks; Geifman & El-Yaniv 2017). If nothing was certified the threshold is -inf: the "
    "policy delegates everything."
)
_GROUPED_GUARANTEE = {
    "shared": (
        "With probability at least 1 - delta over the calibration data (within each group "
        "exchangeable with that group's deployment data), the one shared threshold has overall "
        "delegation rate <= alpha (when alpha < 1) AND every group's rate P(signal > threshold | "
        "group) <= its cap {caps}, all at once, and so does every certified threshold "
        "(Learn-then-Test{front}, intersection-union p-value max(p_overall, max_g p_g), no "
        "correction; Angelopoulos et al. 2022 Thm. 1, Berger 1982). If nothing was certified the "
        "threshold is +inf: the policy never delegates."
    ),
    "per_group": (
        "With probability at least 1 - delta over the calibration data (within each group "
        "exchangeable with that group's deployment data), every group's own threshold has "
        "delegation rate P(signal > threshold_g | group) <= its cap {caps}, for all groups at "
        "once (Learn-then-Test{front} per group at delta/G, Bonferroni); hence the overall rate "
        "is <= alpha >= every cap, whatever the group mix. The group of each input must be known "
        "when it is decided. A group with nothing certified never delegates (+inf)."
    ),
}
_NO_GUARANTEE = (
    "NO guarantee: the uncorrected plug-in threshold (smallest threshold whose empirical "
    "calibration budget is <= alpha) exceeds the budget about half the time; a negative control, "
    "never a policy to deploy."
)


@exact_eq
@dataclass(frozen=True)
class ThresholdCalibration(JSONSerializable, kind="ctd_stats.ThresholdCalibration"):
    """A calibrated "delegate iff signal > τ" policy.

    Guarantee (methods ``"ctd"``, ``"unc_calibrated"``, ``"budget_only"``): with probability
    ≥ 1 − ``delta`` over the calibration data (exchangeable with the deployment data), the chosen
    threshold has true delegation rate P(signal > τ) ≤ ``alpha``, and so does every threshold in
    ``certified`` (CTD paper §4.2, problem (5)). Method ``"plug_in"`` has NO guarantee and
    ``delta=None``.

    Attributes
    ----------
    method
        ``"ctd"``, ``"unc_calibrated"``, ``"budget_only"`` or ``"plug_in"`` (display labels:
        :data:`~ctd_stats.cascade.protocol.METHOD_LABELS`).
    signal
        ``"dv"`` (inputs to :meth:`delegate` are DV scores) or ``"uncertainty"`` (inputs are probe
        scores, turned into u = −|F̂(p) − 0.5| with F̂ from ``reference``).
    alpha, delta
        Budget level and the probability δ that the calibration fails (``None``: plug-in).
    found
        Whether a threshold was certified. If not, ``index`` is ``None``, ``reason`` says why
        and ``threshold`` is the safe choice: +∞ (never delegate) for the budget methods, −∞
        (delegate everything) for ``"selective"``.
    threshold, index
        The chosen τ and its grid index.
    reason
        Why nothing was found (``None`` when found).
    min_n
        When the calibration set was too small for any threshold to pass: the smallest
        calibration size at which zero delegations would be certified; otherwise ``None``.
    grid
        The candidate thresholds (increasing).
    certified
        Boolean mask over the grid of the certified thresholds.
    front
        Pareto-front grid indices in testing order (largest τ first); all indices in decreasing
        order for budget-only LTT; empty for the plug-in.
    pvalues
        Budget p-values per grid point (NaN where not computed: the plug-in).
    opt_budget, opt_performance
        Opt-split empirical budget and performance risk per grid point (Pareto methods; the whole
        calibration set's budget and NaN performance otherwise).
    n_opt, n_test
        Sizes of the optimisation and hypothesis-testing sets.
    reference
        Sorted calibration probe scores defining F̂ (``signal="uncertainty"`` only).
    calibration_sha256
        sha256 (:func:`ctd_stats._serialize.array_sha256`) of the calibration data: the stacked
        rows (signal input, probe, expert, labels) for Pareto methods, the scores otherwise.
    settings
        The user-chosen settings (performance risk, merge, opt_fraction, seed, strict).
    groups, group_mode
        Grouped calibrations only (``None`` otherwise): the group labels (sorted; every
        ``group_*`` array follows them) and ``"shared"`` (one threshold, every group under its
        cap) or ``"per_group"`` (one threshold per group, simultaneous over groups).
    group_alpha, group_delta
        The caps α_g (G,) and the level each group was tested at (δ shared, δ/G per group).
    group_thresholds, group_found
        The threshold used for each group (G,) (all equal to ``threshold`` in shared mode; +∞
        where a group certified nothing) and whether each group found one.
    group_certified, group_pvalues
        Per group (G, m): the certified mask (per group: along that group's own Pareto front)
        and the binomial p-values of H0: R_g(τ) > α_g.
    group_n_test, group_reasons
        Rows of each group in the hypothesis-testing set, and why a group certified nothing.

    Notes
    -----
    In per-group mode ``threshold`` is the largest group threshold: the rates fall as τ grows,
    so it keeps every group under its cap and is the one to use when the group is unknown
    (``index`` its grid index, ``certified`` the grid points certified for every group,
    ``found`` whether every group found a threshold).
    """

    method: str
    signal: Signal
    alpha: float
    delta: float | None
    found: bool
    threshold: float
    index: int | None
    reason: str | None
    min_n: int | None
    grid: FloatArray
    certified: BoolArray
    front: IntArray
    pvalues: FloatArray
    opt_budget: FloatArray
    opt_performance: FloatArray
    n_opt: int
    n_test: int
    reference: FloatArray | None = None
    calibration_sha256: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    groups: tuple[GroupLabel, ...] | None = None
    group_mode: str | None = None
    group_alpha: FloatArray | None = None
    group_delta: float | None = None
    group_thresholds: FloatArray | None = None
    group_found: BoolArray | None = None
    group_certified: BoolArray | None = None
    group_pvalues: FloatArray | None = None
    group_n_test: IntArray | None = None
    group_reasons: tuple[str | None, ...] | None = None

    @property
    def n(self) -> int:
        """Calibration size (opt + ht)."""
        return self.n_opt + self.n_test

    def signal_scores(self, scores: ArrayLike) -> FloatArray:
        """The delegation signal for raw inputs (DV scores, or probe scores → u)."""
        if self.signal == "uncertainty":
            p = as_float_array(scores, "scores", ndim=(0, 1, 2), low=0.0, high=1.0)
            assert self.reference is not None
            return uncertainty_from_sorted(p, self.reference)
        return as_float_array(scores, "scores", ndim=(0, 1, 2))

    def group_index(self, group: GroupLabel | np.integer[Any]) -> int:
        """Position of ``group`` in :attr:`groups` (``ValueError`` naming ``group`` if unknown)."""
        return group_position(self.groups or (), group)

    def threshold_for(self, group: GroupLabel) -> float:
        """The threshold used for inputs of ``group``.

        The shared one in shared mode and for an ungrouped calibration (any group), the group's
        own in per-group mode; an unknown group of a grouped calibration is a ``ValueError``.
        """
        if self.groups is None:
            return self.threshold
        i = self.group_index(group)
        assert self.group_thresholds is not None
        return float(self.group_thresholds[i])

    def row_thresholds(self, groups: ArrayLike, n: int) -> FloatArray:
        """The threshold of each of ``n`` inputs from their group labels (validated)."""
        labels, inverse = group_labels(groups, "groups")
        if inverse.size != n:
            raise ValueError(f"groups: length {inverse.size} does not match scores ({n} inputs)")
        per_label = np.array([self.threshold_for(g) for g in labels], dtype=np.float64)
        out: FloatArray = per_label[inverse]
        return out

    def delegate(self, scores: ArrayLike, *, groups: ArrayLike | None = None) -> BoolArray:
        """Delegation decisions (signal > τ) for raw inputs; all False when nothing was found.

        ``groups`` (one label per input, 1-d ``scores``): required by a per-group calibration,
        checked against the calibrated groups by a shared one, ignored without groups.
        """
        signal = self.signal_scores(scores)
        if self.group_mode == "per_group" and groups is None:
            raise ValueError(
                "groups: required by a per-group calibration (one threshold per group)"
            )
        if groups is None or self.groups is None:
            return self._delegate(signal)
        if signal.ndim != 1:
            raise ValueError(f"scores: expected 1-d scores with groups, got shape {signal.shape}")
        return np.asarray(signal > self.row_thresholds(groups, signal.size))

    def _delegate(self, signal: FloatArray) -> BoolArray:
        # Nothing found: τ = +∞ (never delegate) or −∞ (selective: delegate everything), so
        # "signal > τ" needs no special case.
        return np.asarray(signal > self.threshold)

    # ------------------------------------------------------------------ reporting
    def __repr__(self) -> str:
        head = f"method={self.method}, found={self.found}, threshold={self.threshold:.6g}"
        lines: list[tuple[str, Any]] = []
        if not self.found:
            safe = "never delegates" if self.threshold > 0 else "delegates everything"
            lines += [("reason", self.reason), ("min_n", self.min_n), ("policy", safe)]
        lines += [
            ("index", None if self.index is None else f"{self.index} of {self.grid.size}"),
            ("alpha", self.alpha),
            ("delta", "None (no guarantee)" if self.delta is None else self.delta),
            ("signal", self.signal),
            ("n", f"{self.n} (opt {self.n_opt}, ht {self.n_test})"),
            ("certified", self.certified),
            ("front", self.front),
        ]
        if self.groups is not None:
            lines.append(("groups", self._groups_line()))
        return result_repr("ThresholdCalibration", head, lines)

    def _groups_line(self) -> str:
        assert self.group_thresholds is not None and self.group_alpha is not None
        parts = [
            f"{g!r} {t:.4g} (cap {a:.4g})"
            for g, t, a in zip(
                self.groups or (),
                self.group_thresholds.tolist(),
                self.group_alpha.tolist(),
                strict=True,
            )
        ]
        shown = ", ".join(parts[:4]) + (", ..." if len(parts) > 4 else "")
        return f"{len(parts)} {self.group_mode}: {shown}"

    def _fields_json(self) -> dict[str, Any]:
        out = super()._fields_json()
        if self.groups is None:  # an ungrouped payload is exactly the 1.0 one
            for name in _GROUP_FIELDS:
                del out[name]
        return out

    def _json_meta(self) -> dict[str, Any]:
        if self.delta is None:
            guarantee = _NO_GUARANTEE
        elif self.method == SELECTIVE:
            guarantee = _SELECTIVE_GUARANTEE.format(
                error_alpha=self.settings["error_alpha"], budget=self.settings["budget"]
            )
        elif self.groups is not None:
            assert self.group_alpha is not None
            caps = ", ".join(
                f"{g!r}: {a!r}" for g, a in zip(self.groups, self.group_alpha.tolist(), strict=True)
            )
            pareto = self.method != BUDGET_ONLY_GROUPED
            guarantee = _GROUPED_GUARANTEE[str(self.group_mode)].format(
                caps="{" + caps + "}",
                front=" along the Pareto front of the opt split" if pareto else "",
            )
        elif self.method in (CTD, UNC_CALIBRATED):
            guarantee = _GUARANTEE.format(" along the Pareto front of the opt split")
        else:
            guarantee = _GUARANTEE.format("")
        return {
            "guarantee": guarantee,
            "n": self.n,
            "calibration_sha256": self.calibration_sha256,
            "settings": {
                "method": self.method,
                "alpha": self.alpha,
                "delta": self.delta,
                **self.settings,
                **(
                    {}
                    if self.groups is None
                    else {"groups": list(self.groups), "group_mode": self.group_mode}
                ),
            },
        }
