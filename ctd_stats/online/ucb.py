"""High-probability (UCB) alarm thresholds by fixed-sequence testing from the safe end.

For each candidate λ, ordered from the safe end (smallest λ for false alarms, largest for missed
detections), test H0: R(λ) > α with a valid p-value; λ̂ is the last candidate before the first
p-value > δ (fixed-sequence testing, Bauer 1991; Learn-then-Test, Angelopoulos et al. 2021).
Then P(R(λ̂) > α) ≤ δ over the calibration draw (monitoring paper §4; for count-based bounds
λ̂ = sup{λ : U(R̂(λ), n, δ) ≤ α}). When even the first candidate fails, nothing is certified:
``found=False``, a ``reason``, ``min_n`` (the smallest n for which the most favourable
calibration, no loss at the first candidate, would pass) and the safe threshold (−∞ never alarm
for false alarms, +∞ always alarm for missed detections).

With ``groups=`` (task type, dataset, length bucket: one label per trajectory) each of the G
groups gets its own threshold from its own rows, under one cap α or its own cap α_g, tested at
δ_G (beyond the papers), so that P(∃g: R_g(λ̂_g) > α_g) ≤ δ for all groups at once: Bonferroni
δ_G = δ/G (union bound, any dependence between the groups) or Šidák δ_G = 1 − (1 − δ)^{1/G}
(Šidák 1967; groups' calibration samples independent: 1 − (1 − δ_G)^G = δ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, cast, overload

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .. import pvalues as _pv
from .._serialize import JSONSerializable, array_sha256, exact_eq
from .._validation import as_int_array, check_choice, check_level, check_levels, check_positive_int
from ..fwer import fixed_sequence
from ..grouped import CORRECTIONS, Caps, Correction, corrected_delta
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
    "UCB_BOUNDS",
    "GroupedUCBThreshold",
    "UCBThreshold",
    "paper_nonstandard_hb_pvalue",
    "ucb_threshold",
    "ucb_thresholds",
]

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
_MIN_N_LIMIT: Final[int] = 10**9


@exact_eq
@dataclass(frozen=True, repr=False)
class UCBThreshold(ThresholdResult, JSONSerializable, kind="ctd_stats.UCBThreshold"):
    """A high-probability (UCB / fixed-sequence) alarm threshold.

    Guarantee: P(R(λ̂) > α) ≤ δ over the draw of the ``n`` calibration trajectories, where R is
    the false-alarm risk R_I (``risk="false_alarm"``) or missed-detection risk R_II, for the
    valid bounds (monitoring paper §4). ``bound="paper_nonstandard_hb"`` carries NO guarantee
    (see :func:`paper_nonstandard_hb_pvalue`). ``count`` is the number of calibration losses
    at λ̂. ``found=False`` (with ``reason``, ``min_n``) when nothing is certified; the threshold
    is then the safe ±∞. ``index`` is the chosen grid position (``None`` for the closed form).
    """

    threshold: float
    alpha: float
    delta: float
    risk: str
    n: int
    count: int
    bound: str
    method: str
    found: bool
    index: int | None
    reason: str | None
    min_n: int | None
    calibration_sha256: str | None
    guarantee: str

    _json_settings = ("alpha", "delta", "risk", "bound", "method")
    _repr_lines = ("alpha", "delta", "risk", "n", "count", "bound", "method")


@exact_eq
@dataclass(frozen=True, repr=False)
class GroupedUCBThreshold(
    GroupedThresholdResult[UCBThreshold], JSONSerializable, kind="ctd_stats.GroupedUCBThreshold"
):
    """One UCB alarm threshold per group, certified for all groups at once.

    Guarantee (valid bounds): P(∃g: R_g(λ̂_g) > α_g) ≤ δ over the calibration draw, where R_g
    is group g's false-alarm (or missed-detection) risk and α_g its cap (one α for every group,
    or one cap per group). Each group is calibrated on its own rows by fixed-sequence testing at
    ``group_delta`` (monitoring paper §4 for the per-group threshold, Learn-then-Test,
    Angelopoulos et al. 2021, Thm. 1, for each group's test, P(R_g(λ̂_g) > α_g) ≤ group_delta):

    * ``correction="bonferroni"``: group_delta = δ/G, a union bound over the G groups, valid
      whatever the dependence between the groups' calibration samples;
    * ``correction="sidak"``: group_delta = 1 − (1 − δ)^{1/G} (Šidák 1967), valid when the
      groups' calibration samples are independent (disjoint samples drawn separately per
      group, or i.i.d. rows split by group, read given the group sizes): the G events
      {R_g(λ̂_g) > α_g} are then independent, so P(∃g) ≤ 1 − (1 − group_delta)^G = δ.

    With one group, group_delta = δ under either correction. A new input's group must be known
    when its threshold is applied.

    Attributes
    ----------
    groups
        Group labels in sorted order; :attr:`results` follows it.
    results
        One :class:`UCBThreshold` per group at level ``group_delta`` (its ``found``,
        ``reason``, ``min_n`` at that level), equal to :func:`ucb_threshold` on that group's
        calibration minima with ``alpha`` its cap and ``delta=group_delta``.
    alpha
        The cap as given: one number for every group, or a tuple of the per-group caps α_g in
        group order (from a mapping or a sequence); :attr:`caps` is always per group.
    delta, group_delta, correction
        The simultaneous level δ, each group's level and the correction that gave it,
        ``"bonferroni"`` (δ/G) or ``"sidak"`` (1 − (1 − δ)^{1/G}).
    risk, bound, method
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
    results: tuple[UCBThreshold, ...]
    alpha: float | tuple[float, ...]
    delta: float
    group_delta: float
    correction: str
    risk: str
    bound: str
    method: str
    calibration_sha256: str
    guarantee: str

    _repr_lines = ("alpha", "delta", "group_delta", "correction", "risk", "bound", "method")

    _json_settings = (
        "alpha",
        "delta",
        "group_delta",
        "correction",
        "risk",
        "bound",
        "method",
    )


