"""Alarm thresholds for e-process monitors: alarm at the first t with log M_t > log c.

* ``ville``: c = 1/level; P_H0(∃t: M_t ≥ 1/level) ≤ level only if M is a test
  (super)martingale under H0 (Ville's inequality; true for the exact change-point ratio, NOT
  guaranteed for an estimated e-valuator ratio — monitoring paper §4.2);
* ``randomized_ville``: 1/level before the last step, U/level at the last step (U ~ Unif(0, 1);
  Ramdas & Manole 2023, randomised Ville);
* ``pac``: from held-out correct trajectories, c = the k-th order statistic of max_t M, k the
  smallest with P(Bin(n, 1 − alpha) ≥ k) ≤ δ; then P(false-alarm rate > alpha) ≤ δ over the
  held-out draw (distribution-free tolerance bound, Wilks 1941; the e-valuator paper's PAC
  calibration). With n < log δ / log(1 − alpha) no k qualifies: ``found=False``, ``min_n``, and
  c = +∞ (never alarm — valid, zero power);
* ``conformal``: c = the ⌈(1 − alpha)(n + 1)⌉-th order statistic; false-alarm rate ≤ alpha in
  expectation (split conformal). ``found=False`` with c = +∞ when that index exceeds n.

Each threshold carries the one rate it controls in ``rate``: the ``level`` (type-I error of an
anytime-valid alarm) of a Ville threshold, the false-alarm rate ``alpha`` of a calibrated
(PAC, conformal) one; ``delta`` is PAC's probability that the calibration fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .._repr import result_repr
from .._serialize import JSONSerializable, array_sha256, exact_eq
from .._validation import as_float_array, check_level
from ..typing import FloatArray

__all__ = [
    "THRESHOLD_METHODS",
    "EProcessThreshold",
    "conformal_threshold",
    "pac_threshold",
    "randomized_ville_threshold",
    "ville_threshold",
]

THRESHOLD_METHODS: Final[tuple[str, ...]] = ("ville", "randomized_ville", "pac", "conformal")


@exact_eq
@dataclass(frozen=True)
class EProcessThreshold(JSONSerializable, kind="ctd_stats.EProcessThreshold"):
    """Alarm threshold for an e-process: alarm at the first t with log M_t > ``log_threshold``.

    ``method="randomized_ville"`` uses log(U/level) at each trajectory's last step instead (U
    drawn by :func:`~ctd_stats.online.eprocess.eprocess_first_alarms`). ``guarantee`` states
    what the threshold promises. ``rate`` is the one rate it controls: the ``level`` of the
    anytime-valid methods (``ville``, ``randomized_ville``), the false-alarm rate ``alpha`` of
    the calibrated ones (``pac``, ``conformal``); ``delta`` is set for PAC only. ``n`` is the
    number of held-out correct
    trajectories used (PAC, conformal). ``found=False`` (with ``reason``, ``min_n``) when the
    held-out set is too small: ``log_threshold = +inf`` (never alarm).
    """

    log_threshold: float
    method: str
    rate: float
    delta: float | None
    n: int | None
    found: bool
    reason: str | None
    min_n: int | None
    calibration_sha256: str | None
    guarantee: str

    _json_settings = ("method", "rate", "delta")

    def __repr__(self) -> str:
        lines: list[tuple[str, Any]] = [
            ("method", self.method),
            ("level" if self.method in ("ville", "randomized_ville") else "alpha", self.rate),
            ("delta", self.delta),
            ("n", self.n),
        ]
        if not self.found:
            lines = [("reason", self.reason), ("min_n", self.min_n), *lines]
            return result_repr("EProcessThreshold", "found=False, log_threshold=inf", lines)
        head = f"found=True, log_threshold={self.log_threshold:.6g}"
        return result_repr("EProcessThreshold", head, lines)


def _anytime(level: float, method: str, guarantee: str) -> EProcessThreshold:
    return EProcessThreshold(
        log_threshold=-math.log(level),
        method=method,
        rate=level,
        delta=None,
        n=None,
        found=True,
        reason=None,
        min_n=None,
        calibration_sha256=None,
        guarantee=guarantee,
    )


def ville_threshold(level: float) -> EProcessThreshold:
    """c = 1/level (valid when M is a test (super)martingale under H0: Ville's inequality)."""
    lv = check_level(level, "level")
    return _anytime(
        lv,
        "ville",
        "P_H0(∃t: M_t ≥ 1/level) ≤ level if M is a nonnegative supermartingale with M_0 ≤ 1",
    )


def randomized_ville_threshold(level: float) -> EProcessThreshold:
    """1/level before the last step, U/level at the last step (randomised Ville)."""
    lv = check_level(level, "level")
    return _anytime(
        lv,
        "randomized_ville",
        "P_H0(∃t < T: M_t ≥ 1/level or M_T ≥ U/level) ≤ level for a test supermartingale M, "
        "U ~ Unif(0, 1) independent, T a stopping time",
    )


def _held_out_iv(values: ArrayLike) -> tuple[FloatArray, str]:
    v = as_float_array(values, "max_log_values", ndim=1, finite=False)
    return np.sort(v), array_sha256(v)


def _pac_ok(n: int, alpha: float, delta: float) -> bool:
    """Whether k = n (the most favourable order statistic) satisfies the PAC rule at n."""
    return bool(stats.binom.sf(n - 1, n, 1.0 - alpha) <= delta)


#: Reach of the min_n searches: beyond 2**53 an int is no longer exact as a float (the rules
#: are evaluated in floats) and no held-out set is that large; min_n is None past it.
_MIN_N_LIMIT: Final[int] = 2**53
#: Steps of a linear min_n scan before it falls back to bisection (tiny alpha only).
_SCAN_STEPS: Final[int] = 1000


def _need_words(need: int | None) -> str:
    return str(need) if need is not None else f"{_MIN_N_LIMIT} (alpha is too small)"


def _smallest_ok(ok: Callable[[int], bool], lo: int) -> int | None:
    """Smallest m > ``lo`` with ``ok(m)`` (``ok`` non-decreasing, ``ok(lo)`` False or lo = 0),
    by doubling then bisection; None past :data:`_MIN_N_LIMIT`."""
    step = 1
    hi = lo + step
    while not ok(hi):
        lo, step = hi, 2 * step
        hi = lo + step
        if hi >= _MIN_N_LIMIT:
            hi = _MIN_N_LIMIT - 1
            if not ok(hi):
                return None
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def _pac_min_n(alpha: float, delta: float) -> int | None:
    """Smallest n at which PAC can succeed, or None when that is out of reach (tiny alpha).

    A short linear scan from the closed form log δ / log(1 − alpha); if it does not settle
    within :data:`_SCAN_STEPS` steps (only for alpha ≲ 1e-8, where the float rule and the
    closed form drift apart), bisection takes over.
    """

    def ok(n: int) -> bool:
        return _pac_ok(n, alpha, delta)

    estimate = math.log(delta) / math.log1p(-alpha)
    if not estimate < _MIN_N_LIMIT:  # also +inf (alpha below the float resolution)
        return None
    n = max(1, math.ceil(estimate) - 1)
    for _ in range(_SCAN_STEPS):
        if ok(n):
            break
        n += 1
    else:
        return _smallest_ok(ok, 0)
    for _ in range(_SCAN_STEPS):
        if not (n > 1 and ok(n - 1)):
            return n
        n -= 1
    return _smallest_ok(ok, 0)


def pac_threshold(
    max_log_values: ArrayLike, *, alpha: float, delta: float = 0.1
) -> EProcessThreshold:
    """PAC tolerance bound from max_t log M over held-out CORRECT trajectories.

    c = X_(k), the smallest k with P(Bin(n, 1 − alpha) ≥ k) ≤ δ. Guarantee: with probability
    ≥ 1 − δ over the held-out draw, P(max_t M_t > c | correct) ≤ alpha. If no k qualifies
    (n < log δ / log(1 − alpha)) the result has ``found=False``, ``min_n`` and c = +∞.
    """
    a = check_level(alpha, "alpha")
    d = check_level(delta, "delta")
    x, sha = _held_out_iv(max_log_values)
    n = len(x)
    k = np.arange(1, n + 1)
    ok = np.flatnonzero(stats.binom.sf(k - 1, n, 1.0 - a) <= d)
    found = len(ok) > 0
    need = None if found else _pac_min_n(a, d)
    return EProcessThreshold(
        log_threshold=float(x[ok[0]]) if found else math.inf,
        method="pac",
        rate=a,
        delta=d,
        n=n,
        found=found,
        reason=None
        if found
        else (
            f"too few held-out correct trajectories: n = {n}, PAC at alpha = {a:g}, "
            f"delta = {d:g} needs n >= {_need_words(need)}; threshold is +inf (never alarm)"
        ),
        min_n=need,
        calibration_sha256=sha,
        guarantee=(
            "P(false-alarm rate > alpha) ≤ delta over the held-out correct trajectories "
            "(distribution-free tolerance bound)"
        ),
    )


def _conformal_k(n: int, alpha: float) -> int:
    return math.ceil((1.0 - alpha) * (n + 1) - 1e-12)


def _conformal_min_n(n: int, alpha: float) -> int | None:
    """Smallest m > n with ``_conformal_k(m, alpha) <= m`` (what a scan from n + 1 finds).

    The scan starts where the rule can first hold: the float value of (1 − alpha)(m + 1) −
    1e-12 is within 3u(m + 1) of the exact one (u = 2⁻⁵³, m + 1 ≤ 2⁵³), so every m below
    b = (c − 3u − t) / (1 − c + 3u) (c = 1 − alpha as a float, t = 1e-12, in exact rational
    arithmetic) provably fails and is skipped: the answer is the scan's, in a few steps instead
    of ~1/alpha. Past :data:`_SCAN_STEPS` × 100 steps (alpha ≲ 1e-10) bisection takes over;
    None when no m below 2⁵³ qualifies (alpha below the float resolution of 1 − alpha).
    """

    def ok(m: int) -> bool:
        return _conformal_k(m, alpha) <= m

    c = Fraction(1.0 - alpha)
    u3 = Fraction(3, 2**53)
    start = max(n + 1, math.ceil((c - u3 - Fraction(1e-12)) / (1 - c + u3)))
    stop = min(start + 100 * _SCAN_STEPS, _MIN_N_LIMIT)
    for m in range(start, stop):
        if ok(m):
            return m
    return None if stop >= _MIN_N_LIMIT else _smallest_ok(ok, stop - 1)


def conformal_threshold(max_log_values: ArrayLike, *, alpha: float) -> EProcessThreshold:
    """Conformal threshold: the ⌈(1 − alpha)(n + 1)⌉-th order statistic.

    Guarantee: P(max_t M_t > c) ≤ alpha for a new correct trajectory exchangeable with the n
    held-out ones (in expectation over the held-out draw). If that index exceeds n the result
    has ``found=False``, ``min_n`` and c = +∞.
    """
    a = check_level(alpha, "alpha")
    x, sha = _held_out_iv(max_log_values)
    n = len(x)
    k = _conformal_k(n, a)
    found = k <= n
    need = None if found else _conformal_min_n(n, a)
    return EProcessThreshold(
        log_threshold=float(x[k - 1]) if found else math.inf,
        method="conformal",
        rate=a,
        delta=None,
        n=n,
        found=found,
        reason=None
        if found
        else (
            f"too few held-out correct trajectories: n = {n}, conformal at alpha = {a:g} "
            f"needs n >= {_need_words(need)}; threshold is +inf (never alarm)"
        ),
        min_n=need,
        calibration_sha256=sha,
        guarantee="P(max_t M_t > c) ≤ alpha in expectation (split conformal, exchangeable data)",
    )
