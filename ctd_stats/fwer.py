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
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._repr import result_repr
from ._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_float_array,
    as_int_array,
    check_choice,
    check_level,
)

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
    if isinstance(order, str):
        check_choice(order, "order", ("ascending", "descending"))
        idx = np.arange(m, dtype=np.int64)
        return idx if order == "ascending" else idx[::-1].copy()
    idx = as_int_array(order, "order", ndim=1, low=0, high=m - 1)
    if np.unique(idx).size != idx.size:
        raise ValueError("order: indices must be distinct")
    return idx


def _result(
    mask: BoolArray, indices: Sequence[int] | IntArray, name: str, delta: float
) -> FWERResult:
    return FWERResult(
        rejected=mask, indices=np.asarray(indices, dtype=np.int64), procedure=name, delta=delta
    )


# --------------------------------------------------------------------------- kernels
# Validated inputs only: p a 1-d float64 array in [0, 1], delta in (0, 1), idx from
# resolve_order. The public functions below and learn_then_test / pareto_test call these.
def _bonferroni(p: FloatArray, delta: float) -> FWERResult:
    mask = p <= delta / p.size
    return _result(mask, np.flatnonzero(mask), "bonferroni", delta)


def _holm(p: FloatArray, delta: float) -> FWERResult:
    m = p.size
    order = np.argsort(p, kind="stable")
    levels = delta / (m - np.arange(m))
    fails = np.flatnonzero(p[order] > levels)
    n_rej = int(fails[0]) if fails.size else m
    mask = np.zeros(m, dtype=bool)
    mask[order[:n_rej]] = True
    return _result(mask, order[:n_rej], "holm", delta)


def _fixed_sequence(p: FloatArray, delta: float, idx: IntArray, strict: bool) -> FWERResult:
    passed = p[idx] < delta if strict else p[idx] <= delta
    fails = np.flatnonzero(~passed)
    n_rej = int(fails[0]) if fails.size else idx.size
    mask = np.zeros(p.size, dtype=bool)
    mask[idx[:n_rej]] = True
    return _result(mask, idx[:n_rej], "fixed_sequence", delta)


def _fallback(p: FloatArray, delta: float, idx: IntArray, w: FloatArray) -> FWERResult:
    mask = np.zeros(p.size, dtype=bool)
    rejected: list[int] = []
    carried = 0.0
    for j, h in enumerate(idx):
        level = delta * w[j] + carried
        if level > 0 and p[h] <= level:
            mask[h] = True
            rejected.append(int(h))
            carried = level
        else:
            carried = 0.0
    return _result(mask, rejected, "fallback", delta)


def _fwer(
    p: FloatArray, delta: float, procedure: str, idx: IntArray | None, strict: bool
) -> FWERResult:
    """Kernel of :func:`fwer_control`; ``idx`` is required for the sequential procedures."""
    if procedure == "bonferroni":
        return _bonferroni(p, delta)
    if procedure == "holm":
        return _holm(p, delta)
    assert idx is not None
    if procedure == "fixed_sequence":
        return _fixed_sequence(p, delta, idx, strict)
    return _fallback(p, delta, idx, np.full(idx.size, 1.0 / idx.size))


def _check_strict(strict: object) -> bool:
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict: expected a bool, got {type(strict).__name__}")
    return bool(strict)


# --------------------------------------------------------------------------- public
def bonferroni(pvalues: ArrayLike, delta: float) -> FWERResult:
    """Reject H_j when p_j ≤ δ/m."""
    return _bonferroni(_check_pvalues(pvalues), check_level(delta, "delta"))


def holm(pvalues: ArrayLike, delta: float) -> FWERResult:
    """Holm's step-down: sort p ascending, reject while p_(i) ≤ δ/(m − i + 1).

    Always rejects a superset of :func:`bonferroni`.
    """
    return _holm(_check_pvalues(pvalues), check_level(delta, "delta"))


def fixed_sequence(
    pvalues: ArrayLike, delta: float, *, order: Order, strict: bool = False
) -> FWERResult:
    """Fixed-sequence testing: test in ``order`` at level δ each, stop at the first failure.

    Rejects a prefix of ``order``. ``strict=True`` rejects only p < δ (the CTD reference code's
    rule); the default p ≤ δ is also valid and slightly more powerful.
    """
    p = _check_pvalues(pvalues)
    delta = check_level(delta, "delta")
    idx = resolve_order(order, p.size)
    return _fixed_sequence(p, delta, idx, _check_strict(strict))


