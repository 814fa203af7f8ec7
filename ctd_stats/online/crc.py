"""Conformal risk control (CRC) alarm thresholds, in expectation over the calibration draw.

A threshold monitor alarms on a trajectory iff its minimum score m = min_t s_t is below λ
(monitoring paper §3). False alarms R_I(λ) = P(m < λ | correct) are nondecreasing in λ and
calibrated on the n correct trajectories:

    λ̂ = sup{λ : (#{m_i < λ} + 1)/(n + 1) ≤ α}.

Closed form: k = ⌊α(n+1)⌋ and λ̂ = m_(k) (k-th smallest); then E[R_I(λ̂)] ≤ k/(n+1) ≤ α
(conformal risk control, Angelopoulos et al. 2024, Thm. 1). Missed detections (paper App. B):
λ̂ = nextafter(m_[k], +∞), m_[k] the k-th LARGEST minimum of the n incorrect trajectories.
With k = 0 (n < 1/α − 1) nothing can be certified: the result says ``found=False`` with the
smallest n that would work, and the threshold is the safe one (−∞ never alarm for false alarms,
+∞ always alarm for missed detections). :func:`crc_general` handles any loss in [0, B] monotone
in λ on a grid.

With ``groups=`` (task type, dataset, length bucket: one label per trajectory) each group is
calibrated on its own rows alone (Mondrian conformal risk control, beyond the papers): the
closed form above with (n_g, k_g) of group g, so E[R_g(λ̂_g)] ≤ k_g/(n_g+1) ≤ α for EACH group,
an expectation per group that needs no correction and says nothing about all groups at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
from numpy.typing import ArrayLike

from .._serialize import JSONSerializable, array_sha256, exact_eq
from .._validation import (
    as_float_array,
    check_choice,
    check_level,
    check_levels,
    check_sorted,
    plain,
)
from ..grouped import Caps
from ..typing import FloatArray, IntArray
from ._calibration_common import (
    GridArg,
    GroupedThresholdResult,
    Label,
    Risk,
    ThresholdResult,
    calibration_inputs,
    group_caps,
    grouped_minima,
    one_alpha,
    safe_threshold,
    uncertified,
)
from .trajectories import Trajectories

__all__ = [
    "CRCThreshold",
    "GeneralCRCThreshold",
    "GroupedCRCThreshold",
    "crc_general",
    "crc_threshold",
    "crc_thresholds",
]


@exact_eq
@dataclass(frozen=True, repr=False)
class CRCThreshold(ThresholdResult, JSONSerializable, kind="ctd_stats.CRCThreshold"):
    """A CRC alarm threshold and the guarantee it carries.

    Guarantee (``risk="false_alarm"``): for a new correct trajectory exchangeable with the
    ``n`` correct calibration ones, E[R_I(λ̂)] = P(m_new < λ̂) ≤ ``risk_bound`` = k/(n+1) ≤ α,
    the expectation taken over calibration and test draw (monitoring paper §3, eq. for λ̂_CRC).
    ``risk="missed_detection"``: the same for P(m_new ≥ λ̂) over incorrect trajectories.
    ``found=False`` when no threshold can be certified (``reason``, ``min_n``); the threshold
    is then the safe ±∞. ``index`` is the chosen grid position (``None`` for the closed form).
    """

    threshold: float
    alpha: float
    risk: str
    n: int
    k: int
    risk_bound: float
    method: str
    found: bool
    index: int | None
    reason: str | None
    min_n: int | None
    calibration_sha256: str | None
    guarantee: str

    _json_settings = ("alpha", "risk", "method")
    _repr_lines = ("alpha", "risk", "n", "k", "risk_bound", "method")


@exact_eq
@dataclass(frozen=True, repr=False)
class GeneralCRCThreshold(ThresholdResult, JSONSerializable, kind="ctd_stats.GeneralCRCThreshold"):
    """A CRC threshold for a general bounded monotone loss on a grid.

    Guarantee: E[L_new(λ̂)] ≤ α for a new point exchangeable with the ``n`` calibration ones,
    when the loss lies in [0, ``bound``] and is monotone in λ in the stated direction, and the
    fallback beyond the grid (``found=False``, threshold ∓∞) has loss ≤ α (conformal risk
    control, Angelopoulos et al. 2024, Thm. 1). ``empirical_risk`` is ``None`` when not found.
    """

    threshold: float
    alpha: float
    n: int
    bound: float
    empirical_risk: float | None
    direction: str
    found: bool
    index: int | None
    reason: str | None
    min_n: int | None
    calibration_sha256: str | None
    guarantee: str

    _json_settings = ("alpha", "bound", "direction")
    _repr_lines = ("alpha", "n", "bound", "empirical_risk", "direction")


@exact_eq
@dataclass(frozen=True, repr=False)
class GroupedCRCThreshold(
    GroupedThresholdResult[CRCThreshold], JSONSerializable, kind="ctd_stats.GroupedCRCThreshold"
):
    """One CRC alarm threshold per group, each calibrated on its group's rows alone.

    Guarantee, for EACH group g separately (Mondrian conformal risk control): for a new
    trajectory of group g exchangeable with the group's ``n_g`` calibration ones,
    E[R_g(λ̂_g)] ≤ k_g/(n_g+1) ≤ α (Angelopoulos et al. 2024, Thm. 1, applied within the group;
    monitoring paper §3 for λ̂_CRC). An expectation per group: no union bound is needed and no
    claim is made about all groups at once on one calibration draw.

    Attributes
    ----------
    groups
        Group labels in sorted order; :attr:`results` follows it.
    results
        One :class:`CRCThreshold` per group (its ``found``, ``reason``, ``min_n``, ``n``, ``k``),
        equal to :func:`crc_threshold` on that group's calibration minima.
    alpha
        The cap as given: one number for every group, or a tuple of the per-group caps α_g in
        group order (from a mapping or a sequence); :attr:`caps` is always per group.
    risk, method
        The settings shared by every group.
    calibration_sha256
        sha256 of every group's calibration minima together, in calibration order.
    guarantee
        The guarantee in words.

    Notes
    -----
    ``threshold_for(group)`` is the group's threshold (``ValueError`` starting with ``group:``
    for an unknown one); ``thresholds()`` maps every group to its threshold.
    """

    groups: tuple[Label, ...]
    results: tuple[CRCThreshold, ...]
    alpha: float | tuple[float, ...]
    risk: str
    method: str
    calibration_sha256: str
    guarantee: str

    _repr_lines = ("alpha", "risk", "method")

    _json_settings = ("alpha", "risk", "method")


# --------------------------------------------------------------------------- kernels
def _crc_k(alphas: FloatArray, n: int) -> IntArray:
    """Largest integer k with k/(n+1) ≤ α, evaluated as the definition's float comparison."""
    k = np.floor(alphas * (n + 1)).astype(np.int64)
    k = np.where((k + 1) / (n + 1) <= alphas, k + 1, k)
    k = np.where(k / (n + 1) > alphas, k - 1, k)
    return np.clip(k, 0, n)


