"""Streaming deployment of a calibrated delegation policy, with an anytime-valid budget monitor.

:class:`Delegator` applies a calibrated threshold (:class:`~ctd_stats.delegation.
ThresholdCalibration`) to ONE input at a time — no batch statistics — so it can run on a stream.

Beyond the paper: the calibration guarantee (P(true rate ≤ α) ≥ 1 − δ) holds only while the
deployment stream is exchangeable with the calibration data. :class:`BudgetMonitor` watches the
realised delegation indicators D_t ∈ {0, 1} and raises an alarm when the data show that the
delegation rate exceeds α — e.g. after a distribution shift — so the user knows to recalibrate.

The monitor is the package's betting e-process (:mod:`ctd_stats.betting`) for
H0: E[D_t | past] ≤ α for every t: the wealth K_t = Π_{s ≤ t} (1 + λ_s (D_s − α)) with
predictable bets λ_s ∈ [0, c/α] (c < 1) is a non-negative supermartingale under H0, so by Ville's
inequality P_H0(∃ t: K_t ≥ 1/level) ≤ level, at any stopping time and for streams of any length.
The default bet is the online Newton step (``strategy="ons"``); ``"agrapa"`` and ``"fixed"`` are
available. Everything is computed in log space.

Composition of guarantees: the monitor's null holds whenever calibration succeeded (probability
≥ 1 − δ) and the stream is exchangeable with the calibration data, so on such streams it alarms
with probability ≤ level + δ overall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_level,
)
from ..online.betting import BET_STRATEGIES, BettingMonitor, BettingState, betting_eprocess
from .delegation import ThresholdCalibration, check_budget
from .metrics import MERGES, Merge

__all__ = [
    "BudgetMonitor",
    "BudgetMonitorTrace",
    "Decision",
    "Delegator",
    "MonitorStep",
    "budget_log_eprocess",
    "first_alarm_times",
]


def _check_alpha(alpha: float) -> float:
    alpha = check_budget(alpha)
    if alpha >= 1.0:
        raise ValueError("alpha: a budget of 1 can never be exceeded; nothing to monitor")
    return alpha


def budget_log_eprocess(
    delegated: ArrayLike,
    alpha: float,
    *,
    strategy: str = "ons",
    max_bet_fraction: float = 0.5,
    fixed_fraction: float = 0.5,
) -> FloatArray:
    """log K_t of the budget e-process along the last axis of ``delegated`` ((T,) or (N, T)).

    Under H0 (conditional delegation rate ≤ α at every step) P(∃ t: K_t ≥ 1/a) ≤ a for every
    a ∈ (0, 1). A thin wrapper of :func:`ctd_stats.betting.betting_eprocess` for 0/1 indicators.
    """
    alpha = _check_alpha(alpha)
    d = as_binary_array(delegated, "delegated", ndim=(1, 2)).astype(np.float64)
    path = betting_eprocess(
        d,
        alpha,
        strategy=strategy,
        max_bet_fraction=max_bet_fraction,
        fixed_fraction=fixed_fraction,
    )
    return path.log_wealth


def first_alarm_times(log_e_values: ArrayLike, level: float) -> IntArray:
    """First 1-based time with K_t ≥ 1/level along the last axis (0 = never alarmed)."""
    level = check_level(level, "level")
    log_e = as_float_array(log_e_values, "log_e_values", ndim=(1, 2), finite=False)
    hit = log_e >= -math.log(level)
    return np.where(hit.any(axis=-1), np.argmax(hit, axis=-1) + 1, 0).astype(np.int64)


@dataclass(frozen=True)
class MonitorStep:
    """The budget monitor after one update.

    ``e_value`` = K_t; ``alarm`` is True from the first t with K_t ≥ 1/level on (it latches);
    ``rate`` is the running delegation rate.
    """

    t: int
    e_value: float
    alarm: bool
    rate: float


@dataclass(frozen=True)
class BudgetMonitorTrace:
    """A stretch of stream processed at once.

    Attributes
    ----------
    log_e_values
        log K_t for the processed steps.
    alarm_time
        First t (1-based, counted from the monitor's start) with K_t ≥ 1/level, or ``None``.
    alpha, level
        Budget and error level: P_H0(alarm ever) ≤ level.
    """

    log_e_values: FloatArray
    alarm_time: int | None
    alpha: float
    level: float

    @property
    def alarmed(self) -> bool:
        return self.alarm_time is not None


class BudgetMonitor:
    """Anytime-valid alarm for "the delegation rate exceeds α" (betting e-process, Ville).

    Guarantee: if at every step the conditional probability of delegating is ≤ ``alpha``, the
    monitor ever alarms with probability ≤ ``level``, however long it runs.

    Parameters
    ----------
    alpha
        The budget, in (0, 1).
    level
        Error level of the alarm (alarm iff K_t ≥ 1/level).
    strategy, max_bet_fraction, fixed_fraction
        Betting strategy of :class:`ctd_stats.betting.BettingMonitor` (bets capped at
        ``max_bet_fraction``/α).
    """

    def __init__(
        self,
        alpha: float,
        *,
        level: float = 0.05,
        strategy: str = "ons",
        max_bet_fraction: float = 0.5,
        fixed_fraction: float = 0.5,
    ) -> None:
        self.alpha = _check_alpha(alpha)
        self.level = check_level(level, "level")
        if strategy not in BET_STRATEGIES:
            raise ValueError(f"strategy: must be one of {sorted(BET_STRATEGIES)}, got {strategy!r}")
        self._engine = BettingMonitor(
            epsilon=self.alpha,
            alpha=self.level,
            strategy=strategy,
            max_bet_fraction=max_bet_fraction,
            fixed_fraction=fixed_fraction,
        )
        self.reset()

    def reset(self) -> None:
        """Forget the stream (e.g. after recalibrating)."""
        self._state: BettingState = self._engine.init()
        self._n_delegated = 0

    @property
    def t(self) -> int:
        return self._state.t

    @property
    def log_e_value(self) -> float:
        return self._state.log_wealth

    @property
    def alarm_time(self) -> int | None:
        """First step (1-based) at which the alarm fired, or ``None``."""
        return None if not self._state.alarmed else self._state.alarm_time + 1

    @property
    def alarmed(self) -> bool:
        return self._state.alarmed

    def update(self, delegated: bool | int) -> MonitorStep:
        """Record one delegation indicator D_t ∈ {0, 1}."""
        if isinstance(delegated, (bool, np.bool_)):
            x = float(delegated)
        elif isinstance(delegated, (int, np.integer)) and int(delegated) in (0, 1):
            x = float(delegated)
        else:
            raise ValueError(f"delegated: must be a bool or 0/1, got {delegated!r}")
        self._state, _ = self._engine.update(self._state, x)
        self._n_delegated += int(x)
        return MonitorStep(
            t=self._state.t,
            e_value=math.exp(min(self._state.log_wealth, 700.0)),
            alarm=self.alarmed,
            rate=self._n_delegated / self._state.t,
        )

    def run(self, delegated: ArrayLike) -> BudgetMonitorTrace:
        """Process a stretch of stream from the current state (the state is updated)."""
        d = as_binary_array(delegated, "delegated", ndim=1)
        log_e = np.empty(d.size)
        for i, x in enumerate(d.tolist()):
            self._state, step = self._engine.update(self._state, float(x))
            log_e[i] = step.log_wealth
        self._n_delegated += int(d.sum())
        return BudgetMonitorTrace(
            log_e_values=log_e, alarm_time=self.alarm_time, alpha=self.alpha, level=self.level
        )


@dataclass(frozen=True)
class Decision:
    """One streaming decision.

    ``delegate``: call the expert; ``alarm``: the budget monitor has fired (recalibrate);
    ``e_value``: the monitor's current e-value (1.0 when no monitor is attached).
    """

    t: int
    delegate: bool
    alarm: bool
    e_value: float


class Delegator:
    """Decide, one input at a time, whether to call the expert, and watch the budget.

    Built from a calibrated policy: ``decide(score)`` returns "delegate iff signal(score) > τ"
    where ``score`` is a DV score (CTD, budget-only LTT) or a probe score (Unc. calibrated; it is
    turned into u = −|F̂(p) − 0.5| with the stored calibration reference). No batch statistic is
    used. If nothing was certified at calibration the delegator never delegates.

    With ``monitor=True`` (default) a :class:`BudgetMonitor` at the calibration's budget watches
    the decisions; its alarm means the stream no longer looks like the calibration data.
    """

    def __init__(
        self,
        calibration: ThresholdCalibration,
        *,
        monitor: bool = True,
        level: float = 0.05,
        strategy: str = "ons",
    ) -> None:
        if not isinstance(calibration, ThresholdCalibration):
            raise TypeError(
                f"calibration: expected a ThresholdCalibration, got {type(calibration).__name__}"
            )
        self.calibration = calibration
        self.monitor: BudgetMonitor | None = None
        if monitor and calibration.alpha < 1.0:
            self.monitor = BudgetMonitor(calibration.alpha, level=level, strategy=strategy)
        self._t = 0

    @property
    def threshold(self) -> float | None:
        return self.calibration.threshold

    @property
    def needs_recalibration(self) -> bool:
        """True once the budget monitor has alarmed."""
        return self.monitor is not None and self.monitor.alarmed

    def decide(self, score: float) -> Decision:
        """Decide for one input from its raw score (a finite number)."""
        if isinstance(score, (bool, np.bool_)) or not isinstance(
            score, (int, float, np.integer, np.floating)
        ):
            raise TypeError(f"score: expected one number, got {type(score).__name__}")
        value = float(score)
        if not math.isfinite(value):
            raise ValueError(f"score: must be finite, got {score!r}")
        if self.calibration.signal == "uncertainty" and not 0.0 <= value <= 1.0:
            raise ValueError(f"score: a probe score must lie in [0, 1], got {score!r}")
        delegate = bool(self.calibration.delegate(np.asarray(value))[()])
        self._t += 1
        if self.monitor is None:
            return Decision(t=self._t, delegate=delegate, alarm=False, e_value=1.0)
        step = self.monitor.update(delegate)
        return Decision(t=self._t, delegate=delegate, alarm=step.alarm, e_value=step.e_value)

    def output(
        self, probe: float, expert: float | None, decision: Decision, *, merge: Merge = "replace"
    ) -> float:
        """The cascade score for one input: the probe's, or the expert's (or the average)."""
        if merge not in MERGES:
            raise ValueError(f"merge: must be one of {sorted(MERGES)}, got {merge!r}")
        p = float(probe)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probe: must lie in [0, 1], got {probe!r}")
        if not decision.delegate:
            return p
        if expert is None:
            raise ValueError("expert: required for a delegated input")
        e = float(expert)
        if not 0.0 <= e <= 1.0:
            raise ValueError(f"expert: must lie in [0, 1], got {expert!r}")
        return e if merge == "replace" else 0.5 * (p + e)

    def decide_stream(self, scores: ArrayLike) -> tuple[BoolArray, BudgetMonitorTrace | None]:
        """Decisions for a stream of inputs, each made on its own score alone.

        Identical to calling :meth:`decide` on each element in order; returns the decisions and
        the monitor trace (``None`` without a monitor).
        """
        s = as_float_array(scores, "scores", ndim=1)
        if self.calibration.signal == "uncertainty":
            s = as_float_array(s, "scores", ndim=1, low=0.0, high=1.0)
        d = self.calibration.delegate(s)
        self._t += int(s.size)
        trace = None if self.monitor is None else self.monitor.run(d)
        return d, trace
