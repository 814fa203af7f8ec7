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
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._serialize import JSONSerializable
from .._streaming import NO_ALARM, Step
from .._validation import FloatArray, IntArray, as_float_array, check_choice, check_level
from ._bet import bet_path, log_wealth_path

__all__ = [
    "BET_STRATEGIES",
    "BettingMonitor",
    "BettingPath",
    "BettingState",
    "betting_eprocess",
]

BET_STRATEGIES: Final[tuple[str, ...]] = ("ons", "agrapa", "fixed")


@dataclass(frozen=True)
class BettingState(JSONSerializable):
    """Frozen state after ``t`` observations (all quantities predictable for step t).

    ``next_bet`` is the bet λ that will be used on the next observation; ``alarm_step`` the
    0-based index of the first alarm (``None`` while there is none).
    """

    t: int
    log_wealth: float
    next_bet: float
    sum_x: float
    sum_sq_dev: float
    ons_a: float
    alarm_step: int | None

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    def _json_meta(self) -> dict[str, Any]:
        return {
            "guarantee": "checkpoint of a betting e-process (Ville: P_H0(ever alarm) ≤ level)",
            "n": self.t,
            "calibration_sha256": None,
            "settings": {},
        }

    def __repr__(self) -> str:
        return result_repr(
            "BettingState",
            f"t={self.t}, alarmed={self.alarmed}",
            [
                ("log_wealth", self.log_wealth),
                ("next_bet", self.next_bet),
                ("alarm_step", self.alarm_step),
            ],
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
            "BettingPath",
            f"alpha={self.alpha:.4g}, level={self.level:.4g}, strategy={self.strategy!r}",
            [
                ("alarmed", f"{int(np.sum(alarms != NO_ALARM))} of {alarms.size} streams"),
                ("log_wealth", self.log_wealth),
                ("alarm_step", self.alarm_step),
                ("log_threshold", self.log_threshold),
            ],
        )


@dataclass(frozen=True)
class BettingMonitor:
    """Streaming anytime-valid monitor of H0: mean ≤ ``alpha``; alarm when K_t ≥ 1/``level``.

    Guarantee (Ville's inequality): if every conditional mean is ≤ ``alpha``, the monitor ever
    alarms with probability ≤ ``level``, however long it runs. ``update`` is pure: the state is
    a frozen :class:`BettingState` that can be checkpointed with ``to_json``.
    """

    alpha: float
    level: float
    strategy: str = "ons"
    max_bet_fraction: float = 0.5
    fixed_fraction: float = 0.5

    def __post_init__(self) -> None:
        check_level(self.alpha, "alpha")
        check_level(self.level, "level")
        check_choice(self.strategy, "strategy", BET_STRATEGIES)
        check_level(self.max_bet_fraction, "max_bet_fraction")
        check_level(self.fixed_fraction, "fixed_fraction", closed_right=True)

    @property
    def max_bet(self) -> float:
        return self.max_bet_fraction / self.alpha

    @property
    def log_threshold(self) -> float:
        return -math.log(self.level)

    def init(self) -> BettingState:
        first = self.fixed_fraction * self.max_bet if self.strategy == "fixed" else 0.0
        return BettingState(
            t=0,
            log_wealth=0.0,
            next_bet=first,
            sum_x=0.0,
            sum_sq_dev=0.0,
            ons_a=1.0,
            alarm_step=None,
        )

    def update(self, state: BettingState, x: float) -> tuple[BettingState, Step]:
        """Observe x ∈ [0, 1]; returns the new state and the step (statistic = log K_t).

        The bet used on this observation is ``state.next_bet`` (chosen before seeing x).
        """
        xv = float(x)
        if math.isnan(xv) or not 0.0 <= xv <= 1.0:
            raise ValueError(f"x: must lie in [0, 1], got {x!r}")
        bets_state = (state.t, state.next_bet, state.sum_x, state.sum_sq_dev, state.ons_a)
        (_, next_bet, sum_x, sum_sq, ons_a), _ = bet_path(
            bets_state, (xv,), self.alpha, self.max_bet, self.fixed_fraction, self.strategy
        )
        # numpy's log1p, as in the vectorised path (math.log1p differs in the last bit).
        log_w = state.log_wealth + float(np.log1p(state.next_bet * (xv - self.alpha)))
        new_alarm = (not state.alarmed) and log_w >= self.log_threshold
        alarm_step = state.t if new_alarm else state.alarm_step
        new_state = BettingState(
            t=state.t + 1,
            log_wealth=log_w,
            next_bet=next_bet,
            sum_x=sum_x,
            sum_sq_dev=sum_sq,
            ons_a=ons_a,
            alarm_step=alarm_step,
        )
        step = Step(
            t=state.t,
            x=xv,
            statistic=log_w,
            alarm=alarm_step is not None,
            new_alarm=new_alarm,
            alarm_step=alarm_step,
        )
        return new_state, step


def betting_eprocess(
    x: ArrayLike,
    alpha: float,
    *,
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
        alpha=alpha,
        level=level,
        strategy=strategy,
        max_bet_fraction=max_bet_fraction,
        fixed_fraction=fixed_fraction,
    )
    data = as_float_array(x, "x", ndim=(1, 2), low=0.0, high=1.0)
    single = data.ndim == 1
    data = data.reshape(1, -1) if single else data
    n, horizon = data.shape
    init = mon.init()
    start = (0, init.next_bet, init.sum_x, init.sum_sq_dev, init.ons_a)
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
