"""The one bet kernel of the betting e-processes (:mod:`ctd_stats.online.betting`, the budget
monitor of :mod:`ctd_stats.cascade.streaming`), on plain Python floats, one stream at a time
(:func:`bet_path`), or one step across many streams at once (:func:`bet_step`).

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
from typing import Final, TypeVar

import numpy as np

from ..typing import FloatArray

__all__: list[str] = []

#: Online Newton step gain 2 / (2 − log 3) (Cutkosky & Orabona 2018).
ONS_GAIN: Final[float] = 2.0 / (2.0 - math.log(3.0))

#: (t, next_bet, sum_x, sum_sq_dev, ons_a) after t observations: everything the bets need.
BetState = tuple[int, float, float, float, float]


def first_bet(strategy: str, cap: float, fixed_fraction: float) -> float:
    """λ_1: the fixed bet, or 0 for the adaptive strategies (no data yet)."""
    return fixed_fraction * cap if strategy == "fixed" else 0.0


Num = TypeVar("Num", float, FloatArray)


def _advance(
    t: int,
    bet: Num,
    sum_x: Num,
    sum_sq: Num,
    ons_a: Num,
    x: Num,
    alpha: float | Num,
    fixed: float | Num,
    strategy: str,
) -> tuple[Num, Num, Num, Num]:
    """One observation: (sum_x, sum_sq_dev, ons_a, next bet before clipping to [0, cap]).

    The one formula of the bets, on Python floats (one stream) or elementwise on arrays (many
    streams): +, −, ×, ÷ are the same IEEE-754 operations either way, so both agree bit for bit.
    """
    dx = x - alpha
    dev = x - (alpha + sum_x) / (t + 1.0)
    sum_sq = sum_sq + dev * dev
    sum_x = sum_x + x
    if strategy == "ons":  # online Newton step on the log wealth
        g = dx / (1.0 + bet * dx)
        ons_a = ons_a + g * g
        return sum_x, sum_sq, ons_a, bet + ONS_GAIN * g / ons_a
    if strategy == "fixed":
        return sum_x, sum_sq, ons_a, bet * 0.0 + fixed
    # agrapa: running mean / variance with one pseudo-observation at (α, 1/4)
    d = (alpha + sum_x) / (t + 2.0) - alpha
    return sum_x, sum_sq, ons_a, d / ((0.25 + sum_sq) / (t + 2.0) + d * d)


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
    fixed = fixed_fraction * cap
    for x in xs:
        push(bet)
        sum_x, sum_sq, ons_a, bet = _advance(
            t, bet, sum_x, sum_sq, ons_a, x, alpha, fixed, strategy
        )
        bet = 0.0 if bet < 0.0 else (cap if bet > cap else bet)
        t += 1
    return (t, bet, sum_x, sum_sq, ons_a), bets


#: The bet state of m streams that share t: (t, next_bet, sum_x, sum_sq_dev, ons_a), arrays (m,).
BetArrays = tuple[int, FloatArray, FloatArray, FloatArray, FloatArray]


def bet_start(m: int, strategy: str, cap: float | FloatArray, fixed_fraction: float) -> BetArrays:
    """The state of m fresh streams (t = 0, λ_1 = :func:`first_bet`, ons_a = 1)."""
    caps = np.broadcast_to(np.asarray(cap, dtype=np.float64), (m,))
    first = fixed_fraction * caps if strategy == "fixed" else np.zeros(m)
    return 0, np.array(first, dtype=np.float64), np.zeros(m), np.zeros(m), np.ones(m)


def bet_step(
    state: BetArrays,
    x: FloatArray,
    alpha: float | FloatArray,
    cap: float | FloatArray,
    fixed_fraction: float,
    strategy: str,
) -> tuple[BetArrays, FloatArray]:
    """One observation x (m,) on m streams: the new state and the bets λ_t used on x.

    :func:`bet_path`'s arithmetic (the shared :func:`_advance`) elementwise, so each stream's
    bets agree with :func:`bet_path` bit for bit; ``alpha`` and ``cap`` are scalars or
    per-stream arrays (m,). Trusts its inputs; does not modify them.
    """
    t, bet, sum_x, sum_sq, ons_a = state
    fixed = fixed_fraction * np.asarray(cap, dtype=np.float64)
    sum_x, sum_sq, ons_a, new = _advance(t, bet, sum_x, sum_sq, ons_a, x, alpha, fixed, strategy)
    # bet_path's `0 if b < 0 else (cap if b > cap else b)` (NaN kept; −0.0 cannot occur), in place
    np.minimum(np.maximum(new, 0.0, out=new), cap, out=new)
    return (t + 1, new, sum_x, sum_sq, ons_a), bet


def running_sums(carry: FloatArray, xs: FloatArray) -> FloatArray:
    """(T + 1, m): ``carry``, then ``carry + xs[0]``, ... added row after row in order.

    The same bits as ``np.cumsum`` with ``carry`` prepended (an accumulation is sequential in
    t). ``cumsum`` along axis 0 of a C-ordered block is slow for wide rows, so from 32 columns
    on it is one vectorised add per row instead (~4× faster at 1,000 columns).
    """
    if carry.size < 32:
        return np.cumsum(np.concatenate((carry[None], xs)), axis=0)
    out = np.empty((xs.shape[0] + 1, *carry.shape))
    out[0] = carry
    add = np.add
    for i in range(xs.shape[0]):
        add(out[i], xs[i], out=out[i + 1])
    return out


def bet_block(
    state: BetArrays,
    xs: FloatArray,
    alpha: float | FloatArray,
    cap: float | FloatArray,
    fixed_fraction: float,
    strategy: str,
) -> tuple[BetArrays, FloatArray]:
    """T observations xs (T, m) on m streams: the state after them and the bets used (T, m).

    Equal bit for bit to T calls of :func:`bet_step`. For ``"agrapa"`` and ``"fixed"`` the bets
    depend on the data only through the running sums, so the block is vectorised over time:
    sum_x and sum_sq_dev are sequential running sums along time from the carried values
    (:func:`running_sums`: the same additions in the same order as the loop), and the rest is
    the same elementwise arithmetic as :func:`_advance`. ``"ons"`` feeds each bet back into the
    next gradient, so it stays a loop of :func:`bet_step`. Trusts its inputs; does not modify them.
    """
    n_rows = xs.shape[0]
    if strategy == "ons" or n_rows == 0:
        used = np.empty_like(xs)
        for i in range(n_rows):
            state, used[i] = bet_step(state, xs[i], alpha, cap, fixed_fraction, strategy)
        return state, used
    t, bet, sum_x, sum_sq, ons_a = state
    steps = np.arange(t, t + n_rows, dtype=np.float64)[:, None]  # exact: t < 2^53
    sx = running_sums(sum_x, xs)  # sx[i]: the sum before row i
    shifted = alpha + sx  # α + sum_x, before (rows :-1) and after (rows 1:) each observation
    dev = xs - shifted[:-1] / (steps + 1.0)
    sq = running_sums(sum_sq, dev * dev)
    out = np.empty((n_rows + 1, xs.shape[1]))  # out[0]: the carried bet; out[i + 1]: after row i
    out[0] = bet
    new = out[1:]
    if strategy == "fixed":
        new[...] = fixed_fraction * np.asarray(cap, dtype=np.float64)
    else:  # agrapa, as in _advance
        d = shifted[1:] / (steps + 2.0) - alpha
        np.divide(d, (0.25 + sq[1:]) / (steps + 2.0) + d * d, out=new)
    np.minimum(np.maximum(new, 0.0, out=new), cap, out=new)
    return (t + n_rows, out[-1].copy(), sx[-1].copy(), sq[-1].copy(), ons_a), out[:-1]


def log_wealth_path(
    log_w0: float, bets: Sequence[float], xs: FloatArray, alpha: float
) -> FloatArray:
    """log K_t for every step, from log K_0 = ``log_w0`` (sequential sums, numpy's log1p)."""
    terms = np.log1p(np.asarray(bets, dtype=np.float64) * (xs - alpha))
    acc = np.cumsum(np.concatenate(([log_w0], terms)))
    return np.asarray(acc[1:], dtype=np.float64)
