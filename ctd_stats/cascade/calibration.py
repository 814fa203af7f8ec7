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
from .signals import Signal, uncertainty_from_sorted

__all__ = [
    "BUDGET_ONLY",
    "CALIBRATED_METHODS",
    "CTD",
    "PLUG_IN",
    "UNC_CALIBRATED",
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

    def delegate(self, scores: ArrayLike) -> BoolArray:
        """Delegation decisions (signal > τ) for raw inputs; all False when nothing was found."""
        return self._delegate(self.signal_scores(scores))

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
        return result_repr("ThresholdCalibration", head, lines)

    def _json_meta(self) -> dict[str, Any]:
        if self.delta is None:
            guarantee = _NO_GUARANTEE
        elif self.method == SELECTIVE:
            guarantee = _SELECTIVE_GUARANTEE.format(
                error_alpha=self.settings["error_alpha"], budget=self.settings["budget"]
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
            },
        }
