"""The one bet kernel of the betting e-processes (:mod:`ctd_stats.online.betting`, the budget
monitor of :mod:`ctd_stats.cascade.streaming`), on plain Python floats, one stream at a time.

Why scalar: the bets λ_t are sequential in t and depend on the observations only, never on the
wealth, so they are computed in a tight loop on plain floats (+, −, ×, ÷, min, max: exact
IEEE-754), which keeps up with ≥ 200,000 decisions/s for a live delegator; many streams are run
one after the other. The wealth log K_t = log K_{t−1} + log1p(λ_t (x_t − α)) is then computed
with numpy's ``log1p`` and a sequential ``cumsum`` (numpy's log1p differs from ``math.log1p`` in
the last bit for ~9 % of inputs; every path uses numpy's, so all e-values agree bit for bit).
Bets are predictable and capped at ``max_bet_fraction``/α (Waudby-Smith & Ramdas 2024).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np

from .._validation import FloatArray

__all__: list[str] = []

#: Online Newton step gain 2 / (2 − log 3) (Cutkosky & Orabona 2018).
ONS_GAIN: Final[float] = 2.0 / (2.0 - math.log(3.0))

#: (t, next_bet, sum_x, sum_sq_dev, ons_a) after t observations: everything the bets need.
BetState = tuple[int, float, float, float, float]


def first_bet(strategy: str, cap: float, fixed_fraction: float) -> float:
    """λ_1: the fixed bet, or 0 for the adaptive strategies (no data yet)."""
    return fixed_fraction * cap if strategy == "fixed" else 0.0


def bet_path(
    state: BetState,
    xs: Sequence[float],
    alpha: float,
    cap: float,
    fixed_fraction: float,
    strategy: str,
) -> tuple[BetState, list[float]]:
    """The bet used at each observation (λ_t, predictable) and the state after the last one.

    Trusts its inputs: x ∈ [0, 1], α ∈ (0, 1), a known strategy.
    """
    t, bet, sum_x, sum_sq, ons_a = state
    bets: list[float] = []
    push = bets.append
    gain = ONS_GAIN
    fixed = fixed_fraction * cap
    for x in xs:
        push(bet)
        dx = x - alpha
        dev = x - (alpha + sum_x) / (t + 1.0)
        sum_sq = sum_sq + dev * dev
        sum_x = sum_x + x
        if strategy == "ons":
            g = dx / (1.0 + bet * dx)
            ons_a = ons_a + g * g
            bet = bet + gain * g / ons_a
        elif strategy == "fixed":
            bet = fixed
        else:  # agrapa: running mean / variance with one pseudo-observation at (α, 1/4)
            d = (alpha + sum_x) / (t + 2.0) - alpha
            bet = d / ((0.25 + sum_sq) / (t + 2.0) + d * d)
        bet = 0.0 if bet < 0.0 else (cap if bet > cap else bet)
        t += 1
    return (t, bet, sum_x, sum_sq, ons_a), bets


def log_wealth_path(
    log_w0: float, bets: Sequence[float], xs: FloatArray, alpha: float
) -> FloatArray:
    """log K_t for every step, from log K_0 = ``log_w0`` (sequential sums, numpy's log1p)."""
    terms = np.log1p(np.asarray(bets, dtype=np.float64) * (xs - alpha))
    acc = np.cumsum(np.concatenate(([log_w0], terms)))
    return np.asarray(acc[1:], dtype=np.float64)
