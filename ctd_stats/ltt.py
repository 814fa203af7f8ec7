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

from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._repr import result_repr
from ._serialize import JSONSerializable, array_sha256, exact_eq
from ._validation import (
    as_float_array,
    as_int_array,
    check_choice,
    check_int_seed,
    check_level,
    check_levels,
)
from .conditional_pvalues import count_pvalues, risk_pvalues, sizes_iv, too_few_reason, where_iv
from .fwer import PROCEDURES, Order, check_strict, fwer_kernel, order_iv, resolve_order
from .pvalues import METHODS, PValueMethod, check_binary, counts_iv, min_n_for_zero_losses
from .splits import split_indices
from .typing import BoolArray, FloatArray, IntArray

__all__ = ["LTT_PROCEDURES", "RULES", "LTTProcedure", "LTTResult", "Rule", "learn_then_test"]

Rule = Literal["most_aggressive", "least_aggressive"]
RULES: Final[tuple[str, ...]] = ("most_aggressive", "least_aggressive")
LTTProcedure = Literal["bonferroni", "holm", "fixed_sequence", "fallback", "split_fixed_sequence"]
#: The FWER procedures of :mod:`ctd_stats.fwer` plus the split fixed sequence, which learns its
#: order on part of the rows and tests on the rest (it needs the rows, so only with ``losses``).
LTT_PROCEDURES: Final[tuple[str, ...]] = (*PROCEDURES, "split_fixed_sequence")