# --------------------------------------------------------------------------- p-values
def _paper_pvalue(k: IntArray, n: int, alpha: float) -> FloatArray:
    """Kernel of :func:`paper_nonstandard_hb_pvalue` (validated counts)."""
    r = np.atleast_1d(k.astype(np.float64) / n)
    p = np.ones_like(r)
    mask = r < alpha
    if mask.any():
        rr = r[mask]
        hoeff = np.exp(-2.0 * n * (alpha - rr) ** 2)
        k_alpha = math.ceil(n * alpha)
        bent = math.e * stats.binom.sf(k_alpha - 1, n, rr)
        p[mask] = np.minimum(hoeff, bent)
    return p


def paper_nonstandard_hb_pvalue(counts: ArrayLike, n: int, *, alpha: float) -> FloatArray:
    """The online-monitoring paper's UCB p-value — NOT a valid p-value; reproduction only.

    min(exp(−2n(α − r̂)²), e·P(Bin(n, r̂) ≥ ⌈nα⌉)) for r̂ = k/n < α, else 1 (the paper's ε is
    ``alpha``). The binomial term is evaluated at r̂ instead of α (textbook Bentkus uses
    P(Bin(n, α) ≤ k)), so it is smaller than the Hoeffding–Bentkus p-value (0.077 vs 0.157 at
    n = 100, r̂ = 0.05, α = 0.1) and not super-uniform under the null.
    """
    a = check_level(alpha, "alpha")
    n = check_positive_int(n, "n")
    k = as_int_array(counts, "counts", ndim=(0, 1), low=0, high=n)
    return _paper_pvalue(k, n, a)


def _count_pvalues(counts: IntArray, n: int, alpha: float, bound: str) -> FloatArray:
    if bound == "paper_nonstandard_hb":
        return _paper_pvalue(counts, n, alpha)
    return _pv.pvalues_from_counts(counts, n, alpha=alpha, method=cast(_pv.PValueMethod, bound))


