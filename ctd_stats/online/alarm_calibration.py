"""Calibrating the alarm threshold of a threshold monitor (CRC and UCB).

A threshold monitor alarms on a trajectory iff its minimum score m = min_t s_t is below λ.
Two risks, each estimated on one class of calibration trajectories:

* **false alarms** R_I(λ) = P(m < λ | correct), nondecreasing in λ — calibrated on the n₁ correct
  trajectories; the threshold is as LARGE as the guarantee allows;
* **missed detections** R_II(λ) = P(m ≥ λ | incorrect), nonincreasing in λ — calibrated on the n₀
  incorrect trajectories (paper App. B); the threshold is as SMALL as the guarantee allows.

Two kinds of guarantee:

* **CRC** (conformal risk control, in expectation over the calibration draw):
  λ̂ = sup{λ : (#{m_i < λ} + 1)/(n + 1) ≤ ε} for false alarms. Closed form: k = ⌊ε(n+1)⌋ and
  λ̂ = m_(k) (k-th smallest; −∞ if k = 0, "never alarm"); then E[R_I(λ̂)] ≤ k/(n+1) ≤ ε.
  Missed detections: λ̂ = nextafter(m_[k], +∞) with m_[k] the k-th LARGEST (+∞, "always alarm",
  if k = 0). :func:`crc_general` handles any loss in [0, B] monotone in λ.
* **UCB** (high probability): λ̂ = the last λ, scanning from the safe end, whose p-value for
  H0: R(λ) > ε is ≤ δ (fixed-sequence testing; for count-based bounds this is the sup of
  {λ : U(R̂(λ), n, δ) ≤ ε}). Then P(R(λ̂) > ε) ≤ δ.

Every function can work on the closed form (exact, all distinct calibration values are
candidates) or on a grid; ``grid="paper"`` is the online-monitoring paper's
``linspace(0, 1, 10001)``. A grid threshold is always on the conservative side of the closed
form (smaller for false alarms, larger for missed detections).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, cast

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .. import pvalues as _pv
from .._validation import (
    FloatArray,
    IntArray,
    as_float_array,
    as_int_array,
    check_choice,
    check_level,
    check_levels,
    check_positive_int,
    check_sorted,
)
from ..fwer import fixed_sequence
from .trajectories import Trajectories

__all__ = [
    "PAPER_GRID_SIZE",
    "UCB_BOUNDS",
    "CRCThreshold",
    "GeneralCRCThreshold",
    "UCBThreshold",
    "crc_general",
    "crc_threshold",
    "crc_thresholds",
    "paper_grid",
    "paper_nonstandard_hb_pvalue",
    "ucb_threshold",
    "ucb_thresholds",
]

Risk = Literal["false_alarm", "missed_detection"]
RISKS: Final[tuple[str, ...]] = ("false_alarm", "missed_detection")
#: UCB bounds; the last one is the paper's non-standard p-value, for reproduction only.
UCB_BOUNDS: Final[tuple[str, ...]] = (
    "binomial",
    "hoeffding",
    "hoeffding_kl",
    "bentkus",
    "hb",
    "wsr",
    "paper_nonstandard_hb",
)
PAPER_GRID_SIZE: Final[int] = 10001
GridArg = ArrayLike | Literal["paper"] | None


def paper_grid() -> FloatArray:
    """The online-monitoring paper's threshold grid, ``linspace(0, 1, 10001)``."""
    return np.linspace(0.0, 1.0, PAPER_GRID_SIZE)


@dataclass(frozen=True)
class CRCThreshold:
    """A CRC alarm threshold and the guarantee it carries.

    Guarantee (``risk="false_alarm"``): for a new correct trajectory exchangeable with the
    ``n`` correct calibration ones, E[R_I(λ̂)] = P(m_new < λ̂) ≤ ``risk_bound`` = k/(n+1) ≤ ε,
    the expectation taken over calibration and test draw (equality for continuous scores with
    the closed form). ``risk="missed_detection"``: the same for P(m_new ≥ λ̂) over incorrect
    trajectories. ``threshold`` = −∞ means "never alarm", +∞ "always alarm".
    """

    threshold: float
    epsilon: float
    risk: str
    n: int
    k: int
    risk_bound: float
    method: str
    guarantee: str