def _min_n(alpha: float, bound: float = 1.0) -> int:
    """Smallest n with bound/(n + 1) ≤ α (as float comparisons): the least n with k ≥ 1."""
    n = max(1, math.ceil(bound / alpha) - 1)
    while bound / (n + 1) > alpha:
        n += 1
    while n > 1 and bound / n <= alpha:
        n -= 1
    return n


def _crc_kernel(
    sorted_mins: FloatArray, alphas: FloatArray, risk: str, grid: FloatArray | None
) -> tuple[FloatArray, IntArray]:
    """Thresholds and chosen grid indices (−1: none / closed form) for validated inputs."""
    n = len(sorted_mins)
    no_index = np.full(len(alphas), -1, dtype=np.int64)
    if grid is None:
        k = _crc_k(alphas, n)
        if risk == "false_alarm":
            out = np.where(k >= 1, sorted_mins[np.maximum(k - 1, 0)], -np.inf)
        else:
            kth_largest = sorted_mins[np.clip(n - k, 0, n - 1)]
            out = np.where(k >= 1, np.nextafter(kth_largest, np.inf), np.inf)
        return np.asarray(out, dtype=np.float64), no_index
    below = np.searchsorted(sorted_mins, grid, side="left")  # #{m < λ}
    counts = below if risk == "false_alarm" else n - below  # #{m ≥ λ} for missed detection
    ok = (counts[None, :] + 1) / (n + 1) <= alphas[:, None]
    any_ok = ok.any(axis=1)
    if risk == "false_alarm":  # loss nondecreasing in λ: the valid set is a prefix of the grid
        pick = len(grid) - 1 - np.argmax(ok[:, ::-1], axis=1)
    else:
        pick = np.argmax(ok, axis=1)
    out = np.where(any_ok, grid[pick], safe_threshold(risk))
    return np.asarray(out, dtype=np.float64), np.where(any_ok, pick, -1).astype(np.int64)


