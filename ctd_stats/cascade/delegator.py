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

import bisect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._serialize import JSONSerializable
from .._streaming import Step
from .._validation import BoolArray, FloatArray, as_float_array, check_choice
from ._repr import fmt
from .calibration import ThresholdCalibration
from .metrics import MERGES, Merge
from .signals import _uncertainty
from .streaming import BudgetMonitor, BudgetMonitorState

__all__ = ["DelegationSession", "DelegationTrace", "Delegator", "DelegatorState"]


@dataclass(frozen=True)
class DelegatorState(JSONSerializable):
    """A delegator after ``t`` inputs: the budget monitor's state (``None`` without one)."""

    t: int
    monitor: BudgetMonitorState | None

    _json_guarantee = (
        "State of a streaming CTD delegator and its anytime-valid budget monitor: restoring it "
        "and continuing gives exactly the decisions and e-values of an uninterrupted run."
    )

    @property
    def alarm_step(self) -> int | None:
        return None if self.monitor is None else self.monitor.alarm_step

    @property
    def needs_recalibration(self) -> bool:
        """True once the budget monitor has alarmed."""
        return self.alarm_step is not None

    def __repr__(self) -> str:
        return f"DelegatorState(t={self.t}, monitor={self.monitor!r})"


@dataclass(frozen=True)
class DelegationTrace:
    """A stretch of stream decided at once by :meth:`Delegator.decide_stream`.

    ``delegated`` the decisions; ``log_e_values`` the monitor's log K_t per input (``None``
    without a monitor); ``alarm_step`` the 0-based step (from the delegator's start) of the
    monitor's first alarm, or ``None``; ``state`` the state after the stretch.
    """

    delegated: BoolArray
    log_e_values: FloatArray | None
    alarm_step: int | None
    state: DelegatorState

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    def __repr__(self) -> str:
        alarm = "no alarm" if self.alarm_step is None else f"ALARM at step {self.alarm_step}"
        return (
            f"DelegationTrace({alarm}; {int(self.delegated.sum())} of {self.delegated.size} "
            f"delegated, monitor={'off' if self.log_e_values is None else 'on'})"
        )


def _check_score(score: object) -> float:
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

    ``monitor``: ``True`` (default) attaches a :class:`BudgetMonitor` at the calibration's
    budget with ``level`` and ``strategy``; ``False`` none; or pass a configured monitor. A
    budget of 1 cannot be exceeded, so it gets no monitor. Immutable.
    """

    __slots__ = ("_ref", "calibration", "monitor")

    calibration: ThresholdCalibration
    monitor: BudgetMonitor | None
    _ref: list[float] | None

    def __init__(
        self,
        calibration: ThresholdCalibration,
        *,
        monitor: bool | BudgetMonitor = True,
        level: float = 0.05,
        strategy: str = "ons",
    ) -> None:
        if not isinstance(calibration, ThresholdCalibration):
            raise TypeError(
                f"calibration: expected a ThresholdCalibration, got {type(calibration).__name__}"
            )
        mon: BudgetMonitor | None
        if isinstance(monitor, BudgetMonitor):
            mon = monitor
        elif isinstance(monitor, (bool, np.bool_)):
            # α = 1: every rate is within budget, so there is nothing to monitor.
            use = bool(monitor) and calibration.alpha < 1.0
            mon = BudgetMonitor(calibration.alpha, level=level, strategy=strategy) if use else None
        else:
            raise TypeError(f"monitor: expected a bool or a BudgetMonitor, got {monitor!r}")
        object.__setattr__(self, "calibration", calibration)
        object.__setattr__(self, "monitor", mon)
        ref = calibration.reference
        object.__setattr__(self, "_ref", None if ref is None else ref.tolist())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Delegator is immutable")

    def __repr__(self) -> str:
        c = self.calibration
        state = "found" if c.found else "NOT FOUND (never delegates)"
        m = self.monitor
        watch = "no monitor" if m is None else f"monitor {m.strategy} at level {fmt(m.level)}"
        return (
            f"Delegator({c.method} {state}, threshold={fmt(c.threshold)}, alpha={fmt(c.alpha)}, "
            f"{watch})"
        )

    @property
    def threshold(self) -> float:
        return self.calibration.threshold

    # ------------------------------------------------------------------ protocol
    def init(self) -> DelegatorState:
        """The state before any input."""
        return DelegatorState(t=0, monitor=None if self.monitor is None else self.monitor.init())

    def _signal(self, value: float) -> float:
        """The delegation signal of one validated raw score (same arithmetic as the arrays)."""
        if self._ref is None:
            return value
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"score: a probe score must lie in [0, 1], got {value!r}")
        # searchsorted(side="left") is bisect_left; i / n and −|· − 0.5| are exact IEEE ops.
        return -abs(bisect.bisect_left(self._ref, value) / len(self._ref) - 0.5)

    def update(self, state: DelegatorState, score: float, /) -> tuple[DelegatorState, Step]:
        """Decide for one input from its raw score; pure. ``step.delegated`` is the decision."""
        if not isinstance(state, DelegatorState):
            raise TypeError(f"state: expected a DelegatorState, got {type(state).__name__}")
        value = _check_score(score)
        delegated = self._signal(value) > self.calibration.threshold
        if self.monitor is None or state.monitor is None:
            step = Step(
                t=state.t,
                x=value,
                statistic=0.0,
                alarm=False,
                new_alarm=False,
                alarm_step=None,
                delegated=delegated,
            )
            return DelegatorState(t=state.t + 1, monitor=state.monitor), step
        mstate, ms = self.monitor._update(state.monitor, float(delegated))
        step = Step(
            t=state.t,
            x=value,
            statistic=ms.statistic,
            alarm=ms.alarm,
            new_alarm=ms.new_alarm,
            alarm_step=ms.alarm_step,
            delegated=delegated,
        )
        return DelegatorState(t=state.t + 1, monitor=mstate), step

    def decide_stream(
        self, scores: ArrayLike, *, state: DelegatorState | None = None
    ) -> DelegationTrace:
        """Decisions for a stretch of inputs, each made on its own score alone.

        Identical to calling :meth:`update` on each element in order (tested), but vectorised:
        the threshold comparison on the whole array, then the monitor's bets in one tight loop.
        """
        if state is None:
            state = self.init()
        elif not isinstance(state, DelegatorState):
            raise TypeError(f"state: expected a DelegatorState, got {type(state).__name__}")
        c = self.calibration
        if c.signal == "uncertainty":
            p = as_float_array(scores, "scores", ndim=1, low=0.0, high=1.0)
            assert c.reference is not None
            d = c._delegate(_uncertainty(p, c.reference))
        else:
            d = c._delegate(as_float_array(scores, "scores", ndim=1))
        if self.monitor is None or state.monitor is None:
            new = DelegatorState(t=state.t + int(d.size), monitor=state.monitor)
            return DelegationTrace(delegated=d, log_e_values=None, alarm_step=None, state=new)
        mstate, log_e = self.monitor._run(state.monitor, d.astype(np.float64))
        new = DelegatorState(t=state.t + int(d.size), monitor=mstate)
        return DelegationTrace(
            delegated=d, log_e_values=log_e, alarm_step=mstate.alarm_step, state=new
        )

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
        return f"DelegationSession({self.delegator!r}, state={self.state!r})"

    @property
    def needs_recalibration(self) -> bool:
        return self.state.needs_recalibration

    def decide(self, score: float) -> Step:
        """Decide for one input and advance the state."""
        self.state, step = self.delegator.update(self.state, score)
        return step

    def decide_stream(self, scores: ArrayLike) -> DelegationTrace:
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
