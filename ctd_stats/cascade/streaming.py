"""Anytime-valid monitor of the deployed delegation rate (beyond the CTD paper).

The calibration guarantee P(true rate ≤ α) ≥ 1 − δ (CTD paper §4.2, problem (5)) holds only
while the deployment stream is exchangeable with the calibration data. :class:`BudgetMonitor`
watches the realised delegation indicators D_t ∈ {0, 1} and alarms when the data show that the
delegation rate exceeds α — e.g. after a distribution shift — so the user knows to recalibrate.

It is the package's betting e-process (:mod:`ctd_stats.online.betting`; Waudby-Smith & Ramdas
2024, as used for risk monitoring in the monitoring paper) for H0: E[D_t | past] ≤ α at every t:
the wealth K_t = Π_{s ≤ t} (1 + λ_s (D_s − α)) with predictable bets λ_s ∈ [0, c/α] (c < 1) is a
non-negative supermartingale under H0, so by Ville's inequality P_H0(∃ t: K_t ≥ 1/level) ≤ level,
at any stopping time and for streams of any length. The default bet is the online Newton step
(``strategy="ons"``); ``"agrapa"`` and ``"fixed"`` are available. Everything is in log space.

Composition: the monitor's null holds whenever calibration succeeded (probability ≥ 1 − δ) and
the stream is exchangeable with the calibration data, so on such streams it alarms with
probability ≤ level + δ overall.

Streaming protocol (:mod:`ctd_stats._streaming`): ``state = monitor.init()``,
``state, step = monitor.update(state, d)``; the state serialises exactly (``to_json``). Alarm
times are 0-based step indices (``NO_ALARM = -1`` in arrays, ``None`` in scalars).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from .._serialize import JSONSerializable
from .._streaming import NO_ALARM, Step
from .._validation import (
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_level,
)
from ..online._bet import bet_path, first_bet, log_wealth_path
from ..online.betting import BET_STRATEGIES, betting_eprocess
from ._repr import fmt, summarise
from .signals import check_budget

__all__ = [
    "BudgetMonitor",
    "BudgetMonitorState",
    "BudgetMonitorTrace",
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
    a ∈ (0, 1). A thin wrapper of :func:`ctd_stats.online.betting.betting_eprocess` for 0/1
    indicators (vectorised over many streams).
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
    return np.asarray(path.log_wealth, dtype=np.float64)


def first_alarm_times(log_e_values: ArrayLike, level: float) -> IntArray:
    """First 0-based step with K_t ≥ 1/level along the last axis (``NO_ALARM = -1``: never)."""
    level = check_level(level, "level")
    log_e = as_float_array(log_e_values, "log_e_values", ndim=(1, 2), finite=False)
    hit = log_e >= -math.log(level)
    return np.where(hit.any(axis=-1), np.argmax(hit, axis=-1), NO_ALARM).astype(np.int64)


@dataclass(frozen=True)
class BudgetMonitorState(JSONSerializable):
    """The budget monitor after ``t`` indicators (everything the next bet needs).

    ``log_wealth`` = log K_t; ``alarm_step`` the 0-based step of the first alarm (``None``
    while there is none; alarms latch); ``n_delegated`` the number of delegations so far.
    """

    t: int
    log_wealth: float
    next_bet: float
    sum_x: float
    sum_sq_dev: float
    ons_a: float
    n_delegated: int
    alarm_step: int | None

    _json_guarantee = (
        "State of an anytime-valid budget monitor (betting e-process, Ville's inequality): "
        "restoring it and continuing gives exactly the e-values of an uninterrupted run."
    )

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    @property
    def rate(self) -> float:
        """Running delegation rate (NaN before the first input)."""
        return self.n_delegated / self.t if self.t else math.nan

    def __repr__(self) -> str:
        alarm = "no alarm" if self.alarm_step is None else f"ALARM at step {self.alarm_step}"
        return (
            f"BudgetMonitorState({alarm}; t={self.t}, log_wealth={fmt(self.log_wealth)}, "
            f"n_delegated={self.n_delegated})"
        )


@dataclass(frozen=True)
class BudgetMonitorTrace:
    """A stretch of stream processed at once by :meth:`BudgetMonitor.run`.

    Attributes
    ----------
    log_e_values
        log K_t for the processed steps.
    alarm_step
        0-based step (counted from the monitor's start) of the first alarm, or ``None``.
    alpha, level
        Budget and error level: P_H0(alarm ever) ≤ level.
    state
        The monitor state after the stretch (pass it on to continue).
    """

    log_e_values: FloatArray
    alarm_step: int | None
    alpha: float
    level: float
    state: BudgetMonitorState

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    def __repr__(self) -> str:
        alarm = "no alarm" if self.alarm_step is None else f"ALARM at step {self.alarm_step}"
        return (
            f"BudgetMonitorTrace({alarm}; {self.log_e_values.size} steps, alpha={fmt(self.alpha)},"
            f" level={fmt(self.level)})\n  {summarise('log_e_values', self.log_e_values)}"
        )


@dataclass(frozen=True)
class BudgetMonitor:
    """Anytime-valid alarm for "the delegation rate exceeds α" (betting e-process, Ville).

    Guarantee: if at every step the conditional probability of delegating is ≤ ``alpha``, the
    monitor ever alarms with probability ≤ ``level``, however long it runs.

    Parameters
    ----------
    alpha
        The budget, in (0, 1).
    level
        Type-I error of the alarm (alarm iff K_t ≥ 1/level).
    strategy, max_bet_fraction, fixed_fraction
        Betting strategy of :class:`ctd_stats.online.betting.BettingMonitor` (bets capped at
        ``max_bet_fraction``/α).
    """

    alpha: float
    level: float = field(default=0.05, kw_only=True)
    strategy: str = field(default="ons", kw_only=True)
    max_bet_fraction: float = field(default=0.5, kw_only=True)
    fixed_fraction: float = field(default=0.5, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _check_alpha(self.alpha))
        object.__setattr__(self, "level", check_level(self.level, "level"))
        check_choice(self.strategy, "strategy", BET_STRATEGIES)
        object.__setattr__(
            self, "max_bet_fraction", check_level(self.max_bet_fraction, "max_bet_fraction")
        )
        object.__setattr__(
            self,
            "fixed_fraction",
            check_level(self.fixed_fraction, "fixed_fraction", closed_right=True),
        )

    @property
    def max_bet(self) -> float:
        return self.max_bet_fraction / self.alpha

    @property
    def log_threshold(self) -> float:
        return -math.log(self.level)

    def __repr__(self) -> str:
        return (
            f"BudgetMonitor(alpha={fmt(self.alpha)}, level={fmt(self.level)}, "
            f"strategy={self.strategy!r}, max_bet_fraction={self.max_bet_fraction})"
        )

    # ------------------------------------------------------------------ protocol
    def init(self) -> BudgetMonitorState:
        """The state before any input (K_0 = 1)."""
        return BudgetMonitorState(
            t=0,
            log_wealth=0.0,
            next_bet=first_bet(self.strategy, self.max_bet, self.fixed_fraction),
            sum_x=0.0,
            sum_sq_dev=0.0,
            ons_a=1.0,
            n_delegated=0,
            alarm_step=None,
        )

    def update(
        self, state: BudgetMonitorState, delegated: bool | int, /
    ) -> tuple[BudgetMonitorState, Step]:
        """Record one delegation indicator D_t ∈ {0, 1}; pure (the old state is unchanged)."""
        if not isinstance(state, BudgetMonitorState):
            raise TypeError(f"state: expected a BudgetMonitorState, got {type(state).__name__}")
        if isinstance(delegated, (bool, np.bool_)) or (
            isinstance(delegated, (int, np.integer)) and int(delegated) in (0, 1)
        ):
            return self._update(state, float(delegated))
        raise ValueError(f"delegated: must be a bool or 0/1, got {delegated!r}")

    def _update(self, state: BudgetMonitorState, x: float) -> tuple[BudgetMonitorState, Step]:
        new, log_e = self._run(state, np.array([x]))
        alarm_step = new.alarm_step
        step = Step(
            t=state.t,
            x=x,
            statistic=float(log_e[0]),
            alarm=alarm_step is not None,
            new_alarm=alarm_step is not None and state.alarm_step is None,
            alarm_step=alarm_step,
        )
        return new, step

    def run(
        self, delegated: ArrayLike, *, state: BudgetMonitorState | None = None
    ) -> BudgetMonitorTrace:
        """Process a stretch of indicators from ``state`` (default: a fresh monitor)."""
        d = as_binary_array(delegated, "delegated", ndim=1).astype(np.float64)
        if state is None:
            state = self.init()
        elif not isinstance(state, BudgetMonitorState):
            raise TypeError(f"state: expected a BudgetMonitorState, got {type(state).__name__}")
        new, log_e = self._run(state, d)
        return BudgetMonitorTrace(
            log_e_values=log_e,
            alarm_step=new.alarm_step,
            alpha=self.alpha,
            level=self.level,
            state=new,
        )

    def _run(
        self, state: BudgetMonitorState, x: FloatArray
    ) -> tuple[BudgetMonitorState, FloatArray]:
        """Kernel: the bets in a tight scalar loop, the wealth vectorised (see ``_bet``)."""
        bstate = (state.t, state.next_bet, state.sum_x, state.sum_sq_dev, state.ons_a)
        (t, bet, sum_x, sum_sq, ons_a), bets = bet_path(
            bstate, x.tolist(), self.alpha, self.max_bet, self.fixed_fraction, self.strategy
        )
        log_e = log_wealth_path(state.log_wealth, bets, x, self.alpha)
        alarm_step = state.alarm_step
        if alarm_step is None and log_e.size:
            hits = np.flatnonzero(log_e >= self.log_threshold)
            if hits.size:
                alarm_step = state.t + int(hits[0])
        new = BudgetMonitorState(
            t=t,
            log_wealth=float(log_e[-1]) if log_e.size else state.log_wealth,
            next_bet=bet,
            sum_x=sum_x,
            sum_sq_dev=sum_sq,
            ons_a=ons_a,
            n_delegated=state.n_delegated + int(np.count_nonzero(x)),
            alarm_step=alarm_step,
        )
        return new, log_e
