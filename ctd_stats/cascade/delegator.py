"""Streaming deployment of a calibrated delegation policy: :class:`Delegator`.

A :class:`Delegator` applies a calibrated threshold
(:class:`~ctd_stats.cascade.calibration.ThresholdCalibration`, CTD paper §4.2) to ONE input at a
time — the rule "delegate iff signal(x) > τ" uses no batch statistic, so it runs on a stream —
and advances a :class:`~ctd_stats.cascade.streaming.BudgetMonitor` at the calibration's budget
with each decision; the monitor's alarm means the stream no longer looks like the calibration
data (recalibrate). Guarantee: each decision inherits the calibration's P(rate ≤ α) ≥ 1 − δ on
exchangeable streams; the alarm is anytime valid at ``level`` (plus δ, see the monitor).

Protocol (:mod:`ctd_stats._streaming`): ``state = delegator.init()``;
``state, step = delegator.update(state, score)`` with ``step.delegated`` the decision and
``step.statistic`` the monitor's log e-value; :meth:`Delegator.decide_stream` does a whole
stretch at once (vectorised decisions, the bets in one tight loop) with identical results.
:class:`DelegationSession` is a convenience holder of a state; it only calls the pure methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._repr import fmt, headline, result_repr
from .._serialize import JSONSerializable, exact_eq
from .._streaming import BatchMonitor, Step, StreamingMonitor, Trace, check_state, trace_by_updates
from .._validation import as_float_array, check_choice
from .calibration import ThresholdCalibration
from .metrics import MERGES, Merge
from .signals import uncertainty_from_sorted
from .streaming import BudgetMonitor

__all__ = ["DelegationSession", "Delegator", "DelegatorState"]


@exact_eq
@dataclass(frozen=True)
class DelegatorState(JSONSerializable, kind="ctd_stats.DelegatorState"):
    """A delegator after ``t`` inputs: its monitor's state (``None`` without one).

    ``alarm_step`` is the 0-based step of the monitor's first alarm (``None`` while there is
    none). The state serialises exactly when the monitor's state does (every monitor of the
    package).
    """

    t: int
    monitor: Any
    alarm_step: int | None = None

    _json_guarantee = (
        "State of a streaming CTD delegator and its anytime-valid budget monitor: restoring it "
        "and continuing gives exactly the decisions and e-values of an uninterrupted run."
    )

    @property
    def needs_recalibration(self) -> bool:
        """True once the monitor has alarmed."""
        return self.alarm_step is not None

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"t={self.t}, alarm_step={self.alarm_step}",
            [("monitor", headline(self.monitor))],
        )


def check_score(score: object) -> float:
    if isinstance(score, (bool, np.bool_)) or not isinstance(
        score, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"score: expected one number, got {type(score).__name__}")
    value = float(score)
    if not math.isfinite(value):
        raise ValueError(f"score: must be finite, got {score!r}")
    return value


class Delegator:
    """Decide, one input at a time, whether to call the expert, and watch the budget.

    Built from a calibrated policy: the score of an input is a DV score (CTD, budget-only LTT)
    or a probe score (Unc. calibrated; turned into u = −|F̂(p) − 0.5| with the stored
    calibration reference). If nothing was certified at calibration (τ = +∞) it never delegates.
    A :class:`~ctd_stats._streaming.StreamingMonitor` itself (``update(state, score, /)``).

    ``monitor``: ``True`` (default) attaches a :class:`BudgetMonitor` at the calibration's
    budget with ``level`` and ``strategy``; ``False`` none; or pass any
    :class:`~ctd_stats._streaming.StreamingMonitor`: it is fed each decision (``True`` /
    ``False``) through its public ``update`` (or its vectorised ``run(x, /, *, state=)`` in
    :meth:`decide_stream` when it has one), as optax's ``chain`` composes transformations. A
    budget of 1 cannot be exceeded, so ``True`` then attaches no monitor. Immutable.
    """

    __slots__ = ("_ref", "calibration", "monitor")

    calibration: ThresholdCalibration
    monitor: StreamingMonitor[Any] | None
    _ref: list[float] | None

    def __init__(
        self,
        calibration: ThresholdCalibration,
        *,
        monitor: bool | StreamingMonitor[Any] = True,
        level: float = 0.05,
        strategy: str = "ons",
    ) -> None:
        if not isinstance(calibration, ThresholdCalibration):
            raise TypeError(
                f"calibration: expected a ThresholdCalibration, got {type(calibration).__name__}"
            )
        mon: StreamingMonitor[Any] | None
        if isinstance(monitor, (bool, np.bool_)):
            # α = 1: every rate is within budget, so there is nothing to monitor.
            use = bool(monitor) and calibration.alpha < 1.0
            mon = BudgetMonitor(calibration.alpha, level=level, strategy=strategy) if use else None
        elif isinstance(monitor, StreamingMonitor):
            mon = monitor
        else:
            raise TypeError(f"monitor: expected a bool or a StreamingMonitor, got {monitor!r}")
        object.__setattr__(self, "calibration", calibration)
        object.__setattr__(self, "monitor", mon)
        ref = calibration.reference
        object.__setattr__(self, "_ref", None if ref is None else ref.tolist())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Delegator is immutable")

    def __repr__(self) -> str:
        c = self.calibration
        return result_repr(
            self,
            f"{c.method}, found={c.found}, threshold={fmt(c.threshold)}, alpha={fmt(c.alpha)}",
            [("monitor", headline(self.monitor))],
        )

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    # ------------------------------------------------------------------ protocol
    def init(self) -> DelegatorState:
        """The state before any input."""
        return DelegatorState(t=0, monitor=None if self.monitor is None else self.monitor.init())

    def update(self, state: DelegatorState, score: float, /) -> tuple[DelegatorState, Step]:
        """Decide for one input from its raw score; pure. ``step.delegated`` is the decision."""
        check_state(state, DelegatorState)
        value = check_score(score)
        signal = value
        if self._ref is not None:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"score: a probe score must lie in [0, 1], got {value!r}")
            signal = uncertainty_from_sorted(value, self._ref)
        delegated = signal > self.calibration.threshold
        if self.monitor is None:
            step = Step(state.t, value, 0.0, False, False, None, delegated)
            return DelegatorState(t=state.t + 1, monitor=None), step
        mstate, ms = self.monitor.update(state.monitor, delegated)
        step = Step(state.t, value, ms.statistic, ms.alarm, ms.new_alarm, ms.alarm_step, delegated)
        return DelegatorState(t=state.t + 1, monitor=mstate, alarm_step=ms.alarm_step), step

    def decide_stream(
        self, scores: ArrayLike, /, *, state: DelegatorState | None = None
    ) -> Trace[DelegatorState]:
        """Decisions for a stretch of inputs, each made on its own score alone.

        Identical to calling :meth:`update` on each element in order (tested), but vectorised:
        the threshold comparison on the whole array, then the monitor's ``run`` (or its
        ``update`` in a loop when it has no ``run``).
        """
        state = self.init() if state is None else check_state(state, DelegatorState)
        c = self.calibration
        if c.signal == "uncertainty":
            x = as_float_array(scores, "scores", ndim=1, low=0.0, high=1.0)
            assert c.reference is not None
            signal = uncertainty_from_sorted(x, c.reference)
        else:
            x = signal = as_float_array(scores, "scores", ndim=1)
        d = np.asarray(signal > c.threshold)  # τ = +∞ when nothing was certified: never
        n = int(d.size)
        if self.monitor is None:
            new = DelegatorState(t=state.t + n, monitor=None)
            return Trace(x, np.zeros(n), None, new, start=state.t, delegated=d)
        if isinstance(self.monitor, BatchMonitor):
            mtrace = self.monitor.run(d, state=state.monitor)
        else:
            mtrace = trace_by_updates(
                self.monitor, d.tolist(), state.monitor, start=state.t, alarm_step=state.alarm_step
            )
        new = DelegatorState(t=state.t + n, monitor=mtrace.state, alarm_step=mtrace.alarm_step)
        return Trace(x, mtrace.statistic, mtrace.alarm_step, new, start=state.t, delegated=d)

    @staticmethod
    def output(
        probe: float, expert: float | None, delegated: bool | Step, *, merge: Merge = "replace"
    ) -> float:
        """The cascade score for one input: the probe's, or the expert's (or the average)."""
        check_choice(merge, "merge", MERGES)
        if isinstance(delegated, Step):
            if delegated.delegated is None:
                raise ValueError("delegated: this Step carries no delegation decision")
            delegated = delegated.delegated
        p = float(probe)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probe: must lie in [0, 1], got {probe!r}")
        if not delegated:
            return p
        if expert is None:
            raise ValueError("expert: required for a delegated input")
        e = float(expert)
        if not 0.0 <= e <= 1.0:
            raise ValueError(f"expert: must lie in [0, 1], got {expert!r}")
        return e if merge == "replace" else 0.5 * (p + e)


class DelegationSession:
    """A :class:`Delegator` together with its current state (a convenience for live serving).

    Holds a state and calls only the pure :meth:`Delegator.update` /
    :meth:`Delegator.decide_stream`; :meth:`checkpoint` / :meth:`restore` go through the exact
    JSON of the state.
    """

    def __init__(self, delegator: Delegator, state: DelegatorState | None = None) -> None:
        if not isinstance(delegator, Delegator):
            raise TypeError(f"delegator: expected a Delegator, got {type(delegator).__name__}")
        self.delegator = delegator
        self.state = delegator.init() if state is None else state

    def __repr__(self) -> str:
        return result_repr(self, f"t={self.state.t}", [("delegator", repr(self.delegator))])

    @property
    def needs_recalibration(self) -> bool:
        return self.state.needs_recalibration

    def decide(self, score: float) -> Step:
        """Decide for one input and advance the state."""
        self.state, step = self.delegator.update(self.state, score)
        return step

    def decide_stream(self, scores: ArrayLike) -> Trace[DelegatorState]:
        """Decide a stretch of inputs and advance the state."""
        trace = self.delegator.decide_stream(scores, state=self.state)
        self.state = trace.state
        return trace

    def reset(self) -> None:
        """Forget the stream (e.g. after recalibrating)."""
        self.state = self.delegator.init()

    def checkpoint(self) -> str:
        """The state as exact JSON."""
        return self.state.to_json()

    @classmethod
    def restore(cls, delegator: Delegator, text: str) -> DelegationSession:
        """A session continuing from a :meth:`checkpoint`."""
        return cls(delegator, DelegatorState.from_json(text))


