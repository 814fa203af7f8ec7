"""Learn-then-Test (Angelopoulos, Bates, Candès, Jordan, Lei 2022).

Given a grid λ_1..λ_m and calibration losses, LTT tests H_j: R(λ_j) > α for every grid point with
a valid p-value and certifies the rejected set Λ* with an FWER procedure. Guarantee:

    P( R(λ) ≤ α for every λ ∈ Λ* ) ≥ 1 − δ

over the draw of the n i.i.d. (or exchangeable) calibration points (LTT paper, Theorem 1; CTD
paper, Sec. 3, Eq. (5)). With several risks, each with its own level α_r, the p-value of λ_j is
the maximum over risks (H_j is the union of the per-risk nulls), so every certified λ controls all
risks at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal, cast, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._ltt_result import RULES, LTTResult, Rule, new_result, why_none
from ._ltt_result import first_level as first_level
from ._serialize import array_sha256
from ._validation import (
    as_float_array,
    check_choice,
    check_int_seed,
    check_level,
    check_levels,
    plain,
)
from .conditional_pvalues import count_pvalues, counts_sizes_iv, risk_pvalues, where_iv
from .fwer import PROCEDURES, Order, Procedure, check_strict, fwer_kernel, order_iv, resolve_order
from .pvalues import METHODS, PValueMethod, check_binary, counts_iv
from .splits import split_indices
from .typing import BoolArray, FloatArray, IntArray

if TYPE_CHECKING:  # ctd_stats.grouped imports this module: its names are imported when used
    from ._grouped_result import GroupedLTTResult
    from .grouped import Caps, Correction, GroupMode

__all__ = ["LTT_PROCEDURES", "RULES", "LTTProcedure", "LTTResult", "Rule", "learn_then_test"]

LTTProcedure = Literal["bonferroni", "holm", "fixed_sequence", "fallback", "split_fixed_sequence"]
#: The FWER procedures of :mod:`ctd_stats.fwer` plus the split fixed sequence, which learns its
#: order on part of the rows and tests on the rest (it needs the rows, so only with ``losses``).
LTT_PROCEDURES: Final[tuple[str, ...]] = (*PROCEDURES, "split_fixed_sequence")


@overload
def learn_then_test(
    losses: ArrayLike | None = None,
    *,
    counts: ArrayLike | None = None,
    n: int | ArrayLike | None = None,
    where: ArrayLike | None = None,
    alpha: float | ArrayLike,
    delta: float,
    method: PValueMethod = "binomial",
    procedure: LTTProcedure = "fixed_sequence",
    order: Order | None = None,
    strict: bool = False,
    opt_fraction: float = 0.3,
    seed: int = 42,
    groups: None = None,
    mode: None = None,
    correction: None = None,
    overall_alpha: None = None,
) -> LTTResult: ...


@overload
def learn_then_test(
    losses: ArrayLike | None = None,
    *,
    counts: ArrayLike | None = None,
    n: int | ArrayLike | None = None,
    where: None = None,
    alpha: Caps,
    delta: float,
    method: PValueMethod = "binomial",
    procedure: Procedure = "fixed_sequence",
    order: Order | None = None,
    strict: bool = False,
    opt_fraction: float = 0.3,
    seed: int = 42,
    groups: ArrayLike,
    mode: GroupMode | None = None,
    correction: Correction | None = None,
    overall_alpha: float | None = None,
) -> GroupedLTTResult: ...


def learn_then_test(
    losses: ArrayLike | None = None,
    *,
    counts: ArrayLike | None = None,
    n: int | ArrayLike | None = None,
    where: ArrayLike | None = None,
    alpha: Caps,
    delta: float,
    method: PValueMethod = "binomial",
    procedure: LTTProcedure = "fixed_sequence",
    order: Order | None = None,
    strict: bool = False,
    opt_fraction: float = 0.3,
    seed: int = 42,
    groups: ArrayLike | None = None,
    mode: GroupMode | None = None,
    correction: Correction | None = None,
    overall_alpha: float | None = None,
) -> LTTResult | GroupedLTTResult:
    """Certify grid points whose risk is at most ``alpha`` with probability ≥ 1 − ``delta``.

    Parameters
    ----------
    losses
        Loss matrix in [0, 1]: shape (n, m) for one risk, (n_risks, n, m) for several.
    counts, n
        Instead of ``losses`` for binary losses: integer loss counts of shape (m,) or
        (n_risks, m), and the sample size ``n``: one integer ≥ 1 for every grid point, or an
        integer array broadcastable to ``counts`` (one size per grid point and risk, ≥ 0, each
        count ≤ its n) for conditional risks such as precision (:mod:`ctd_stats.risks`). A grid
        point with n = 0 has p-value 1: it is never certified.
    where
        With ``losses``: a boolean mask of the same shape marking the rows that count toward
        each grid point's risk (conditional risks). The result equals the counts form with
        ``counts = (losses * where).sum(axis=-2)`` and ``n = where.sum(axis=-2)``, bit for bit;
        ``"wsr"`` bets on each grid point's selected rows in their original order.
    alpha
        Risk level(s), one per risk, each in (0, 1).
    delta
        FWER level in (0, 1).
    method
        p-value, one of :data:`ctd_stats.pvalues.METHODS` (``"wsr"`` needs ``losses``).
    procedure
        ``"fixed_sequence"`` (default), ``"holm"``, ``"bonferroni"``, ``"fallback"`` or
        ``"split_fixed_sequence"`` (needs ``losses``: the order is learned on ``opt_fraction``
        of the rows, drawn by ``numpy.random.default_rng(seed)``, by sorting that part's
        p-values, smallest first — ties keep ``order``, or grid order — and the fixed sequence
        is tested on the other rows only).
    order
        Testing order, most conservative first: ``"ascending"`` / ``"descending"`` grid order
        or explicit indices. Required for fixed sequence and fallback; it must be fixed before
        seeing the calibration data. Optional for Holm and Bonferroni, where it only defines
        aggressiveness for :meth:`LTTResult.select` (then it must list every grid index), and
        for the split fixed sequence (the tie-break of the learned order).
    strict
        Fixed-sequence only: reject p < δ instead of p ≤ δ.
    opt_fraction, seed
        The split of ``"split_fixed_sequence"`` (ignored by the other procedures).
    groups
        Each row's group label (with ``losses``), or the label of each row of ``counts``
        (G, m): certify per group with
        :func:`ctd_stats.grouped.learn_then_test_grouped`, which gets every other argument as
        given (``alpha`` may then be one cap per group: a number, a mapping or a sequence;
        ``procedure`` one of :data:`ctd_stats.fwer.PROCEDURES`; no ``where``).
    mode, correction, overall_alpha
        Only with ``groups``, passed through: ``"per_group"`` (Mondrian, the default),
        ``"simultaneous"`` (with ``correction`` ``"bonferroni"`` or ``"sidak"``) or
        ``"shared"`` (one threshold, with an ``overall_alpha`` budget if given); their
        guarantees are in :mod:`ctd_stats.grouped`.

    Returns
    -------
    LTTResult or GroupedLTTResult
        ``sample_sizes`` holds the per-grid-point sizes when they vary (``n`` or ``where``).
        With ``groups``, a :class:`ctd_stats.grouped.GroupedLTTResult`.

    Raises
    ------
    ValueError
        A message starting with the argument's name: ``n`` of a shape that does not broadcast
        to ``counts``, a count above its n, ``where`` not boolean or of another shape than
        ``losses``, ``where`` with ``counts``, levels out of (0, 1), a missing ``order``,
        ``mode``, ``correction`` or ``overall_alpha`` without ``groups``, ``where`` with
        ``groups``.

    Notes
    -----
    Guarantee (LTT paper, Thm. 1): P(every certified grid point has risk ≤ α) ≥ 1 − δ. With one
    sample size per grid point (conditional risks) each binomial p-value P(Bin(n_j, α) ≤ k_j)
    is valid given n_j, because whether a row counts depends on that row alone; the FWER
    procedures then apply unchanged. Replacing n_j by the total number of rows is NOT valid.

    Which procedure: a fixed sequence is the most powerful when the order is known in advance
    and its first grid points have enough rows (budgets, false-alarm rates: order from the
    most conservative point). For conditional risks the most conservative point usually has
    almost no rows (flag or keep almost nothing), so the sequence stops at once: use Holm
    (no order, a little less power than a good sequence), fallback (keeps testing after a
    failure) or ``"split_fixed_sequence"`` (spends part of the data to learn the order).
    Never take the order, or its direction, from the rows being tested.

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.random.default_rng(0).uniform(size=500)
    >>> grid = np.linspace(0, 1, 101)
    >>> losses = scores[:, None] > grid[None, :]          # delegated if score > λ
    >>> res = learn_then_test(losses, alpha=0.2, delta=0.1, order="descending")
    >>> bool(grid[res.certified].min() > 0.75)            # true rate 1 − λ ≤ 0.2 needs λ ≥ 0.75
    True
    >>> tau = res.select(grid, rule="most_aggressive")    # None if nothing was certified
    >>> bool(tau == grid[res.certified].min())
    True

    Alarm precision (1 − precision = P(safe | flagged) ≤ 0.2), one sample size per threshold:

    >>> rng = np.random.default_rng(1)
    >>> unsafe = rng.uniform(size=2000) < 0.3
    >>> score = np.where(unsafe, rng.beta(4, 2, 2000), rng.beta(2, 4, 2000))
    >>> flagged = score[:, None] > grid[None, :]
    >>> res = learn_then_test(flagged & ~unsafe[:, None], where=flagged, alpha=0.2, delta=0.1,
    ...                       procedure="holm", order="descending")
    >>> res.found, round(float(grid[res.select_index("most_aggressive")]), 2)
    (True, 0.73)
    """
    options = {"mode": mode, "correction": correction, "overall_alpha": overall_alpha}
    if groups is not None:
        return _learn_then_test_grouped(
            losses,
            groups=groups,
            counts=counts,
            n=n,
            where=where,
            alpha=alpha,
            delta=delta,
            method=method,
            procedure=procedure,
            order=order,
            strict=strict,
            options=options,
        )
    if mode is not None or correction is not None or overall_alpha is not None:
        name = next(name for name, value in options.items() if value is not None)
        raise ValueError(f"{name}: only used with groups= (per-group Learn-then-Test)")
    alpha = cast("float | ArrayLike", alpha)  # a mapping of caps is for groups only
    alphas, delta, strict = options_iv(alpha, delta, method, procedure, strict)

    if (losses is None) == (counts is None):
        raise ValueError("losses: give exactly one of losses or counts (with n)")
    if losses is not None and n is not None:
        raise ValueError("n: only used with counts; losses already give n")
    if where is not None and losses is None:
        raise ValueError("where: only used with losses; with counts give one n per grid point")
    split = procedure == "split_fixed_sequence"
    if split:
        if losses is None:
            raise ValueError(
                "procedure: 'split_fixed_sequence' learns its order from rows; pass losses"
            )
        opt_fraction = check_level(opt_fraction, "opt_fraction")
        seed = check_int_seed(seed, "seed")
    sizes: IntArray | None = None  # (n_risks, m) when the sample size varies per grid point
    if (
        losses is not None
        and not split
        and method != "wsr"
        and isinstance(losses, np.ndarray)
        and losses.dtype == np.bool_
    ):
        # Boolean losses are binary by construction: count them once, without a float copy.
        # The counts determine the result, so they are what calibration_sha256 identifies.
        if losses.ndim not in (2, 3) or 0 in losses.shape:
            raise ValueError(f"losses: expected a non-empty 2-d or 3-d array, got {losses.shape}")
        if where is None:
            counts, n, losses = losses.sum(axis=-2), losses.shape[-2], None
        else:
            mask = where_iv(where, losses.shape)
            counts, n, losses = (losses & mask).sum(axis=-2), mask.sum(axis=-2), None

    mask3: BoolArray | None = None
    if losses is not None:
        x = as_float_array(losses, "losses", ndim=(2, 3), low=0.0, high=1.0)
        stacked = x if x.ndim == 3 else x[None]
        n_cal, m = stacked.shape[1], stacked.shape[2]
        if n_cal == 0 or m == 0:
            raise ValueError(f"losses: must not be empty, got shape {x.shape}")
        _check_risk_count(alphas, stacked.shape[0])
        check_binary(x, method)
        if where is not None:
            mask = where_iv(where, x.shape)
            mask3 = mask if mask.ndim == 3 else mask[None]
        if split and n_cal < 2:
            raise ValueError("losses: 'split_fixed_sequence' needs at least 2 rows")
        # Hashed now if x is the caller's memory (it may change later), else on first use.
        mine = not (isinstance(losses, np.ndarray) and np.may_share_memory(x, losses))
        source: str | NDArray[Any] | tuple[NDArray[Any], ...] = x if mine else array_sha256(x)
        if mask3 is not None:  # a fresh array of losses and mask: hashed on first use
            source = np.concatenate([x.ravel(), mask3.ravel()])
    else:
        if n is None:
            raise ValueError("n: required with counts")
        if method == "wsr":
            raise ValueError("method: 'wsr' depends on the order of the losses; pass losses")
        assert counts is not None  # exactly one of losses/counts was given
        if not isinstance(n, np.ndarray) and isinstance(n, (bool, np.bool_, int, np.integer)):
            k, n_cal = counts_iv(counts, n, ndim=(1, 2))  # a bool n is rejected there
        else:
            k, size_arr = counts_sizes_iv(counts, n)
            sizes = size_arr if size_arr.ndim == 2 else size_arr[None]
            n_cal = int(sizes.max())
        stacked_k = k if k.ndim == 2 else k[None]
        m = stacked_k.shape[1]
        _check_risk_count(alphas, stacked_k.shape[0])
        if sizes is not None:  # hashed on first read: the result's own copy, kept unchanged
            sizes.flags.writeable = False
        source = k if sizes is None else (k, sizes)
    if split:
        idx = None if order is None else resolve_order(order, m)
    else:
        idx = order_iv(order, procedure, m)
    if idx is not None and procedure in ("holm", "bonferroni") and idx.size != m:
        raise ValueError(f"order: must list every grid index once for procedure={plain(procedure)}")

    # Kernels only from here on: every input is validated.
    n_opt = 0
    if split:
        rows = split_indices(n_cal, first_fraction=opt_fraction, seed=seed)
        opt_mask = None if mask3 is None else mask3[:, rows.first]
        opt_p, _ = risk_pvalues(stacked[:, rows.first], opt_mask, alphas, method, delta)
        base = np.arange(m, dtype=np.int64) if idx is None else idx
        idx = base[np.argsort(opt_p.max(axis=0)[base], kind="stable")]
        stacked = stacked[:, rows.second]
        mask3 = None if mask3 is None else mask3[:, rows.second]
        n_opt, n_cal = int(rows.first.size), int(rows.second.size)
    if losses is not None:
        risk_p, sizes = risk_pvalues(stacked, mask3, alphas, method, delta)
    else:
        risk_p = count_pvalues(stacked_k, n_cal if sizes is None else sizes, alphas, method)
    return decide(
        risk_p,
        alphas=alphas,
        delta=delta,
        method=method,
        procedure=procedure,
        idx=idx,
        strict=strict,
        n_cal=n_cal,
        sizes=sizes,
        source=source,
        n_opt=n_opt,
    )


def options_iv(
    alpha: float | ArrayLike, delta: float, method: str, procedure: str, strict: bool
) -> tuple[FloatArray, float, bool]:
    """The validated levels (one per risk), ``delta`` and ``strict``; method and procedure."""
    check_choice(method, "method", METHODS)
    check_choice(procedure, "procedure", LTT_PROCEDURES)
    # A plain float in (0, 1) is the common case: no further checks, no array round trip.
    if not (type(delta) is float and 0.0 < delta < 1.0):
        delta = check_level(delta, "delta")
    if type(alpha) is float:
        alphas = np.array([alpha if 0.0 < alpha < 1.0 else check_level(alpha, "alpha")])
    else:
        alphas = check_levels(alpha, "alpha")
    if strict is not False and strict is not True:
        strict = check_strict(strict)
    return alphas, delta, strict


def decide(
    risk_p: FloatArray,
    *,
    alphas: FloatArray,
    delta: float,
    method: str,
    procedure: str,
    idx: IntArray | None,
    strict: bool,
    n_cal: int,
    sizes: IntArray | None,
    source: str | NDArray[Any] | tuple[NDArray[Any], ...],
    n_opt: int = 0,
) -> LTTResult:
    """The FWER step on validated per-risk p-values (n_risks, m), and the result.

    The p-value of a grid point is the maximum over risks (the union of the per-risk nulls);
    a split fixed sequence tests its learned order ``idx`` as a fixed sequence.
    """
    combined = risk_p[0] if risk_p.shape[0] == 1 else risk_p.max(axis=0)
    split = procedure == "split_fixed_sequence"
    fw = fwer_kernel(combined, delta, "fixed_sequence" if split else procedure, idx, strict)
    found = bool(fw.indices.size)
    reason, min_n = (
        (None, None)
        if found
        else why_none(combined, alphas, delta, method, procedure, idx, strict, n_cal, sizes)
    )
    return new_result(
        found=found,
        certified=fw.rejected,
        indices=fw.indices,
        pvalues=combined,
        risk_pvalues=risk_p,
        order=idx,
        alpha=alphas,
        delta=delta,
        method=method,
        procedure=procedure,
        strict=strict,
        n=n_cal,
        calibration_sha256=source,
        reason=reason,
        min_n=min_n,
        sample_sizes=sizes,
        n_opt=n_opt,
    )


def _learn_then_test_grouped(
    losses: ArrayLike | None,
    *,
    groups: ArrayLike,
    counts: ArrayLike | None,
    n: int | ArrayLike | None,
    where: ArrayLike | None,
    alpha: Caps,
    delta: float,
    method: PValueMethod,
    procedure: LTTProcedure,
    order: Order | None,
    strict: bool,
    options: dict[str, Any],
) -> GroupedLTTResult:
    """``learn_then_test(..., groups=...)``: every argument passed on as given."""
    from .grouped import learn_then_test_grouped  # imported here: grouped imports this module

    if where is not None:
        raise ValueError("where: not supported with groups; give counts with n per grid point")
    given = {name: value for name, value in options.items() if value is not None}
    return learn_then_test_grouped(
        losses,
        groups=groups,
        counts=counts,
        n=n,
        alpha=alpha,
        delta=delta,
        order=order,
        method=method,
        procedure=cast(Procedure, procedure),  # a split fixed sequence: refused by grouped
        strict=strict,
        **given,
    )


def _check_risk_count(alphas: FloatArray, n_risks: int) -> None:
    if alphas.size != n_risks:
        raise ValueError(
            f"alpha: got {alphas.size} level(s) for {n_risks} risk(s); give one level per risk"
        )
