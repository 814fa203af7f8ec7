"""Anytime-valid betting e-process for the mean of a stream of indicators in [0, 1].

Watches a stream x_0, x_1, ... ∈ [0, 1] — e.g. x_t = 1 if the t-th deployed trajectory that turned
out CORRECT had raised an alarm (the monitor's realised false-alarm rate), or a delegation
indicator for a budget — and tests

    H0: E[x_t | x_0..x_{t−1}] ≤ α for every t          (α = ``alpha``, the null rate)

by betting (Waudby-Smith & Ramdas 2024; Timans et al. 2025 for risk monitoring; the monitoring
paper's ε is ``alpha`` here). The wealth

    K_t = Π_{i≤t} (1 + λ_i (x_i − α)),  λ_i ∈ [0, c/α] chosen from x_0..x_{i−1} only (predictable)

is a nonnegative supermartingale under H0 with K_0 = 1, so by Ville's inequality
P_H0(∃t: K_t ≥ 1/level) ≤ level: the monitor alarms (absorbing) at the first t with
K_t ≥ 1/level, with the false-alarm guarantee holding at all times simultaneously (anytime
valid, any stopping rule). The cap c < 1 (``max_bet_fraction``, default 0.5) keeps every factor
≥ 1 − c > 0.

Bet strategies: ``"ons"`` (online Newton step on the log wealth, the default), ``"agrapa"``
(approximate growth-rate-adaptive plug-in, from running mean/variance), ``"fixed"``
(λ = ``max_bet_fraction``/α·``fixed_fraction``). All are predictable. Everything is in log space.

Streaming (pure ``init``/``update`` on a frozen, JSON-checkpointable state, reporting the shared
:class:`~ctd_stats._streaming.Step`) and vectorised (:func:`betting_eprocess` over many streams
at once) use the same arithmetic, so they agree exactly. Alarm steps are 0-based.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._serialize import JSONSerializable, exact_eq
from .._streaming import NO_ALARM, Step, Trace, check_state
from .._validation import as_float_array, check_choice, check_level, plain
from ..typing import FloatArray, IntArray
from ._bet import bet_path, first_bet, log_wealth_path
from .monitors import latched_step

__all__ = [
    "BET_STRATEGIES",
    "BettingMonitor",
    "BettingPath",
    "BettingState",
    "betting_eprocess",
]

BET_STRATEGIES: Final[tuple[str, ...]] = ("ons", "agrapa", "fixed")


@exact_eq
@dataclass(frozen=True)
class BettingState(JSONSerializable, kind="ctd_stats.BettingState"):
    """Frozen state after ``t`` observations (all quantities predictable for step t).

    ``log_wealth`` = log K_t; ``next_bet`` the bet λ that will be used on the next observation;
    ``sum_x`` / ``sum_sq_dev`` / ``ons_a`` what the bet strategies need; ``n_positive`` the
    number of observations > 0 (for 0/1 indicators: the delegations so far); ``alarm_step``
    the 0-based index of the first alarm (``None`` while there is none; alarms latch).
    """

    t: int
    log_wealth: float
    next_bet: float
    sum_x: float
    sum_sq_dev: float
    ons_a: float
    n_positive: int
    alarm_step: int | None

    _json_guarantee = (
        "State of an anytime-valid betting e-process (Ville's inequality: P_H0(ever alarm) "
        "≤ level): restoring it and continuing gives exactly the e-values of an uninterrupted run."
    )

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    @property
    def rate(self) -> float:
        """Running mean of the observations (the delegation rate for 0/1 indicators; NaN at t=0)."""
        return self.sum_x / self.t if self.t else math.nan

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"t={self.t}, alarm_step={self.alarm_step}",
            ["log_wealth", "next_bet", "n_positive"],
        )


@dataclass(frozen=True)
class BettingPath:
    """Vectorised result: arrays of shape (..., T); ``alarm_step`` (...,), ``NO_ALARM`` = never.

    Guarantee: under H0 (conditional means ≤ ``alpha``) P(alarm_step ≠ NO_ALARM) ≤ ``level``,
    for every horizon (Ville's inequality).
    """

    log_wealth: FloatArray
    bets: FloatArray
    alarm_step: IntArray
    log_threshold: float
    alpha: float
    level: float
    strategy: str

    def __repr__(self) -> str:
        alarms = np.atleast_1d(self.alarm_step)
        return result_repr(
            self,
            f"alpha={self.alpha:.4g}, level={self.level:.4g}, strategy={self.strategy!r}",
            [
                ("alarmed", f"{int(np.sum(alarms != NO_ALARM))} of {alarms.size} streams"),
                "log_wealth",
                "alarm_step",
                "log_threshold",
            ],
        )


@dataclass(frozen=True)
class BettingMonitor:
    """Streaming anytime-valid monitor of H0: mean ≤ ``alpha``; alarm when K_t ≥ 1/``level``.

    Guarantee (Ville's inequality): if every conditional mean is ≤ ``alpha``, the monitor ever
    alarms with probability ≤ ``level``, however long it runs. ``update`` is pure: the state is
    a frozen :class:`BettingState` that can be checkpointed with ``to_json``. A
    :class:`~ctd_stats._streaming.StreamingMonitor`.

    Parameters
    ----------
    alpha
        The null mean (the rate that must not be exceeded), in (0, 1).
    level
        Type-I error of the alarm (alarm iff K_t ≥ 1/level); keyword-only.
    strategy
        ``"ons"`` (default), ``"agrapa"`` or ``"fixed"``.
    max_bet_fraction, fixed_fraction
        Bets are capped at ``max_bet_fraction``/α (< 1/α keeps the wealth positive); the fixed
        strategy bets ``fixed_fraction`` of the cap.

    Examples
    --------
    >>> mon = BettingMonitor(0.1, level=0.05)
    >>> state, step = mon.update(mon.init(), 1.0)
    >>> step.alarm, state.t
    (False, 1)
    """

    alpha: float
    level: float = field(default=0.05, kw_only=True)
    strategy: str = field(default="ons", kw_only=True)
    max_bet_fraction: float = field(default=0.5, kw_only=True)
    fixed_fraction: float = field(default=0.5, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", check_level(self.alpha, "alpha"))
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
        return result_repr(
            self,
            f"alpha={self.alpha:.4g}, level={self.level:.4g}",
            ["strategy", "max_bet_fraction"],
        )

    def init(self) -> BettingState:
        """The state before any observation (K_0 = 1)."""
        return BettingState(
            t=0,
            log_wealth=0.0,
            next_bet=first_bet(self.strategy, self.max_bet, self.fixed_fraction),
            sum_x=0.0,
            sum_sq_dev=0.0,
            ons_a=1.0,
            n_positive=0,
            alarm_step=None,
        )

    def update(self, state: BettingState, x: float, /) -> tuple[BettingState, Step]:
        """Observe x ∈ [0, 1]; returns the new state and the step (statistic = log K_t).

        The bet used on this observation is ``state.next_bet`` (chosen before seeing x).
        """
        check_state(state, BettingState)
        xv = float(x)
        if math.isnan(xv) or not 0.0 <= xv <= 1.0:
            raise ValueError(f"x: must lie in [0, 1], got {plain(x)}")
        bets_state = (state.t, state.next_bet, state.sum_x, state.sum_sq_dev, state.ons_a)
        (_, next_bet, sum_x, sum_sq, ons_a), _ = bet_path(
            bets_state, (xv,), self.alpha, self.max_bet, self.fixed_fraction, self.strategy
        )
        # numpy's log1p, as in the vectorised path (math.log1p differs in the last bit).
        log_w = state.log_wealth + float(np.log1p(state.next_bet * (xv - self.alpha)))
        step = latched_step(state.t, xv, log_w, log_w >= self.log_threshold, state.alarm_step)
        new_state = BettingState(
            t=state.t + 1,
            log_wealth=log_w,
            next_bet=next_bet,
            sum_x=sum_x,
            sum_sq_dev=sum_sq,
            ons_a=ons_a,
            n_positive=state.n_positive + (xv > 0.0),
            alarm_step=step.alarm_step,
        )
        return new_state, step

    def run(self, x: ArrayLike, /, *, state: BettingState | None = None) -> Trace[BettingState]:
        """Process a stretch of observations from ``state`` (default: a fresh monitor).

        Identical to calling :meth:`update` on each element in order, but the bets run in one
        tight scalar loop and the wealth is vectorised.
        """
        xs = as_float_array(x, "x", ndim=1, low=0.0, high=1.0)
        state = self.init() if state is None else check_state(state, BettingState)
        bstate = (state.t, state.next_bet, state.sum_x, state.sum_sq_dev, state.ons_a)
        (t, bet, sum_x, sum_sq, ons_a), bets = bet_path(
            bstate, xs.tolist(), self.alpha, self.max_bet, self.fixed_fraction, self.strategy
        )
        log_e = log_wealth_path(state.log_wealth, bets, xs, self.alpha)
        alarm_step = state.alarm_step
        if alarm_step is None:
            hits = np.flatnonzero(log_e >= self.log_threshold)
            if hits.size:
                alarm_step = state.t + int(hits[0])
        new = BettingState(
            t=t,
            log_wealth=float(log_e[-1]) if log_e.size else state.log_wealth,
            next_bet=bet,
            sum_x=sum_x,
            sum_sq_dev=sum_sq,
            ons_a=ons_a,
            n_positive=state.n_positive + int(np.count_nonzero(xs)),
            alarm_step=alarm_step,
        )
        return Trace(x=xs, statistic=log_e, alarm_step=alarm_step, state=new, start=state.t)


def betting_eprocess(
    x: ArrayLike,
    *,
    alpha: float,
    level: float = 0.05,
    strategy: str = "ons",
    max_bet_fraction: float = 0.5,
    fixed_fraction: float = 0.5,
) -> BettingPath:
    """Run the betting e-process for H0: mean ≤ ``alpha`` over one stream (T,) or many (n, T).

    Alarm at the first 0-based step with K_t ≥ 1/``level`` (Ville: P_H0(alarm) ≤ level).
    Raises ``ValueError`` for values outside [0, 1], NaN, or levels outside (0, 1).
    """
    mon = BettingMonitor(
        alpha,
        level=level,
        strategy=strategy,
        max_bet_fraction=max_bet_fraction,
        fixed_fraction=fixed_fraction,
    )
    data = as_float_array(x, "x", ndim=(1, 2), low=0.0, high=1.0)
    single = data.ndim == 1
    data = data.reshape(1, -1) if single else data
    n, horizon = data.shape
    start = (0, first_bet(strategy, mon.max_bet, mon.fixed_fraction), 0.0, 0.0, 1.0)
    log_path = np.empty((n, horizon))
    bets = np.empty((n, horizon))
    for r in range(n):  # the one scalar kernel, stream by stream (bets are sequential in t)
        _, row_bets = bet_path(
            start, data[r].tolist(), mon.alpha, mon.max_bet, mon.fixed_fraction, mon.strategy
        )
        bets[r] = row_bets
        log_path[r] = log_wealth_path(0.0, row_bets, data[r], mon.alpha)
    crossed = log_path >= mon.log_threshold
    alarm = np.where(crossed.any(axis=1), np.argmax(crossed, axis=1), NO_ALARM).astype(np.int64)
    return BettingPath(
        log_wealth=log_path[0] if single else log_path,
        bets=bets[0] if single else bets,
        alarm_step=alarm[0].reshape(()) if single else alarm,
        log_threshold=mon.log_threshold,
        alpha=mon.alpha,
        level=mon.level,
        strategy=strategy,
    )