@dataclass(frozen=True)
class GeneralCRCThreshold:
    """A CRC threshold for a general bounded monotone loss on a grid.

    Guarantee: E[L_new(λ̂)] ≤ ε for a new point exchangeable with the ``n`` calibration ones,
    when the loss lies in [0, ``bound``] and is monotone in λ in the stated direction, and the
    fallback beyond the grid (``index = -1``) has loss ≤ ε.
    """

    threshold: float
    index: int
    epsilon: float
    n: int
    bound: float
    empirical_risk: float
    direction: str
    guarantee: str


@dataclass(frozen=True)
class UCBThreshold:
    """A high-probability (UCB / fixed-sequence) alarm threshold.

    Guarantee: P(R(λ̂) > ε) ≤ δ over the draw of the ``n`` calibration trajectories, where R is
    the false-alarm risk R_I (``risk="false_alarm"``) or missed-detection risk R_II, for the
    valid bounds. ``bound="paper_nonstandard_hb"`` carries NO guarantee (see
    :func:`paper_nonstandard_hb_pvalue`). ``count`` is the number of calibration losses at λ̂.
    """

    threshold: float
    epsilon: float
    delta: float
    risk: str
    n: int
    count: int
    bound: str
    method: str
    guarantee: str


# --------------------------------------------------------------------------- helpers
def _calibration_minima(calibration: Trajectories | ArrayLike, risk: str) -> FloatArray:
    """Minima of the class that calibrates ``risk`` (or the given minima themselves)."""
    if isinstance(calibration, Trajectories):
        labels = calibration.require_labels("calibration")
        want = 1 if risk == "false_alarm" else 0
        mins: FloatArray = calibration.minima[labels == want]
        if len(mins) == 0:
            kind = "correct (label 1)" if want == 1 else "incorrect (label 0)"
            raise ValueError(f"calibration: no {kind} trajectory to calibrate the {risk} risk")
        return mins
    return as_float_array(calibration, "calibration", ndim=1)


def _grid(grid: GridArg) -> FloatArray | None:
    if grid is None:
        return None
    if isinstance(grid, str):
        check_choice(grid, "grid", ("paper",))
        return paper_grid()
    g = as_float_array(grid, "grid", ndim=1, finite=False)
    check_sorted(g, "grid")
    return g


def _crc_k(epsilons: FloatArray, n: int) -> IntArray:
    """Largest integer k with k/(n+1) ≤ ε, evaluated as the definition's float comparison."""
    k = np.floor(epsilons * (n + 1)).astype(np.int64)
    k = np.where((k + 1) / (n + 1) <= epsilons, k + 1, k)
    k = np.where(k / (n + 1) > epsilons, k - 1, k)
    return np.clip(k, 0, n)


def _crc_guarantee(risk: str) -> str:
    what = "P(m_new < λ̂ | correct)" if risk == "false_alarm" else "P(m_new ≥ λ̂ | incorrect)"
    return (
        f"E[{what}] ≤ k/(n+1) ≤ ε in expectation over calibration and test draw, for "
        "trajectories exchangeable with the calibration ones (conformal risk control)"
    )


