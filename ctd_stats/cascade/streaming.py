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

import numpy as np
from numpy.typing import ArrayLike

from .._streaming import NO_ALARM, Step, Trace, check_state
from .._validation import as_binary_array, as_float_array, check_level, plain
from ..online.betting import BettingMonitor, BettingState, betting_eprocess
from ..typing import FloatArray, IntArray
from .signals import check_budget

__all__ = ["BudgetMonitor", "budget_log_eprocess", "first_alarm_times"]


def _check_alpha(alpha: float) -> float:
    alpha = check_budget(alpha)
    if alpha >= 1.0:
        raise ValueError("alpha: a budget of 1 can never be exceeded; nothing to monitor")
    return alpha


def budget_log_eprocess(
    delegated: ArrayLike,
    *,
    alpha: float,
    strategy: str = "ons",
    max_bet_fraction: float = 0.5,
    fixed_fraction: float = 0.5,
) -> FloatArray:
    """log K_t of the budget e-process along the last axis of ``delegated`` ((T,) or (N, T)).

    Under H0 (conditional delegation rate ≤ α at every step) P(∃ t: K_t ≥ 1/a) ≤ a for every
    a ∈ (0, 1). :func:`ctd_stats.online.betting.betting_eprocess` on 0/1 indicators
    (vectorised over many streams).
    """
    alpha = _check_alpha(alpha)
    d = as_binary_array(delegated, "delegated", ndim=(1, 2)).astype(np.float64)
    path = betting_eprocess(
        d,
        alpha=alpha,
        strategy=strategy,
        max_bet_fraction=max_bet_fraction,
        fixed_fraction=fixed_fraction,
    )
    return np.asarray(path.log_wealth, dtype=np.float64)


def first_alarm_times(log_e_values: ArrayLike, *, level: float) -> IntArray:
    """First 0-based step with K_t ≥ 1/level along the last axis (``NO_ALARM = -1``: never)."""
    level = check_level(level, "level")
    log_e = as_float_array(log_e_values, "log_e_values", ndim=(1, 2), finite=False)
    hit = log_e >= -math.log(level)
    return np.where(hit.any(axis=-1), np.argmax(hit, axis=-1), NO_ALARM).astype(np.int64)


class BudgetMonitor(BettingMonitor):
    """Anytime-valid alarm for "the delegation rate exceeds α": the betting monitor on 0/1 input.

    A named configuration of :class:`~ctd_stats.online.betting.BettingMonitor` (same state,
    :class:`~ctd_stats.online.betting.BettingState`, whose ``n_positive`` counts the
    delegations and ``rate`` is the running delegation rate), that only accepts delegation
    indicators and a budget α < 1 (a budget of 1 can never be exceeded).

    Guarantee: if at every step the conditional probability of delegating is ≤ ``alpha``, the
    monitor ever alarms with probability ≤ ``level``, however long it runs (Ville).

    Parameters
    ----------
    alpha
        The budget, in (0, 1).
    level
        Type-I error of the alarm (alarm iff K_t ≥ 1/level); keyword-only, default 0.05.
    strategy, max_bet_fraction, fixed_fraction
        Betting strategy, as for :class:`~ctd_stats.online.betting.BettingMonitor`.

    Examples
    --------
    >>> mon = BudgetMonitor(0.2)
    >>> trace = mon.run([1, 0, 0, 1])
    >>> trace.alarm_step is None, trace.state.n_positive
    (True, 2)
    """

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        super().__post_init__()

    def update(self, state: BettingState, delegated: float, /) -> tuple[BettingState, Step]:
        """Record one delegation indicator D_t ∈ {0, 1} (a bool, or a number exactly 0 or 1)."""
        check_state(state, BettingState)
        if isinstance(delegated, (bool, np.bool_, int, np.integer, float, np.floating)) and (
            delegated == 0 or delegated == 1
        ):
            return super().update(state, float(delegated))
        raise ValueError(f"delegated: must be a bool or 0/1, got {plain(delegated)}")

    def run(
        self, delegated: ArrayLike, /, *, state: BettingState | None = None
    ) -> Trace[BettingState]:
        """Process a stretch of 0/1 indicators from ``state`` (default: a fresh monitor)."""
        d = as_binary_array(delegated, "delegated", ndim=1).astype(np.float64)
        return super().run(d, state=state)