class _HashOnRead:
    """A ``calibration_sha256`` field given the data and hashed when first read, then cached.

    Hashing costs as much as a whole calibration on counts, and only serialisation reads it.
    Set with a hex digest (``from_json``) or with an array the result owns (not the caller's).
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    def __get__(self, obj: object, objtype: type | None = None) -> str:
        if obj is None:
            raise AttributeError(self._slot)  # no default for the dataclass field
        value: str | NDArray[Any] | tuple[NDArray[Any], ...] = obj.__dict__[self._slot]
        if isinstance(value, tuple):  # arrays hashed as one: concatenated when first read
            value = np.concatenate([a.ravel() for a in value])
        if not isinstance(value, str):
            value = array_sha256(value)
            obj.__dict__[self._slot] = value
        return value

    def __set__(self, obj: object, value: str | NDArray[Any] | tuple[NDArray[Any], ...]) -> None:
        obj.__dict__[self._slot] = value


@exact_eq
@dataclass(frozen=True, repr=False)
class LTTResult(JSONSerializable, kind="ctd_stats.LTTResult"):
    """Certified parameters of a Learn-then-Test calibration.

    Guarantee: with probability at least ``1 - delta`` over the calibration data, every grid
    point in ``certified`` has true risk ≤ ``alpha[r]`` for every risk r (LTT paper, Thm. 1).

    Attributes
    ----------
    found
        Whether at least one grid point was certified.
    certified
        Boolean mask over the grid.
    indices
        Certified grid indices, in the order the FWER procedure rejected them.
    pvalues
        Combined p-value per grid point (max over risks), shape (m,).
    risk_pvalues
        Per-risk p-values, shape (n_risks, m).
    order
        The testing order, most conservative grid point first; it defines *aggressiveness* for
        :meth:`select` (later in the order = more aggressive). ``None`` when a non-sequential
        procedure (Holm, Bonferroni) was run without an ``order``.
    alpha, delta, method, procedure, strict, n
        The settings used (``alpha`` has one entry per risk).
    calibration_sha256
        :func:`ctd_stats._serialize.array_sha256` of the float losses, or of the integer counts
        (given, or counted from boolean losses: they determine every p-value). Computed when
        first read (it costs as much as a whole calibration on counts) and then cached.
    reason
        Why nothing was certified (``None`` when found).
    min_n
        When nothing was certified: the smallest calibration size at which the most favourable
        outcome (no losses at all) would certify a point at this ``alpha`` / ``delta`` with this
        method and procedure; ``None`` when found or not computable (``wsr``). With one
        sample size per grid point: the n_j a single grid point needs.
    sample_sizes
        Per-risk, per-grid-point sample sizes n_j, shape (n_risks, m), when they vary (``n``
        given as an array, or ``where``); ``None`` when every grid point uses all ``n`` rows.
    n_opt
        Rows spent on learning the order (``"split_fixed_sequence"``; ``n`` rows were tested).
    """

    found: bool
    certified: BoolArray
    indices: IntArray
    pvalues: FloatArray
    risk_pvalues: FloatArray
    order: IntArray | None
    alpha: FloatArray
    delta: float
    method: str
    procedure: str
    strict: bool
    n: int
    calibration_sha256: _HashOnRead = _HashOnRead()
    reason: str | None = None
    min_n: int | None = None
    sample_sizes: IntArray | None = None
    n_opt: int = 0

    def select_index(self, rule: Rule = "most_aggressive") -> int | None:
        """The certified grid index chosen by ``rule``, or ``None`` if nothing was certified.

        ``"most_aggressive"`` is the certified point latest in :attr:`order` (for a fixed
        sequence, the last one rejected); ``"least_aggressive"`` the earliest. Every certified
        point carries the same guarantee, so the rule is a choice of utility, not of validity.
        """
        check_choice(rule, "rule", RULES)
        if not self.found:
            return None
        if self.order is None:
            raise ValueError(
                f"rule: procedure={self.procedure!r} was run without order=, so aggressiveness "
                "is undefined; pass order= to learn_then_test"
            )
        ranked = self.order[self.certified[self.order]]  # certified, in testing order
        return int(ranked[-1] if rule == "most_aggressive" else ranked[0])

    def select(self, grid: ArrayLike, *, rule: Rule = "most_aggressive") -> float | None:
        """``grid[select_index(rule)]``: the chosen threshold, or ``None`` if none certified.

        >>> import numpy as np
        >>> grid = np.linspace(0, 1, 11)
        >>> res = learn_then_test(counts=[500 - 50 * i for i in range(11)], n=500,
        ...                       alpha=0.3, delta=0.1, order="descending")
        >>> res.select(grid, rule="most_aggressive")
        0.8
        """
        g = as_float_array(grid, "grid", ndim=1, finite=False)
        if g.size != self.certified.size:
            raise ValueError(
                f"grid: expected {self.certified.size} values (one per grid point), got {g.size}"
            )
        index = self.select_index(rule)
        return None if index is None else float(g[index])

    def __repr__(self) -> str:
        head = f"found={self.found}, n_certified={self.indices.size}"
        lines: list[tuple[str, Any]] = []
        if not self.found:
            lines += [("reason", self.reason), ("min_n", self.min_n)]
        lines += [
            ("alpha", self.alpha if self.alpha.size > 1 else float(self.alpha[0])),
            ("delta", self.delta),
            ("n", self.n),
            ("sample_sizes", self.sample_sizes),
            ("n_opt", self.n_opt or None),
            ("method", self.method),
            ("procedure", self.procedure + (" (strict)" if self.strict else "")),
            ("indices", self.indices),
            ("certified", self.certified),
            ("pvalues", self.pvalues),
            ("order", self.order),
        ]
        return result_repr("LTTResult", head, lines)

    def _json_meta(self) -> dict[str, Any]:
        levels = ", ".join(repr(float(a)) for a in self.alpha)
        sizes = (
            ""
            if self.sample_sizes is None
            else " (conditional risks: each grid point's p-value uses its own sample size)"
        )
        split = (
            ""
            if self.n_opt == 0
            else f" (testing order learned on {self.n_opt} other calibration points)"
        )
        return {
            "guarantee": (
                f"Learn-then-Test: with probability at least 1 - {self.delta!r} over the "
                f"{self.n} calibration points{split}, every certified grid point has true risk "
                f"<= alpha = [{levels}] (one level per risk){sizes}, by {self.procedure} FWER "
                f"control of {self.method} p-values."
            ),
            "n": self.n,
            "calibration_sha256": self.calibration_sha256,
            "settings": {
                "alpha": [float(a) for a in self.alpha],
                "delta": self.delta,
                "method": self.method,
                "procedure": self.procedure,
                "strict": self.strict,
            },
        }


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
) -> LTTResult:
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

    Returns
    -------
    LTTResult
        ``sample_sizes`` holds the per-grid-point sizes when they vary (``n`` or ``where``).

    Raises
    ------
    ValueError
        A message starting with the argument's name: ``n`` of a shape that does not broadcast
        to ``counts``, a count above its n, ``where`` not boolean or of another shape than
        ``losses``, ``where`` with ``counts``, levels out of (0, 1), a missing ``order``.

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
    check_choice(method, "method", METHODS)
    check_choice(procedure, "procedure", LTT_PROCEDURES)
    delta = check_level(delta, "delta")
    # A plain float is the common case: skip the array round trip (same value either way).
    alphas = np.array([check_level(alpha, "alpha")]) if type(alpha) is float else None
    if alphas is None:
        alphas = check_levels(alpha, "alpha")
    strict = check_strict(strict)

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
        if isinstance(n, (bool, np.bool_, int, np.integer)):
            k, n_cal = counts_iv(counts, n, ndim=(1, 2))  # a bool n is rejected there
        else:
            k = as_int_array(counts, "counts", ndim=(1, 2), low=0)
            size_arr = sizes_iv(n, k)
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
        raise ValueError(f"order: must list every grid index once for procedure={procedure!r}")

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
    combined = risk_p[0] if risk_p.shape[0] == 1 else risk_p.max(axis=0)
    fw = fwer_kernel(combined, delta, "fixed_sequence" if split else procedure, idx, strict)
    found = bool(fw.indices.size)
    reason, min_n = (
        (None, None)
        if found
        else _why_none(combined, alphas, delta, method, procedure, idx, strict, n_cal, sizes)
    )
    return LTTResult(
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


def _first_level(delta: float, procedure: str, m: int, idx: IntArray | None) -> float:
    """Level at which the first hypothesis can be rejected: δ, or δ/m for the splitting ones."""
    if procedure in ("fixed_sequence", "split_fixed_sequence"):
        return delta
    if procedure == "fallback":
        assert idx is not None
        return delta / idx.size
    return delta / m


def _why_none(
    p: FloatArray,
    alphas: FloatArray,
    delta: float,
    method: str,
    procedure: str,
    idx: IntArray | None,
    strict: bool,
    n: int,
    sizes: IntArray | None = None,
) -> tuple[str, int | None]:
    """``reason`` and ``min_n`` of an empty certified set."""
    level = _first_level(delta, procedure, p.size, idx)
    needed = [min_n_for_zero_losses(float(a), level, method, strict=strict) for a in alphas]
    min_n = None if any(v is None for v in needed) else max(v for v in needed if v is not None)
    op = "<" if strict else "<="
    if sizes is not None and min_n is not None:
        short = too_few_reason(sizes, needed, alphas, delta, method, procedure, idx, op, level)
        if short is not None:
            return short, min_n
    elif min_n is not None and n < min_n:
        return (
            f"too few calibration points: even with no losses at all, n >= {min_n} is needed to "
            f"certify anything (n = {n}; {method} p-value {op} {level:.4g} under {procedure})",
            min_n,
        )
    if procedure in ("fixed_sequence", "split_fixed_sequence"):
        assert idx is not None
        first = int(idx[0])
        return (
            f"the first grid point tested (index {first}) has p-value {p[first]:.4g}, not "
            f"{op} delta = {delta:.4g}: its risk is not shown to be <= alpha, so testing stopped",
            min_n,
        )
    return (
        f"no p-value is small enough: the smallest is {p.min():.4g}, the first rejection "
        f"under {procedure} needs {op} {level:.4g}",
        min_n,
    )


def _check_risk_count(alphas: FloatArray, n_risks: int) -> None:
    if alphas.size != n_risks:
        raise ValueError(
            f"alpha: got {alphas.size} level(s) for {n_risks} risk(s); give one level per risk"
        )