# --------------------------------------------------------------------------- CRC
def crc_thresholds(
    calibration: Trajectories | ArrayLike,
    epsilons: ArrayLike,
    *,
    risk: Risk = "false_alarm",
    grid: GridArg = None,
) -> FloatArray:
    """CRC thresholds for many ε at once (vectorised; sorts the calibration minima once).

    ``calibration`` is a labelled :class:`Trajectories` (the class matching ``risk`` is used)
    or the 1-d minima of that class directly. Returns an array shaped like ``epsilons``.
    """
    check_choice(risk, "risk", RISKS)
    eps = check_levels(epsilons, "epsilons")
    mins = np.sort(_calibration_minima(calibration, risk))
    n = len(mins)
    g = _grid(grid)
    if g is None:
        k = _crc_k(eps, n)
        if risk == "false_alarm":
            out = np.where(k >= 1, mins[np.maximum(k - 1, 0)], -np.inf)
        else:
            kth_largest = mins[np.clip(n - k, 0, n - 1)]
            out = np.where(k >= 1, np.nextafter(kth_largest, np.inf), np.inf)
        return np.asarray(out, dtype=np.float64).reshape(np.shape(epsilons))
    below = np.searchsorted(mins, g, side="left")  # #{m < λ}
    counts = below if risk == "false_alarm" else n - below  # #{m ≥ λ} for missed detection
    ok = (counts[None, :] + 1) / (n + 1) <= eps[:, None]
    any_ok = ok.any(axis=1)
    if risk == "false_alarm":  # loss nondecreasing in λ: the valid set is a prefix of the grid
        last = len(g) - 1 - np.argmax(ok[:, ::-1], axis=1)
        out = np.where(any_ok, g[last], -np.inf)
    else:
        first = np.argmax(ok, axis=1)
        out = np.where(any_ok, g[first], np.inf)
    return np.asarray(out, dtype=np.float64).reshape(np.shape(epsilons))


def crc_threshold(
    calibration: Trajectories | ArrayLike,
    epsilon: float,
    *,
    risk: Risk = "false_alarm",
    grid: GridArg = None,
) -> CRCThreshold:
    """CRC alarm threshold for one ε (closed form by default, or on ``grid``).

    Raises ``ValueError`` for ε outside (0, 1), NaN scores, or no calibration trajectory of the
    needed class.
    """
    check_choice(risk, "risk", RISKS)
    eps = check_level(epsilon, "epsilon")
    mins = _calibration_minima(calibration, risk)
    n = len(mins)
    lam = float(crc_thresholds(mins, np.array([eps]), risk=risk, grid=grid)[0])
    k = int(_crc_k(np.array([eps]), n)[0])
    return CRCThreshold(
        threshold=lam,
        epsilon=eps,
        risk=risk,
        n=n,
        k=k,
        risk_bound=k / (n + 1),
        method="closed_form" if grid is None else "grid",
        guarantee=_crc_guarantee(risk),
    )


def crc_general(
    losses: ArrayLike,
    lambdas: ArrayLike,
    epsilon: float,
    *,
    bound: float = 1.0,
    direction: Literal["increasing", "decreasing"] = "increasing",
) -> GeneralCRCThreshold:
    """General CRC for any loss in [0, B] monotone in λ, on an increasing grid.

    ``losses`` has shape (n, m): loss of calibration point i at grid value ``lambdas[j]``.
    ``direction="increasing"``: losses nondecreasing in λ (like false alarms) and
    λ̂ = max{λ_j : n/(n+1)·R̂(λ_j) + B/(n+1) ≤ ε}; ``"decreasing"``: nonincreasing losses and
    the min of that set. When no grid point qualifies, ``index = -1`` and the threshold is −∞
    (increasing) or +∞ (decreasing): the action beyond the grid, whose loss must be ≤ ε.
    """
    check_choice(direction, "direction", ("increasing", "decreasing"))
    eps = check_level(epsilon, "epsilon")
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0:
        raise ValueError(f"bound: must be a positive number, got {bound!r}")
    if not math.isfinite(bound):
        raise ValueError("bound: must be finite")
    lam = as_float_array(lambdas, "lambdas", ndim=1, finite=False)
    check_sorted(lam, "lambdas")
    x = as_float_array(losses, "losses", ndim=2, low=0.0, high=float(bound))
    if x.shape[1] != len(lam):
        raise ValueError(f"losses: has {x.shape[1]} columns for {len(lam)} lambdas")
    diffs = np.diff(x, axis=1)
    if direction == "increasing" and np.any(diffs < 0):
        raise ValueError("losses: must be nondecreasing in lambda for direction='increasing'")
    if direction == "decreasing" and np.any(diffs > 0):
        raise ValueError("losses: must be nonincreasing in lambda for direction='decreasing'")
    n = x.shape[0]
    risk_hat = x.mean(axis=0)
    ok = (x.sum(axis=0) + bound) / (n + 1) <= eps  # = n/(n+1)·R̂ + B/(n+1), fewer roundings
    if direction == "increasing":
        idx = int(len(lam) - 1 - np.argmax(ok[::-1])) if ok.any() else -1
        fallback = -math.inf
    else:
        idx = int(np.argmax(ok)) if ok.any() else -1
        fallback = math.inf
    return GeneralCRCThreshold(
        threshold=float(lam[idx]) if idx >= 0 else fallback,
        index=idx,
        epsilon=eps,
        n=n,
        bound=float(bound),
        empirical_risk=float(risk_hat[idx]) if idx >= 0 else math.nan,
        direction=direction,
        guarantee=(
            "E[L_new(λ̂)] ≤ ε for a new point exchangeable with the calibration points "
            "(conformal risk control; loss in [0, B], monotone in λ)"
        ),
    )