def _zero_loss_pvalue(n: int, alpha: float, bound: str, wsr_delta: float) -> float:
    """p-value of the most favourable calibration at the first candidate: n points, no loss."""
    if bound == "wsr":
        return float(_pv.wsr_pvalue(np.zeros((n, 1)), alpha=alpha, delta=wsr_delta)[0])
    return float(_count_pvalues(np.zeros(1, dtype=np.int64), n, alpha, bound)[0])


def _min_n(alpha: float, delta: float, bound: str, wsr_delta: float) -> int | None:
    """Smallest n whose zero-loss p-value is ≤ δ, None past 1e9 (past 2**20 for wsr)."""
    if bound in _pv.COUNT_METHODS:
        return _pv.min_n_for_zero_losses(alpha, delta, bound, limit=_MIN_N_LIMIT)
    # wsr and the paper's p-value are not count methods of pvalues (which returns None for
    # wsr): the same search on their own zero-loss p-value, non-increasing in n for both.
    limit = 2**20 if bound == "wsr" else _MIN_N_LIMIT
    return _pv.smallest_n(
        lambda n: _zero_loss_pvalue(n, alpha, bound, wsr_delta) <= delta, limit=limit
    )


# --------------------------------------------------------------------------- kernel
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


def _ucb_kernel(
    mins: FloatArray,
    alpha: float,
    delta: float,
    risk: str,
    bound: str,
    grid: FloatArray | None,
    wsr_delta: float,
) -> tuple[float, int, int]:
    """(threshold, count at it, position in the candidate order or −1) for validated inputs."""
    cand, losses = _ucb_candidates(mins, risk, grid)
    n = len(mins)
    counts = losses.sum(axis=0).astype(np.int64)
    if bound == "wsr":
        p = _pv.wsr_pvalue(losses, alpha=alpha, delta=wsr_delta)
    else:
        p = _count_pvalues(counts, n, alpha, bound)
    # Candidates are ordered from the safe end, so this is fixed-sequence testing in grid order.
    certified = fixed_sequence(p, delta=delta, order="ascending").indices
    if certified.size == 0:
        return safe_threshold(risk), 0, -1
    last = int(certified[-1])
    return float(cand[last]), int(counts[last]), last


def _ucb_iv(
    calibration: Trajectories | ArrayLike,
    risk: str,
    grid: GridArg,
    bound: str,
    delta: float,
    wsr_delta: float | None,
) -> tuple[FloatArray, FloatArray | None, float, float]:
    """Calibration minima, grid, δ and the WSR bet's δ, validated (public edge of both fronts)."""
    check_choice(bound, "bound", UCB_BOUNDS)
    d = check_level(delta, "delta")
    wd = d if wsr_delta is None else check_level(wsr_delta, "wsr_delta")
    mins, g = calibration_inputs(calibration, risk, grid)
    return mins, g, d, wd


# --------------------------------------------------------------------------- public
def ucb_thresholds(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: ArrayLike,
    delta: float = 0.1,
    risk: Risk = "false_alarm",
    bound: str = "binomial",
    grid: GridArg = None,
    wsr_delta: float | None = None,
    groups: ArrayLike | None = None,
    correction: Correction = "bonferroni",
) -> FloatArray:
    """UCB thresholds for many α at once (see :func:`ucb_threshold`), shaped like ``alpha``.

    With ``groups`` (one label per trajectory) the array has shape ``(G, *alpha.shape)``: row g is
    group g's thresholds at the level ``correction`` gives each group, δ/G (``"bonferroni"``) or
    1 − (1 − δ)^{1/G} (``"sidak"``), for all groups at once at each α (see
    :class:`GroupedUCBThreshold`), groups in sorted label order.
    """
    mins, g, d, wd = _ucb_iv(calibration, risk, grid, bound, delta, wsr_delta)
    check_choice(correction, "correction", CORRECTIONS)
    a = check_levels(alpha, "alpha")
    if groups is not None:
        _, parts = grouped_minima(calibration, mins, risk, groups)
        gd = corrected_delta(d, len(parts), correction)
        gwd = gd if wsr_delta is None else wd
        rows = [[_ucb_kernel(m, float(x), gd, risk, bound, g, gwd)[0] for x in a] for m in parts]
        return np.array(rows, dtype=np.float64).reshape(len(parts), *np.shape(alpha))
    out = np.array([_ucb_kernel(mins, float(x), d, risk, bound, g, wd)[0] for x in a])
    return out.reshape(np.shape(alpha))


