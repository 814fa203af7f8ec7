"""The batch path of :meth:`ctd_stats.online.AnytimeLTT.run`: T inputs in blocks of rows.

Each block is the same arithmetic as T calls of ``update`` (bit for bit), on whole blocks: the
kernel inputs x = 1 − L/B, the bets (:func:`~ctd_stats.online._bet.bet_block`, vectorised over
time for ``"agrapa"`` and ``"fixed"``), the log-wealth terms log1p(λ (x − α')), and the wealth as
a sequential running sum along time. The carried wealth, bet sums and the first crossing time of
each stream live in flat float64 / int64 arrays updated in place; the frozen state is built once,
at the end. The certified prefix after each input follows from the crossing times: a grid point
is certified once every risk has crossed, and a prefix of the order once all its points have
(fixed-sequence testing, Angelopoulos et al. 2022, Sec. 3).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import numpy as np

from .._streaming import NO_ALARM
from ..typing import BoolArray, FloatArray, IntArray
from ._bet import BetArrays, accumulate_rows, bet_block
from .anytime_state import AnytimeLTTRun, AnytimeLTTState

if TYPE_CHECKING:
    from .anytime_ltt import AnytimeLTT

__all__: list[str] = []

#: Crossing time of a stream that has not crossed (later than any input index).
NEVER: Final[int] = np.iinfo(np.int64).max


def run_blocks(
    mon: AnytimeLTT, state: AnytimeLTTState, losses: FloatArray | BoolArray, block_cells: int
) -> AnytimeLTTRun:
    """``mon.run(state, losses)`` on validated (T, n_risks, m) float64 or bool losses."""
    r, m = mon.n_risks, mon.m
    n = r * m
    n_in = losses.shape[0]
    rows = min(n_in, max(1, block_cells // n))
    flat = losses.reshape(n_in, n)
    # the carried state, updated block after block
    bets: BetArrays = (
        state.t - state.epoch_start,
        state.next_bet.reshape(-1),
        state.sum_x.reshape(-1),
        state.sum_sq_dev.reshape(-1),
        state.ons_a.reshape(-1),
    )
    crossed = state.crossed.reshape(-1).copy()
    cross_t = np.where(crossed, -1, NEVER)  # input index of each stream's first crossing
    level = -math.log(mon.epoch_delta(state.epoch))
    idx = mon._idx
    n_old = 0 if state.index is None else int(mon._rank[state.index]) + 1
    index = np.full(n_in, NO_ALARM, dtype=np.int64)
    n_cert = np.full(n_in, n_old, dtype=np.int64)
    reached = _reached(cross_t, r, m, idx)
    # buffers reused by every block (~2 MB in all, cache sized): x and three for the bets,
    # the second of which then holds the wealth path
    kx = np.empty((rows, n))
    work = (np.empty((rows + 1, n)), np.empty((rows + 1, n)), np.empty((rows + 1, n)))
    log_w = state.log_wealth.reshape(-1)
    rate, bound = mon._rate, mon._stream_bound
    unit = bool(np.all(bound == 1.0))  # L / 1 == L exactly: skip the division
    bools = losses.dtype == np.bool_
    t0 = state.t
    for lo in range(0, n_in, rows):
        k = min(rows, n_in - lo)
        x = kx[:k]
        if unit and bools:  # update's 1 − L/1 is `not L` for a bool L, exactly
            np.logical_not(flat[lo : lo + k], out=x)
        elif unit:
            np.subtract(1.0, flat[lo : lo + k], out=x)  # update's 1 − L/B
        else:
            np.subtract(1.0, np.divide(flat[lo : lo + k], bound, out=x), out=x)
        bets, used = bet_block(bets, x, rate, mon._cap, mon.fixed_fraction, mon.strategy, work=work)
        # log K_t: update's log_w + log1p(λ (x − α')), added row after row
        terms = np.multiply(used, np.subtract(x, rate, out=x), out=x)
        wealth = work[1][: k + 1]
        wealth[0] = log_w
        np.log1p(terms, out=wealth[1:])
        accumulate_rows(wealth)
        top = wealth[1:].max(axis=0)  # a reduction along time: cheaper than testing every cell
        fresh = (top >= level) & ~crossed
        if fresh.any():
            cols = np.flatnonzero(fresh)
            cross_t[cols] = lo + t0 + np.argmax(wealth[1:, cols] >= level, axis=0)
            crossed[cols] = True
            reached = _reached(cross_t, r, m, idx)
            now = np.arange(t0 + lo, t0 + lo + k)
            n_cert[lo : lo + k] = np.searchsorted(reached, now, side="right")
        elif lo:
            n_cert[lo : lo + k] = n_cert[lo - 1]
        log_w = wealth[-1].copy()
    has = n_cert > 0
    index[has] = idx[n_cert[has] - 1]
    n_new = int(n_cert[-1])
    certified, cert_index, cert_step = state.certified, state.index, state.certified_step
    if n_new > n_old:
        certified = certified.copy()
        certified[idx[:n_new]] = True
        cert_step = cert_step.copy()
        cert_step[idx[n_old:n_new]] = reached[n_old:n_new]
        cert_index = int(idx[n_new - 1])
    shape = (r, m)
    _, next_bet, sum_x, sum_sq, ons_a = bets
    end = AnytimeLTTState(
        t=t0 + n_in,
        epoch=state.epoch,
        epoch_start=state.epoch_start,
        certified=certified,
        index=cert_index,
        certified_step=cert_step,
        crossed=crossed.reshape(shape),
        log_wealth=log_w.reshape(shape),
        next_bet=next_bet.reshape(shape),
        sum_x=sum_x.reshape(shape),
        sum_sq_dev=sum_sq.reshape(shape),
        ons_a=ons_a.reshape(shape),
        fingerprint=mon.fingerprint,
    )
    index.setflags(write=False)
    n_cert.setflags(write=False)
    return AnytimeLTTRun(state=end, index=index, n_certified=n_cert)


def _reached(cross_t: IntArray, r: int, m: int, idx: IntArray) -> IntArray:
    """Input index at which each prefix of the order has every risk crossed (NEVER: not yet)."""
    grid = cross_t if r == 1 else cross_t.reshape(r, m).max(axis=0)
    return np.maximum.accumulate(grid[idx])