# --------------------------------------------------------------------------- UCB
def paper_nonstandard_hb_pvalue(counts: ArrayLike, n: int, epsilon: float) -> FloatArray:
    """The online-monitoring paper's UCB p-value — NOT a valid p-value; reproduction only.

    min(exp(−2n(ε − r̂)²), e·P(Bin(n, r̂) ≥ ⌈nε⌉)) for r̂ = k/n < ε, else 1. The binomial term is
    evaluated at r̂ instead of ε (textbook Bentkus uses P(Bin(n, ε) ≤ k)), so it is smaller than
    the Hoeffding–Bentkus p-value (0.077 vs 0.157 at n = 100, r̂ = 0.05, ε = 0.1) and not
    super-uniform under the null.
    """
    eps = check_level(epsilon, "epsilon")
    n = check_positive_int(n, "n")
    k = as_int_array(counts, "counts", ndim=(0, 1), low=0, high=n).astype(np.float64)
    r = np.atleast_1d(k / n)
    p = np.ones_like(r)
    mask = r < eps
    if mask.any():
        rr = r[mask]
        hoeff = np.exp(-2.0 * n * (eps - rr) ** 2)
        k_eps = math.ceil(n * eps)
        bent = math.e * stats.binom.sf(k_eps - 1, n, rr)
        p[mask] = np.minimum(hoeff, bent)
    return p


def _count_pvalues(counts: IntArray, n: int, eps: float, bound: str) -> FloatArray:
    if bound == "paper_nonstandard_hb":
        return paper_nonstandard_hb_pvalue(counts, n, eps)
    return _pv.pvalues_from_counts(counts, n, eps, method=cast(_pv.PValueMethod, bound))


def _ucb_candidates(
    mins_in_order: FloatArray, risk: str, grid: FloatArray | None
) -> tuple[FloatArray, FloatArray]:
    """Candidate thresholds ordered from the safe end, and their binary loss matrix (n, c)."""
    if grid is None:
        u = np.unique(mins_in_order)
        if risk == "false_alarm":
            cand = np.concatenate([u, [np.inf]])
        else:  # just above each value, from the top; -inf (never alarm) last
            cand = np.concatenate([np.nextafter(u, np.inf)[::-1], [-np.inf]])
    else:
        cand = grid if risk == "false_alarm" else grid[::-1]
    if risk == "false_alarm":
        losses = mins_in_order[:, None] < cand[None, :]
    else:
        losses = mins_in_order[:, None] >= cand[None, :]
    return cand, losses.astype(np.float64)