# --------------------------------------------------------------------------- public
def crc_thresholds(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: ArrayLike,
    risk: Risk = "false_alarm",
    grid: GridArg = None,
    groups: ArrayLike | None = None,
) -> FloatArray:
    """CRC thresholds for many α at once (vectorised; sorts the calibration minima once).

    ``calibration`` is a labelled :class:`Trajectories` (the class matching ``risk`` is used)
    or the 1-d minima of that class directly. Returns an array shaped like ``alpha``; an
    uncertifiable α gets the safe threshold (see :func:`crc_threshold` for the explanation).
    With ``groups`` (one label per trajectory) the array has shape ``(G, *alpha.shape)``: row g is
    group g's thresholds, groups in sorted label order, each calibrated on its own rows with the
    per-group guarantee of :class:`GroupedCRCThreshold`.
    """
    raw, g = calibration_inputs(calibration, risk, grid)
    a = check_levels(alpha, "alpha")
    if groups is not None:
        _, parts = grouped_minima(calibration, raw, risk, groups)
        rows = [_crc_kernel(np.sort(m), a, risk, g)[0] for m in parts]
        return np.stack(rows).reshape(len(parts), *np.shape(alpha))
    out, _ = _crc_kernel(np.sort(raw), a, risk, g)
    return out.reshape(np.shape(alpha))


@overload
def crc_threshold(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: float,
    risk: Risk = ...,
    grid: GridArg = ...,
    groups: None = ...,
) -> CRCThreshold: ...


@overload
def crc_threshold(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: Caps,
    risk: Risk = ...,
    grid: GridArg = ...,
    groups: ArrayLike,
) -> GroupedCRCThreshold: ...


@overload
def crc_threshold(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: Caps,
    risk: Risk = ...,
    grid: GridArg = ...,
    groups: ArrayLike | None,
) -> CRCThreshold | GroupedCRCThreshold: ...


def crc_threshold(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: Caps,
    risk: Risk = "false_alarm",
    grid: GridArg = None,
    groups: ArrayLike | None = None,
) -> CRCThreshold | GroupedCRCThreshold:
    """CRC alarm threshold for one α (closed form by default, or on ``grid``).

    Guarantee: E[risk(λ̂)] ≤ k/(n+1) ≤ α (see :class:`CRCThreshold`). With too few calibration
    trajectories (k = 0) the result has ``found=False``, a ``reason``, ``min_n`` and the safe
    threshold. Raises ``ValueError`` for α outside (0, 1), NaN scores, or no calibration
    trajectory of the needed class.

    ``groups`` (one label per trajectory of ``calibration``, integers or non-empty strings:
    task type, dataset, length bucket) gives one threshold per group, each calibrated on its
    group's rows alone, in a :class:`GroupedCRCThreshold`, under one α or a cap α_g per group
    (a mapping group → cap, exactly the groups with rows, or a sequence in sorted group order;
    ``ValueError`` starting with ``alpha:`` otherwise). Guarantee for EACH group g:
    E[R_g(λ̂_g)] ≤ α_g in expectation (Mondrian CRC); not simultaneous over groups. A group
    too small to certify says so in its own result (``found=False``, ``reason``, ``min_n``).
    ``ValueError`` starting with ``groups:`` for labels of the wrong length, NaN or empty
    labels, or a group with no trajectory of the class that calibrates ``risk``.

    >>> res = crc_threshold([0.2, 0.5, 0.9, 0.4, 0.8], alpha=0.5, groups=["a", "a", "a", "b", "b"])
    >>> res.threshold_for("a"), res.threshold_for("b")
    (0.5, 0.4)
    """
    raw, g = calibration_inputs(calibration, risk, grid)
    a = one_alpha(alpha, groups)
    if groups is None:
        assert a is not None
        return _crc_result(raw, a, risk, g)
    labels, parts = grouped_minima(calibration, raw, risk, groups)
    cap, caps = group_caps(alpha, a, labels)
    return GroupedCRCThreshold(
        groups=labels,
        results=tuple(_crc_result(m, c, risk, g) for m, c in zip(parts, caps, strict=True)),
        alpha=cap,
        risk=risk,
        method="closed_form" if g is None else "grid",
        calibration_sha256=array_sha256(raw),
        guarantee=_grouped_crc_guarantee(risk, a is None),
    )