@overload
def ucb_threshold(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: float,
    delta: float = ...,
    risk: Risk = ...,
    bound: str = ...,
    grid: GridArg = ...,
    wsr_delta: float | None = ...,
    groups: None = ...,
    correction: Correction = ...,
) -> UCBThreshold: ...


@overload
def ucb_threshold(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: Caps,
    delta: float = ...,
    risk: Risk = ...,
    bound: str = ...,
    grid: GridArg = ...,
    wsr_delta: float | None = ...,
    groups: ArrayLike,
    correction: Correction = ...,
) -> GroupedUCBThreshold: ...


@overload
def ucb_threshold(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: Caps,
    delta: float = ...,
    risk: Risk = ...,
    bound: str = ...,
    grid: GridArg = ...,
    wsr_delta: float | None = ...,
    groups: ArrayLike | None,
    correction: Correction = ...,
) -> UCBThreshold | GroupedUCBThreshold: ...


def ucb_threshold(
    calibration: Trajectories | ArrayLike,
    *,
    alpha: Caps,
    delta: float = 0.1,
    risk: Risk = "false_alarm",
    bound: str = "binomial",
    grid: GridArg = None,
    wsr_delta: float | None = None,
    groups: ArrayLike | None = None,
    correction: Correction = "bonferroni",
) -> UCBThreshold | GroupedUCBThreshold:
    """High-probability alarm threshold: P(R(λ̂) > α) ≤ δ.

    ``bound`` picks the p-value of H0: R(λ) > α: ``"binomial"`` (exact, Clopper–Pearson dual;
    default and most powerful for these binary losses), ``"hoeffding"``, ``"hoeffding_kl"``,
    ``"bentkus"``, ``"hb"`` (Hoeffding–Bentkus), ``"wsr"`` (betting; depends on the ORDER of the
    calibration trajectories, ``wsr_delta`` tunes its bet, default δ), or
    ``"paper_nonstandard_hb"`` (the paper's code; no guarantee). If the very first candidate
    fails, ``found=False`` and λ̂ = −∞ (never alarm) for false alarms, +∞ (always alarm) for
    missed detections.

    ``groups`` (one label per trajectory of ``calibration``, integers or non-empty strings:
    task type, dataset, length bucket) gives one threshold per group in a
    :class:`GroupedUCBThreshold`, each calibrated on its own rows at a corrected level, so
    P(∃g: R_g(λ̂_g) > α_g) ≤ δ for all groups at once. ``alpha`` is then one number for every
    group, a mapping group → cap α_g (exactly the groups with rows) or a sequence of caps in
    sorted group order. ``correction``: ``"bonferroni"`` (default; Bonferroni) δ/G, valid for
    any dependence between the groups, or ``"sidak"`` (Šidák) 1 − (1 − δ)^{1/G}, slightly
    larger, valid only when the groups' calibration samples are independent of each other
    (disjoint samples drawn separately per group, or i.i.d. rows split by group, read given the
    group sizes). ``wsr_delta`` defaults to that level. A group too small to certify at its
    level says so in its own result (``found=False``, ``reason``, ``min_n`` at that level).
    ``ValueError`` starting with ``groups:`` for labels of the wrong length, NaN or empty
    labels, or a group with no trajectory of the class that calibrates ``risk``; ``alpha:`` for
    a cap outside (0, 1), a mapping naming a group with no rows or missing one, or a sequence of
    the wrong length; ``correction:`` for an unknown one.

    >>> res = ucb_threshold(np.linspace(0, 1, 200), alpha=0.2, groups=np.arange(200) % 2)
    >>> res.group_delta, res.results[0].delta
    (0.05, 0.05)
    >>> res = ucb_threshold(np.linspace(0, 1, 200), alpha={0: 0.2, 1: 0.1},
    ...                     groups=np.arange(200) % 2, correction="sidak")
    >>> res.caps.tolist(), round(res.group_delta, 6)
    ([0.2, 0.1], 0.051317)
    """
    mins, g, d, wd = _ucb_iv(calibration, risk, grid, bound, delta, wsr_delta)
    check_choice(correction, "correction", CORRECTIONS)
    a = one_alpha(alpha, groups)
    if groups is None:
        assert a is not None
        return _ucb_result(mins, a, d, risk, bound, g, wd)
    labels, parts = grouped_minima(calibration, mins, risk, groups)
    cap, caps = group_caps(alpha, a, labels)
    gd = corrected_delta(d, len(parts), correction)
    gwd = gd if wsr_delta is None else wd
    return GroupedUCBThreshold(
        groups=labels,
        results=tuple(
            _ucb_result(m, c, gd, risk, bound, g, gwd) for m, c in zip(parts, caps, strict=True)
        ),
        alpha=cap,
        delta=d,
        group_delta=gd,
        correction=correction,
        risk=risk,
        bound=bound,
        method="closed_form" if g is None else "grid",
        calibration_sha256=array_sha256(mins),
        guarantee=_grouped_guarantee(risk, bound, correction, a is None, d, gd, len(parts)),
    )