def _ucb_one(
    mins: FloatArray,
    eps: float,
    delta: float,
    risk: str,
    bound: str,
    grid: FloatArray | None,
    wsr_delta: float,
) -> tuple[float, int]:
    cand, losses = _ucb_candidates(mins, risk, grid)
    n = len(mins)
    counts = losses.sum(axis=0).astype(np.int64)
    if bound == "wsr":
        p = _pv.wsr_pvalue(losses, eps, delta=wsr_delta)
    else:
        p = _count_pvalues(counts, n, eps, bound)
    # Candidates are ordered from the safe end, so this is fixed-sequence testing in grid order.
    certified = fixed_sequence(p, delta, order="ascending").indices
    if certified.size == 0:
        safe = -math.inf if risk == "false_alarm" else math.inf
        return safe, 0
    last = int(certified[-1])
    return float(cand[last]), int(counts[last])


def ucb_thresholds(
    calibration: Trajectories | ArrayLike,
    epsilons: ArrayLike,
    *,
    delta: float = 0.1,
    risk: Risk = "false_alarm",
    bound: str = "binomial",
    grid: GridArg = None,
    wsr_delta: float | None = None,
) -> FloatArray:
    """UCB thresholds for many ε at once (see :func:`ucb_threshold`)."""
    check_choice(risk, "risk", RISKS)
    check_choice(bound, "bound", UCB_BOUNDS)
    eps = check_levels(epsilons, "epsilons")
    d = check_level(delta, "delta")
    wd = d if wsr_delta is None else check_level(wsr_delta, "wsr_delta")
    mins = _calibration_minima(calibration, risk)
    g = _grid(grid)
    out = np.array([_ucb_one(mins, float(e), d, risk, bound, g, wd)[0] for e in eps])
    return out.reshape(np.shape(epsilons))


def ucb_threshold(
    calibration: Trajectories | ArrayLike,
    epsilon: float,
    *,
    delta: float = 0.1,
    risk: Risk = "false_alarm",
    bound: str = "binomial",
    grid: GridArg = None,
    wsr_delta: float | None = None,
) -> UCBThreshold:
    """High-probability alarm threshold: P(R(λ̂) > ε) ≤ δ.

    ``bound`` picks the p-value of H0: R(λ) > ε: ``"binomial"`` (exact, Clopper–Pearson dual;
    default and most powerful for these binary losses), ``"hoeffding"``, ``"hoeffding_kl"``,
    ``"bentkus"``, ``"hb"`` (Hoeffding–Bentkus), ``"wsr"`` (betting; depends on the ORDER of the
    calibration trajectories, ``wsr_delta`` tunes its bet, default δ), or
    ``"paper_nonstandard_hb"`` (the paper's code; no guarantee). Candidates are tested in a
    fixed sequence from the safe end (smallest λ for false alarms, largest for missed
    detections); λ̂ is the last one before the first p-value > δ. If the very first fails,
    λ̂ = −∞ (never alarm) for false alarms, +∞ (always alarm) for missed detections.
    """
    check_choice(risk, "risk", RISKS)
    check_choice(bound, "bound", UCB_BOUNDS)
    eps = check_level(epsilon, "epsilon")
    d = check_level(delta, "delta")
    wd = d if wsr_delta is None else check_level(wsr_delta, "wsr_delta")
    mins = _calibration_minima(calibration, risk)
    lam, count = _ucb_one(mins, eps, d, risk, bound, _grid(grid), wd)
    what = "R_I (false alarms)" if risk == "false_alarm" else "R_II (missed detections)"
    if bound == "paper_nonstandard_hb":
        guarantee = "none: the paper's non-standard p-value is not valid (reproduction only)"
    else:
        guarantee = (
            f"P({what}(λ̂) > ε) ≤ δ over the calibration draw ({bound} p-values, "
            "fixed-sequence testing from the safe end)"
        )
    return UCBThreshold(
        threshold=lam,
        epsilon=eps,
        delta=d,
        risk=risk,
        n=len(mins),
        count=count,
        bound=bound,
        method="closed_form" if grid is None else "grid",
        guarantee=guarantee,
    )
