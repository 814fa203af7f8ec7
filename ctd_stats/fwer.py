"""Family-wise error rate (FWER) control over a grid of hypotheses.

Every procedure takes valid p-values p_1..p_m and a level δ and rejects a set of hypotheses such
that P(at least one true null is rejected) ≤ δ, whatever the dependence between the p-values
(all procedures here are valid under arbitrary dependence).

A NaN p-value is an error, never a silent stop. Fixed-sequence and fallback testing need an
ORDER, which is an explicit input (``"ascending"``/``"descending"`` grid order, or a sequence of
indices) and must never be chosen by looking at the same data the p-values come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._repr import result_repr
from ._validation import (
    as_float_array,
    as_int_array,
    check_choice,
    check_level,
    check_positive_int,
    plain,
)
from .typing import BoolArray, FloatArray, IntArray

__all__ = [
    "PROCEDURES",
    "FWERResult",
    "Order",
    "bonferroni",
    "fallback",
    "fixed_sequence",
    "fwer_control",
    "graphical",
    "holm",
    "resolve_order",
]

Procedure = Literal["bonferroni", "holm", "fixed_sequence", "fallback"]
PROCEDURES: Final[tuple[str, ...]] = ("bonferroni", "holm", "fixed_sequence", "fallback")
Order = Literal["ascending", "descending"] | Sequence[int] | IntArray


@dataclass(frozen=True)
class FWERResult:
    """Outcome of an FWER procedure.

    Attributes
    ----------
    rejected
        Boolean mask over the hypotheses, True where the null is rejected.
    indices
        Indices of the rejected hypotheses, in the order the procedure rejected them.
    procedure
        Name of the procedure.
    delta
        The FWER level: P(any true null rejected) ≤ delta.
    """

    rejected: BoolArray
    indices: IntArray
    procedure: str
    delta: float

    @property
    def n_rejected(self) -> int:
        return int(self.indices.size)

    @property
    def found(self) -> bool:
        """Whether at least one hypothesis was rejected."""
        return bool(self.indices.size)

    def __repr__(self) -> str:
        return result_repr(
            "FWERResult",
            f"found={self.found}, n_rejected={self.n_rejected}",
            [
                ("procedure", self.procedure),
                ("delta", self.delta),
                ("indices", self.indices),
                ("rejected", self.rejected),
            ],
        )


def _check_pvalues(pvalues: ArrayLike) -> FloatArray:
    return as_float_array(pvalues, "pvalues", ndim=1, low=0.0, high=1.0)


def resolve_order(order: Order, m: int) -> IntArray:
    """Turn ``"ascending"``, ``"descending"`` or an index sequence into distinct indices < m.

    An index sequence may cover only part of the grid: hypotheses left out are never tested.
    """
    if type(m) is not int or m < 0:
        m = check_positive_int(m, "m", minimum=0)
    if isinstance(order, str):
        check_choice(order, "order", ("ascending", "descending"))
        # One arange either way: the descending one is contiguous, as a reversed copy was.
        if order == "ascending":
            return np.arange(m, dtype=np.int64)
        return np.arange(m - 1, -1, -1, dtype=np.int64)
    idx = as_int_array(order, "order", ndim=1, low=0, high=m - 1)
    if np.unique(idx).size != idx.size:
        raise ValueError("order: indices must be distinct")
    return idx


def _result(
    mask: BoolArray, indices: Sequence[int] | IntArray, name: str, delta: float
) -> FWERResult:
    if not isinstance(indices, np.ndarray) or indices.dtype != np.int64:
        indices = np.asarray(indices, dtype=np.int64)
    # The fields set directly, as the frozen dataclass's __init__ would (it costs ~1 µs, as
    # much as a whole Holm run on 100 p-values).
    result = object.__new__(FWERResult)
    result.__dict__.update(rejected=mask, indices=indices, procedure=name, delta=delta)
    return result


# --------------------------------------------------------------------------- kernels
# Validated inputs only: p a 1-d float64 array in [0, 1], delta in (0, 1), idx from
# resolve_order. The public functions below and learn_then_test / pareto_test call these.
def _until_first(failed: BoolArray) -> int:
    """How many tests pass before the first failure (all of them when none fails)."""
    if failed.size == 0:
        return 0
    first = int(failed.argmax())  # 0 when none failed, too
    return first if failed[first] else failed.size


# One comparison rule for every procedure: reject H_j iff p_j ≤ its level, the level taken
# EXACTLY (δ/k as a rational, fallback and graphical weights as fractions), so no procedure
# ever rejects above its level and Bonferroni, Holm, fallback and graphical agree at the
# boundary. It runs at float speed: the float level is within a few ulps of the exact one,
# so only p-values within a relative ``_BAND`` of it are settled with exact fractions.
_BAND: Final = 1e-9  # relative; far above the round-off of every float level computed here
_CANCEL: Final = 1e-6  # graphical: a loop g_ij·g_ji this close to 1 is rerouted exactly


def _at_most(p: FloatArray, delta: float, k: int | IntArray) -> BoolArray:
    """p ≤ δ/k exactly, for float p ≥ 0 and integers k ≥ 1 (elementwise).

    fl(δ/k) is the float nearest δ/k, so no float lies strictly between them: a float p is
    below the rational iff it is below fl(δ/k), except when it equals it (ties: fractions).
    """
    level = delta / k
    ok: BoolArray = p <= level
    tie = p == level
    if np.count_nonzero(tie):  # cheaper than tie.any() on a short array
        ks = np.broadcast_to(k, p.shape)
        d = Fraction(delta)
        for i in np.flatnonzero(tie):
            ok[i] = Fraction(float(p[i])) * int(ks[i]) <= d
    return ok


def _near(p: float | FloatArray, level: float | FloatArray) -> BoolArray:
    """Where the float comparison p ≤ level could differ from the exact one."""
    return np.asarray(np.abs(p - level) <= _BAND * level)


def _fraction(w: float) -> Fraction:
    """A weight read as the simple fraction it rounds from (1/3 for 0.333…), else exactly."""
    exact = Fraction(w)
    simple = exact.limit_denominator(10**9)
    return simple if float(simple) == w else exact


def _fractions(values: FloatArray) -> list[Fraction]:
    """:func:`_fraction` of every value (converted once per distinct value), flattened."""
    distinct, inverse = np.unique(values, return_inverse=True)
    table = [_fraction(float(v)) for v in distinct]
    return [table[i] for i in inverse.ravel().tolist()]


def _sums_at_most_one(values: FloatArray) -> bool:
    """Every row sum of ``values`` (1-d: the sum) ≤ 1, the values read as :func:`_fraction`.

    Decided in float unless a sum lies within round-off of 1; then in exact fractions.
    """
    rows = np.atleast_2d(values)
    totals = rows.sum(axis=1)
    if np.any(totals > 1.0 + _BAND * rows.shape[1]):
        return False
    close = np.flatnonzero(np.abs(totals - 1.0) <= _BAND * rows.shape[1])
    if close.size == 0:
        return True
    distinct, inverse = np.unique(rows[close], return_inverse=True)
    table = [_fraction(float(v)) for v in distinct]
    inverse = inverse.reshape(close.size, -1)
    for row in inverse:  # Σ over distinct values of count × value, exactly
        counts = np.bincount(row, minlength=distinct.size)
        if sum(int(c) * table[i] for i, c in enumerate(counts.tolist()) if c) > 1:
            return False
    return True


def _bonferroni(p: FloatArray, delta: float) -> FWERResult:
    mask = _at_most(p, delta, p.size)
    return _result(mask, np.flatnonzero(mask), "bonferroni", delta)


def _holm(p: FloatArray, delta: float) -> FWERResult:
    m = p.size
    order = np.argsort(p, kind="stable")
    ok = _at_most(p[order], delta, np.arange(m, 0, -1))  # p_(i) ≤ δ/(m − i + 1)
    first = int(ok.argmin()) if m else 0  # the first failure; 0 when none failed, too
    n_rej = first if m and not ok[first] else m
    mask = np.zeros(m, dtype=bool)
    mask[order[:n_rej]] = True
    return _result(mask, order[:n_rej], "holm", delta)


def fixed_sequence_kernel(p: FloatArray, delta: float, idx: IntArray, strict: bool) -> FWERResult:
    failed = p[idx] >= delta if strict else p[idx] > delta
    n_rej = _until_first(failed)
    mask = np.zeros(p.size, dtype=bool)
    mask[idx[:n_rej]] = True
    return _result(mask, idx[:n_rej], "fixed_sequence", delta)


def _fallback(
    p: FloatArray, delta: float, idx: IntArray, w: FloatArray | None = None
) -> FWERResult:
    """Wiens' fallback (``w`` None: equal weights 1/len(idx)); levels exact near a p-value.

    H_(j) is tested at δ·(w_s + … + w_j), s the first of the current run of rejections.
    """
    mask = np.zeros(p.size, dtype=bool)
    rejected: list[int] = []
    pi = p[idx].tolist()
    weights = [1.0 / idx.size] * idx.size if w is None else w.tolist()
    run = 0.0  # Σ of the float weights of the current run
    start = 0
    for j, pj in enumerate(pi):
        run += weights[j]
        level = delta * run
        ok = level > 0 and pj <= level
        if level > 0 and _near(pj, level):
            exact = (
                Fraction(j - start + 1, idx.size)
                if w is None
                else sum((_fraction(v) for v in weights[start : j + 1]), Fraction(0))
            )
            ok = Fraction(pj) <= Fraction(delta) * exact
        if ok:
            mask[idx[j]] = True
            rejected.append(int(idx[j]))
        else:
            run, start = 0.0, j + 1
    return _result(mask, rejected, "fallback", delta)


def fwer_kernel(
    p: FloatArray, delta: float, procedure: str, idx: IntArray | None, strict: bool
) -> FWERResult:
    """Kernel of :func:`fwer_control`; ``idx`` is required for the sequential procedures."""
    if procedure == "bonferroni":
        return _bonferroni(p, delta)
    if procedure == "holm":
        return _holm(p, delta)
    assert idx is not None
    if procedure == "fixed_sequence":
        return fixed_sequence_kernel(p, delta, idx, strict)
    return _fallback(p, delta, idx)


def check_strict(strict: object) -> bool:
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict: expected a bool, got {type(strict).__name__}")
    return bool(strict)


# --------------------------------------------------------------------------- public
def bonferroni(pvalues: ArrayLike, *, delta: float) -> FWERResult:
    """Reject H_j when p_j ≤ δ/m."""
    return _bonferroni(_check_pvalues(pvalues), check_level(delta, "delta"))


def holm(pvalues: ArrayLike, *, delta: float) -> FWERResult:
    """Holm's step-down: sort p ascending, reject while p_(i) ≤ δ/(m − i + 1).

    Always rejects a superset of :func:`bonferroni`.
    """
    return _holm(_check_pvalues(pvalues), check_level(delta, "delta"))


def fixed_sequence(
    pvalues: ArrayLike, *, delta: float, order: Order, strict: bool = False
) -> FWERResult:
    """Fixed-sequence testing: test in ``order`` at level δ each, stop at the first failure.

    Rejects a prefix of ``order``. ``strict=True`` rejects only p < δ (the CTD reference code's
    rule); the default p ≤ δ is also valid and slightly more powerful.
    """
    p = _check_pvalues(pvalues)
    delta = check_level(delta, "delta")
    idx = resolve_order(order, p.size)
    return fixed_sequence_kernel(p, delta, idx, check_strict(strict))


def fallback(
    pvalues: ArrayLike, *, delta: float, order: Order, weights: ArrayLike | None = None
) -> FWERResult:
    """Wiens' fallback procedure along ``order`` with weights w (Σ w ≤ 1; default equal).

    H_(1) is tested at δw_1; H_(j) at δw_j plus the level of H_(j−1) if H_(j−1) was rejected.
    Unlike fixed-sequence testing it keeps testing after a failure.
    """
    p = _check_pvalues(pvalues)
    delta = check_level(delta, "delta")
    idx = resolve_order(order, p.size)
    if weights is None:
        return _fallback(p, delta, idx)
    w = as_float_array(weights, "weights", ndim=1, low=0.0)
    if w.size != idx.size:
        raise ValueError(f"weights: length {w.size} does not match order (length {idx.size})")
    if not _sums_at_most_one(w):
        raise ValueError(f"weights: must sum to at most 1, got {plain(w.sum())}")
    return _fallback(p, delta, idx, w)


def graphical(
    pvalues: ArrayLike, *, delta: float, weights: ArrayLike, transitions: ArrayLike
) -> FWERResult:
    """Graphical sequentially rejective procedure (Bretz et al. 2009).

    ``weights`` (m,) are initial level fractions with Σ ≤ 1; ``transitions`` (m, m) has zero
    diagonal and row sums ≤ 1: when H_j is rejected, a fraction g[j, i] of its level moves to H_i.
    Bonferroni-Holm, fixed-sequence and fallback are special cases. Weights and transitions
    are exact fractions (a float such as 1/3 is read as that fraction) and H_j is rejected iff
    p_j ≤ w_j·δ exactly: the same rule as :func:`bonferroni` and :func:`holm`, never above the
    level (no round-off tolerance). The graph is updated in float; a p-value within a relative
    1e-9 of its level is compared on the graph recomputed in fractions.
    """
    p = _check_pvalues(pvalues)
    delta = check_level(delta, "delta")
    m = p.size
    w = as_float_array(weights, "weights", ndim=1, low=0.0).copy()
    g = as_float_array(transitions, "transitions", ndim=2, low=0.0, high=1.0).copy()
    if w.size != m:
        raise ValueError(f"weights: length {w.size} does not match pvalues (length {m})")
    if g.shape != (m, m):
        raise ValueError(f"transitions: expected shape {(m, m)}, got {g.shape}")
    if not _sums_at_most_one(w):
        raise ValueError(f"weights: must sum to at most 1, got {plain(w.sum())}")
    if np.any(np.diag(g) != 0) or not _sums_at_most_one(g):
        raise ValueError("transitions: diagonal must be 0 and row sums at most 1")
    rejected = _graphical(p, delta, w, g)
    mask = np.zeros(m, dtype=bool)
    mask[rejected] = True
    return _result(mask, rejected, "graphical", delta)


class _ExactGraph:
    """The graph in exact fractions, brought up to date only when a comparison needs it."""

    def __init__(self, w: FloatArray, g: FloatArray) -> None:
        m = w.size
        self.w = _fractions(w)
        flat = _fractions(g)
        self.g = [flat[i * m : (i + 1) * m] for i in range(m)]
        self.done = 0  # how many rejections have been applied

    def catch_up(self, rejected: list[int]) -> None:
        m = len(self.w)
        for j in rejected[self.done :]:
            gone = set(rejected[: self.done + 1])
            live = [i for i in range(m) if i not in gone]
            for i in live:
                self.w[i] += self.w[j] * self.g[j][i]
            self.w[j] = Fraction(0)
            g_new = [[Fraction(0)] * m for _ in range(m)]
            for i in live:
                denom = 1 - self.g[i][j] * self.g[j][i]
                for k in live:
                    if i != k and denom > 0:
                        g_new[i][k] = (self.g[i][k] + self.g[i][j] * self.g[j][k]) / denom
            self.g = g_new
            self.done += 1


def _graphical(p: FloatArray, delta: float, w: FloatArray, g: FloatArray) -> list[int]:
    """Bretz et al. (2009), Alg. 1, in float with exact fractions near a decision.

    Rejects the first active H_i with p_i ≤ w_i·δ, passes its level on, reroutes the graph;
    a comparison within ``_BAND`` of the level, or a rerouting that divides by a loop
    1 − g_ij·g_ji close to 0, is done on the exact graph.
    """
    m = p.size
    w0, g0 = w, g
    w, g = w.copy(), g.copy()
    active = np.ones(m, dtype=bool)
    rejected: list[int] = []
    exact: _ExactGraph | None = None
    d = Fraction(delta)
    while True:
        level = w * delta
        live = active & (w > 0)
        ok = live & (p <= level)
        first = int(ok.argmax()) if ok.any() else m
        unsure = np.flatnonzero(live[: first + 1] & _near(p[: first + 1], level[: first + 1]))
        if unsure.size:
            exact = exact if exact is not None else _ExactGraph(w0, g0)
            exact.catch_up(rejected)
            for i in unsure.tolist():
                ok[i] = Fraction(float(p[i])) <= exact.w[i] * d
            first = int(ok.argmax()) if ok.any() else m
        if first == m:
            return rejected
        j = first
        rejected.append(j)
        active[j] = False
        loop = 1.0 - g[:, j] * g[j, :]  # 1 − g_ij·g_ji for every i
        if np.any(active & (loop < _CANCEL)):
            exact = exact if exact is not None else _ExactGraph(w0, g0)
            exact.catch_up(rejected)
            w = np.array([float(v) for v in exact.w])
            g = np.array([[float(v) for v in row] for row in exact.g])
            continue
        w[active] += w[j] * g[j, active]
        w[j] = 0.0
        with np.errstate(divide="ignore", invalid="ignore"):  # rows of rejected nodes
            rerouted = (g + np.outer(g[:, j], g[j, :])) / loop[:, None]
        rerouted[~active, :] = 0.0
        rerouted[:, ~active] = 0.0
        np.fill_diagonal(rerouted, 0.0)
        g = rerouted


def fwer_control(
    pvalues: ArrayLike,
    *,
    delta: float,
    procedure: Procedure = "fixed_sequence",
    order: Order | None = None,
    strict: bool = False,
) -> FWERResult:
    """Dispatch to one of :data:`PROCEDURES` (``order`` is required for the sequential ones)."""
    check_choice(procedure, "procedure", PROCEDURES)
    p = _check_pvalues(pvalues)
    delta = check_level(delta, "delta")
    strict = check_strict(strict)
    return fwer_kernel(p, delta, procedure, order_iv(order, procedure, p.size), strict)


def order_iv(order: Order | None, procedure: str, m: int) -> IntArray | None:
    """The resolved testing order: required for the sequential procedures, else optional."""
    if order is None:
        if procedure in ("fixed_sequence", "fallback"):
            raise ValueError(
                f"order: required for procedure={plain(procedure)} "
                "(give 'ascending', 'descending' or the testing order as indices)"
            )
        return None
    return resolve_order(order, m)