def fallback(
    pvalues: ArrayLike, delta: float, *, order: Order, weights: ArrayLike | None = None
) -> FWERResult:
    """Wiens' fallback procedure along ``order`` with weights w (Σ w ≤ 1; default equal).

    H_(1) is tested at δw_1; H_(j) at δw_j plus the level of H_(j−1) if H_(j−1) was rejected.
    Unlike fixed-sequence testing it keeps testing after a failure.
    """
    p = _check_pvalues(pvalues)
    delta = check_level(delta, "delta")
    idx = resolve_order(order, p.size)
    if weights is None:
        w = np.full(idx.size, 1.0 / idx.size)
    else:
        w = as_float_array(weights, "weights", ndim=1, low=0.0)
        if w.size != idx.size:
            raise ValueError(f"weights: length {w.size} does not match order (length {idx.size})")
        if w.sum() > 1 + 1e-12:
            raise ValueError(f"weights: must sum to at most 1, got {w.sum()!r}")
    return _fallback(p, delta, idx, w)


def graphical(
    pvalues: ArrayLike, delta: float, *, weights: ArrayLike, transitions: ArrayLike
) -> FWERResult:
    """Graphical sequentially rejective procedure (Bretz et al. 2009).

    ``weights`` (m,) are initial level fractions with Σ ≤ 1; ``transitions`` (m, m) has zero
    diagonal and row sums ≤ 1: when H_j is rejected, a fraction g[j, i] of its level moves to H_i.
    Bonferroni-Holm, fixed-sequence and fallback are special cases.
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
    if w.sum() > 1 + 1e-12:
        raise ValueError(f"weights: must sum to at most 1, got {w.sum()!r}")
    if np.any(np.diag(g) != 0) or np.any(g.sum(axis=1) > 1 + 1e-12):
        raise ValueError("transitions: diagonal must be 0 and row sums at most 1")
    active = np.ones(m, dtype=bool)
    rejected: list[int] = []
    while True:
        # The relative 1e-12 absorbs round-off in the weight updates (weights that should sum
        # to exactly 1 after many reroutings); it is far below any p-value's resolution.
        candidates = np.flatnonzero(active & (w > 0) & (p <= w * delta * (1 + 1e-12)))
        if candidates.size == 0:
            break
        j = int(candidates[0])
        rejected.append(j)
        active[j] = False
        # Pass j's level on, then reroute the edges that went through j (Bretz et al. Alg. 1).
        w[active] += w[j] * g[j, active]
        w[j] = 0.0
        g_new = np.zeros_like(g)
        for i in np.flatnonzero(active):
            denom = 1.0 - g[i, j] * g[j, i]
            for k in np.flatnonzero(active):
                if i != k and denom > 0:
                    g_new[i, k] = (g[i, k] + g[i, j] * g[j, k]) / denom
        g = g_new
    mask = np.zeros(m, dtype=bool)
    mask[rejected] = True
    return _result(mask, rejected, "graphical", delta)


def fwer_control(
    pvalues: ArrayLike,
    delta: float,
    *,
    procedure: Procedure = "fixed_sequence",
    order: Order | None = None,
    strict: bool = False,
) -> FWERResult:
    """Dispatch to one of :data:`PROCEDURES` (``order`` is required for the sequential ones)."""
    check_choice(procedure, "procedure", PROCEDURES)
    p = _check_pvalues(pvalues)
    delta = check_level(delta, "delta")
    strict = _check_strict(strict)
    return _fwer(p, delta, procedure, _order_iv(order, procedure, p.size), strict)


def _order_iv(order: Order | None, procedure: str, m: int) -> IntArray | None:
    """The resolved testing order: required for the sequential procedures, else optional."""
    if order is None:
        if procedure in ("fixed_sequence", "fallback"):
            raise ValueError(
                f"order: required for procedure={procedure!r} "
                "(give 'ascending', 'descending' or the testing order as indices)"
            )
        return None
    return resolve_order(order, m)
