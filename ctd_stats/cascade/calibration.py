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

from .._serialize import JSONSerializable
from .._validation import BoolArray, FloatArray, IntArray, as_float_array
from ._repr import fmt
from .signals import Signal, _uncertainty

__all__ = [
    "BUDGET_ONLY",
    "CALIBRATED_METHODS",
    "CTD",
    "PLUG_IN",
    "UNC_CALIBRATED",
    "ThresholdCalibration",
]

CTD: Final = "CTD"
UNC_CALIBRATED: Final = "Unc. calibrated"
BUDGET_ONLY: Final = "Budget-only LTT"
PLUG_IN: Final = "Plug-in"
CALIBRATED_METHODS: Final[tuple[str, ...]] = (CTD, UNC_CALIBRATED, BUDGET_ONLY, PLUG_IN)

_GUARANTEE = (
    "With probability at least 1 - delta over the calibration data (exchangeable with the "
    "deployment data), the chosen threshold has true delegation rate P(signal > threshold) <= "
    "alpha, and so does every certified threshold (Learn-then-Test with fixed-sequence testing{}; "
    "CTD paper Sec. 4.2, problem (5)). If nothing was certified the threshold is +inf: the policy "
    "never delegates."
)
_NO_GUARANTEE = (
    "NO guarantee: the uncorrected plug-in threshold (smallest threshold whose empirical "
    "calibration budget is <= alpha) exceeds the budget about half the time; a negative control, "
    "never a policy to deploy."
)


@dataclass(frozen=True)
class ThresholdCalibration(JSONSerializable):
    """A calibrated "delegate iff signal > τ" policy.

    Guarantee (methods ``"CTD"``, ``"Unc. calibrated"``, ``"Budget-only LTT"``): with probability
    ≥ 1 − ``delta`` over the calibration data (exchangeable with the deployment data), the chosen
    threshold has true delegation rate P(signal > τ) ≤ ``alpha``, and so does every threshold in
    ``certified`` (CTD paper §4.2, problem (5)). Method ``"Plug-in"`` has NO guarantee and
    ``delta=None``.

    Attributes
    ----------
    method
        ``"CTD"``, ``"Unc. calibrated"``, ``"Budget-only LTT"`` or ``"Plug-in"``.
    signal
        ``"dv"`` (inputs to :meth:`delegate` are DV scores) or ``"uncertainty"`` (inputs are probe
        scores, turned into u = −|F̂(p) − 0.5| with F̂ from ``reference``).
    alpha, delta
        Budget level and the probability δ that the calibration fails (``None``: plug-in).
    found
        Whether a threshold was certified. If not, ``threshold`` is +∞ (never delegate),
        ``index`` is ``None`` and ``reason`` says why.
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
            return _uncertainty(p, self.reference)
        return as_float_array(scores, "scores", ndim=(0, 1, 2))

    def delegate(self, scores: ArrayLike) -> BoolArray:
        """Delegation decisions (signal > τ) for raw inputs; all False when nothing was found."""
        return self._delegate(self.signal_scores(scores))

    def _delegate(self, signal: FloatArray) -> BoolArray:
        # τ = +∞ when nothing was found, so "signal > τ" is False everywhere: no special case.
        return np.asarray(signal > self.threshold)

    # ------------------------------------------------------------------ reporting
    def __repr__(self) -> str:
        head = (
            f"ThresholdCalibration({self.method}: found, threshold={fmt(self.threshold)}, "
            f"index={self.index} of {self.grid.size})"
            if self.found
            else f"ThresholdCalibration({self.method}: NOT FOUND, never delegates "
            f"(threshold={self.threshold}); reason: {self.reason}"
            + ("" if self.min_n is None else f"; min_n={self.min_n}")
            + ")"
        )
        delta = "None (no guarantee)" if self.delta is None else fmt(self.delta)
        lines = [
            head,
            f"  alpha={fmt(self.alpha)}, delta={delta}, signal={self.signal!r}, "
            f"n={self.n} (opt {self.n_opt}, ht {self.n_test})",
            f"  certified: {int(self.certified.sum())} of {self.grid.size} grid points; "
            f"front: {self.front.size} points",
        ]
        return "\n".join(lines)

    def _json_meta(self) -> dict[str, Any]:
        if self.delta is None:
            guarantee = _NO_GUARANTEE
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