def _crc_result(raw: FloatArray, a: float, risk: str, g: FloatArray | None) -> CRCThreshold:
    """The :class:`CRCThreshold` of validated calibration minima (in calibration order)."""
    mins = np.sort(raw)
    n = len(mins)
    lam_arr, idx_arr = _crc_kernel(mins, np.array([a]), risk, g)
    lam = float(lam_arr[0])
    k = int(_crc_k(np.array([a]), n)[0])
    found = bool(k >= 1) if g is None else int(idx_arr[0]) >= 0
    reason: str | None = None
    min_n: int | None = None
    if not found:
        need = _min_n(a)
        reason, min_n = uncertified(
            risk,
            n,
            need,
            f"too few calibration trajectories: n = {n}, CRC at alpha = {a:g} needs "
            f"n >= {need} (1/(n+1) <= alpha)",
            "no grid point satisfies the CRC rule",
        )
    return CRCThreshold(
        threshold=lam,
        alpha=a,
        risk=risk,
        n=n,
        k=k,
        risk_bound=k / (n + 1),
        method="closed_form" if g is None else "grid",
        found=found,
        index=int(idx_arr[0]) if g is not None and found else None,
        reason=reason,
        min_n=min_n,
        calibration_sha256=array_sha256(raw),
        guarantee=_crc_guarantee(risk),
    )


def _crc_guarantee(risk: str) -> str:
    what = "P(m_new < λ̂ | correct)" if risk == "false_alarm" else "P(m_new ≥ λ̂ | incorrect)"
    return (
        f"E[{what}] ≤ k/(n+1) ≤ α in expectation over calibration and test draw, for "
        "trajectories exchangeable with the calibration ones (conformal risk control)"
    )


def _grouped_crc_guarantee(risk: str, per_group: bool) -> str:
    what = (
        "P(m_new < λ̂_g | correct, g)"
        if risk == "false_alarm"
        else ("P(m_new ≥ λ̂_g | incorrect, g)")
    )
    cap = "α_g" if per_group else "α"
    return (
        f"For EACH group g separately: E[{what}] ≤ k_g/(n_g+1) ≤ {cap} in expectation over the "
        "group's calibration and test draw, for trajectories of group g exchangeable with the "
        "group's calibration ones (Mondrian conformal risk control, each group calibrated on "
        "its own rows). Not simultaneous over groups: no claim about all groups at once"
    )


def crc_general(
    losses: ArrayLike,
    lambdas: ArrayLike,
    *,
    alpha: float,
    bound: float = 1.0,
    direction: Literal["increasing", "decreasing"] = "increasing",
) -> GeneralCRCThreshold:
    """General CRC for any loss in [0, B] monotone in λ, on an increasing grid.

    ``losses`` has shape (n, m): loss of calibration point i at grid value ``lambdas[j]``.
    ``direction="increasing"``: losses nondecreasing in λ (like false alarms) and
    λ̂ = max{λ_j : n/(n+1)·R̂(λ_j) + B/(n+1) ≤ α}; ``"decreasing"``: nonincreasing losses and
    the min of that set. When no grid point qualifies, ``found=False`` and the threshold is −∞
    (increasing) or +∞ (decreasing): the action beyond the grid, whose loss must be ≤ α.
    """
    check_choice(direction, "direction", ("increasing", "decreasing"))
    a = check_level(alpha, "alpha")
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0:
        raise ValueError(f"bound: must be a positive number, got {plain(bound)}")
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
    ok = (x.sum(axis=0) + bound) / (n + 1) <= a  # = n/(n+1)·R̂ + B/(n+1), fewer roundings
    found = bool(ok.any())
    if direction == "increasing":
        idx = int(len(lam) - 1 - np.argmax(ok[::-1])) if found else -1
        fallback = -math.inf
    else:
        idx = int(np.argmax(ok)) if found else -1
        fallback = math.inf
    reason: str | None = None
    min_n: int | None = None
    if not found:
        need = _min_n(a, float(bound))
        side = "-inf" if direction == "increasing" else "+inf"
        if n < need:
            min_n = need
            reason = f"too few calibration points: n = {n}, needs n >= {need} (B/(n+1) <= alpha)"
        else:
            reason = "no grid point satisfies the CRC rule"
        reason += f"; threshold is {side} (the action beyond the grid)"
    return GeneralCRCThreshold(
        threshold=float(lam[idx]) if found else fallback,
        alpha=a,
        n=n,
        bound=float(bound),
        empirical_risk=float(risk_hat[idx]) if found else None,
        direction=direction,
        found=found,
        index=idx if found else None,
        reason=reason,
        min_n=min_n,
        calibration_sha256=array_sha256(x),
        guarantee=(
            "E[L_new(λ̂)] ≤ α for a new point exchangeable with the calibration points "
            "(conformal risk control; loss in [0, B], monotone in λ)"
        ),
    )