def _grouped_guarantee(
    risk: str, bound: str, correction: str, per_group: bool, d: float, gd: float, n_groups: int
) -> str:
    """The guarantee of a :class:`GroupedUCBThreshold` in words."""
    if bound == "paper_nonstandard_hb":
        return "none: the paper's non-standard p-value is not valid (reproduction only)"
    what = "false-alarm risk R_I" if risk == "false_alarm" else "missed-detection risk R_II"
    cap = "α_g" if per_group else "α"
    if correction == "bonferroni":
        level, why = "δ/G", f"Bonferroni correction over G = {n_groups} groups"
    else:
        level = "1 − (1 − δ)^(1/G)"
        why = (
            f"Šidák correction over G = {n_groups} groups, valid when the groups' calibration "
            "samples are independent"
        )
    return (
        f"For all groups at once: P(some group g has {what},g(λ̂_g) > {cap}) ≤ δ = {d!r} over "
        f"the calibration draw; each group calibrated on its own rows at {level} = {gd!r} "
        f"({why}; {bound} p-values, fixed-sequence testing from the safe end)"
    )


def _ucb_result(
    mins: FloatArray,
    a: float,
    d: float,
    risk: str,
    bound: str,
    g: FloatArray | None,
    wd: float,
) -> UCBThreshold:
    """The :class:`UCBThreshold` of validated calibration minima (in calibration order)."""
    n = len(mins)
    lam, count, pos = _ucb_kernel(mins, a, d, risk, bound, g, wd)
    found = pos >= 0
    reason: str | None = None
    min_n: int | None = None
    if not found:
        need = _min_n(a, d, bound, wd)
        reason, min_n = uncertified(
            risk,
            n,
            need,
            f"too few calibration trajectories: n = {n}; with {bound} p-values at "
            f"alpha = {a:g}, delta = {d:g} even zero losses need n >= {need}",
            "the first candidate (the safe end) already has p-value > delta",
        )
    index: int | None = None
    if g is not None and found:
        index = pos if risk == "false_alarm" else len(g) - 1 - pos
    what = "R_I (false alarms)" if risk == "false_alarm" else "R_II (missed detections)"
    if bound == "paper_nonstandard_hb":
        guarantee = "none: the paper's non-standard p-value is not valid (reproduction only)"
    else:
        guarantee = (
            f"P({what}(λ̂) > α) ≤ δ over the calibration draw ({bound} p-values, "
            "fixed-sequence testing from the safe end)"
        )
    return UCBThreshold(
        threshold=lam,
        alpha=a,
        delta=d,
        risk=risk,
        n=n,
        count=count,
        bound=bound,
        method="closed_form" if g is None else "grid",
        found=found,
        index=index,
        reason=reason,
        min_n=min_n,
        calibration_sha256=array_sha256(mins),
        guarantee=guarantee,
    )
