"""The one bet kernel of the betting e-processes (:mod:`ctd_stats.online.betting`, the budget
monitor of :mod:`ctd_stats.cascade.streaming`), on plain Python floats, one stream at a time
(:func:`bet_path`), one step across many streams at once (:func:`bet_step`), or a block of steps
across many streams (:func:`bet_block`, for :class:`~ctd_stats.online.AnytimeLTT`).

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
    dev = x - (alpha + sum_x) / (t + 1.0)
    sum_sq = sum_sq + dev * dev
    sum_x = sum_x + x
    if strategy == "ons":  # online Newton step on the log wealth
        dx = x - alpha
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


def accumulate_rows(out: FloatArray, xs: FloatArray | None = None) -> FloatArray:
    """In place: ``out[i + 1] = out[i] + xs[i]`` row after row (``xs`` = ``out[1:]`` if None).

    Sequential in the row index, so each column is the left-to-right running sum from
    ``out[0]`` (the bits of ``np.cumsum``). One vectorised add per row on prebuilt row views:
    ~1 ns per cell at 1,000 columns, where ``cumsum`` along axis 0 takes ~5.
    """
    if out.shape[1] < 32:  # narrow: numpy's own sequential accumulation is faster
        if xs is not None:
            out[1:] = xs
        return np.cumsum(out, axis=0, out=out)
    rows = list(out)
    add = np.add
    src = rows[1:] if xs is None else list(xs)
    for prev, x, nxt in zip(rows[:-1], src, rows[1:], strict=True):
        add(prev, x, nxt)  # positional out: less call overhead per row
    return out


def bet_block(
    state: BetArrays,
    xs: FloatArray,
    alpha: float | FloatArray,
    cap: float | FloatArray,
    fixed_fraction: float,
    strategy: str,
    *,
    work: tuple[FloatArray, FloatArray, FloatArray] | None = None,
) -> tuple[BetArrays, FloatArray]:
    """T observations xs (T, m) on m streams: the state after them and the bets used (T, m).

    Equal bit for bit to T calls of :func:`bet_step`. sum_x and sum_sq_dev are sequential
    running sums along time from the carried values (:func:`accumulate_rows`: the same additions
    in the same order as the loop) and the rest is :func:`_advance`'s elementwise arithmetic on
    whole blocks. ``"agrapa"`` and ``"fixed"`` bets depend on the data only through those sums,
    so the whole block is vectorised over time; ``"ons"`` feeds each bet back into the next
    gradient, so its bets stay a loop over rows (of whole-row operations). ``work``: three
    (≥ T + 1, m) float64 buffers to reuse (the bets returned are a view of the first; the
    others are scratch). Trusts its inputs; does not modify them.
    """
    n_rows, n = xs.shape
    t, bet, sum_x, sum_sq, ons_a = state
    if n_rows == 0:
        return state, np.empty_like(xs)
    if work is None:
        work = (np.empty((n_rows + 1, n)), np.empty((n_rows + 1, n)), np.empty((n_rows + 1, n)))
    out, mean, sq = (w[: n_rows + 1] for w in work)
    # mean[k] = (α + sum_x after k rows) / (t + k + 1): the mean in dev (row k) and d (row k − 1)
    mean[0] = sum_x
    accumulate_rows(mean, xs)
    new_sum_x = mean[-1].copy()
    np.add(mean, alpha, out=mean)
    steps = np.arange(t + 1.0, t + n_rows + 1.5, dtype=np.float64)[:, None]  # exact: t < 2^53
    np.divide(mean, steps, out=mean)
    dev = out[1:]  # scratch until the bets are written
    np.subtract(xs, mean[:-1], out=dev)
    sq[0] = sum_sq
    np.multiply(dev, dev, out=sq[1:])
    accumulate_rows(sq)
    new_sum_sq = sq[-1].copy()
    new = out[1:]
    if strategy == "fixed":
        new[...] = fixed_fraction * np.asarray(cap, dtype=np.float64)
    elif strategy == "agrapa":  # d / ((0.25 + sum_sq) / (t + 2) + d²), as in _advance
        d = np.subtract(mean[1:], alpha, out=mean[1:])
        den = sq[1:]
        np.add(den, 0.25, out=den)
        np.divide(den, steps[1:], out=den)
        np.multiply(d, d, out=new)
        np.add(den, new, out=den)
        np.divide(d, den, out=new)
    else:  # ons: clipped row by row
        ons_a = _ons_rows(bet, ons_a, np.subtract(xs, alpha, out=mean[1:]), new, cap, sq[1])
    if strategy != "ons":
        # bet_step's max then min, in one pass: they differ on −0.0 only, which cannot occur
        np.clip(new, 0.0, cap, new)
    out[0] = bet
    return (t + n_rows, out[-1].copy(), new_sum_x, new_sum_sq, ons_a), out[:-1]


def _ons_rows(
    bet: FloatArray,
    ons_a: FloatArray,
    dx: FloatArray,
    out: FloatArray,
    cap: float | FloatArray,
    tmp: FloatArray,
) -> FloatArray:
    """Online Newton step, row after row: ``out[i]`` the bet after row i; returns the new a.

    :func:`_advance`'s ``g = dx / (1 + λ dx)``, ``a += g²``, ``λ ← λ + G g / a`` then clipped,
    with every operation on whole rows (``x ∘ y`` = ``y ∘ x`` bit for bit for + and ×).
    """
    a = ons_a.copy()
    g = np.empty_like(a)
    prev = bet
    mul, add, div, lo, hi = np.multiply, np.add, np.divide, np.maximum, np.minimum
    for dxi, nxt in zip(dx, out, strict=True):  # positional outs: less call overhead per row
        add(mul(prev, dxi, tmp), 1.0, tmp)
        div(dxi, tmp, g)
        add(a, mul(g, g, tmp), a)
        div(mul(g, ONS_GAIN, nxt), a, nxt)
        hi(lo(add(nxt, prev, nxt), 0.0, out=nxt), cap, out=nxt)
        prev = nxt
    return a


def log_wealth_path(
    log_w0: float, bets: Sequence[float], xs: FloatArray, alpha: float
) -> FloatArray:
    """log K_t for every step, from log K_0 = ``log_w0`` (sequential sums, numpy's log1p)."""
    terms = np.log1p(np.asarray(bets, dtype=np.float64) * (xs - alpha))
    acc = np.cumsum(np.concatenate(([log_w0], terms)))
    return np.asarray(acc[1:], dtype=np.float64)
