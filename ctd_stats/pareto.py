"""Pareto testing (Laufer-Goldshtein, Fisch, Barzilay, Jaakkola 2023), as CTD uses it.

The calibration set is split once into an *optimisation* part ("opt") and a *hypothesis-testing*
part ("ht"). On opt, each grid point gets an empirical control risk (e.g. the delegation budget)
and a performance risk (e.g. 1 − accuracy); the Pareto front of the two (both minimised) is
ordered from least to most aggressive and tested on ht by fixed-sequence testing of
H_j: control risk > α with the binomial p-value. Among the certified points the one with the
lowest opt performance risk is chosen.

Guarantee: the ordering uses only the opt split, which is independent of ht, so fixed-sequence
testing on ht is valid and, with probability ≥ 1 − δ, the chosen point has true control risk ≤ α.
If nothing is certified the result says so (``found=False``) — a legitimate outcome, e.g. "never
delegate" — not an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_float_array,
    check_level,
    check_positive_int,
)
from .fwer import Order, fixed_sequence, resolve_order
from .pvalues import PValueMethod, pvalues, pvalues_from_counts

__all__ = ["ParetoTestResult", "pareto_front", "pareto_test"]


def pareto_front(objectives: ArrayLike) -> BoolArray:
    """Mask of the Pareto-efficient rows of ``objectives`` (shape (m, k), all minimised).

    Row i is dropped iff some row j is ≤ in every column and < in at least one. Exact duplicates
    do not dominate each other, so all copies of an efficient point are kept. If nothing
    survives (impossible for finite inputs, kept as a safeguard) every row is kept.
    """
    obj = as_float_array(objectives, "objectives", ndim=2)
    le = np.all(obj[:, None, :] <= obj[None, :, :], axis=2)  # le[j, i]: j ≤ i everywhere
    lt = np.any(obj[:, None, :] < obj[None, :, :], axis=2)
    dominated = np.any(le & lt, axis=0)
    keep = ~dominated
    return keep if keep.any() else np.ones(obj.shape[0], dtype=bool)


@dataclass(frozen=True)
class ParetoTestResult:
    """Outcome of Pareto testing.

    Guarantee: with probability ≥ 1 − ``delta`` over the ht split, the chosen grid point (and
    every point in ``certified``) has true control risk ≤ ``alpha``.

    Attributes
    ----------
    found
        Whether any grid point was certified.
    index
        The chosen grid index (lowest opt performance risk among the certified, ties going to the
        earliest in the testing order, i.e. the least aggressive); ``None`` when not found.
    front
        Grid indices of the Pareto front, in testing order (least aggressive first).
    certified
        Boolean mask over the grid of the points certified on ht.
    pvalues
        ht p-values for every grid point (only those on the front were tested).
    opt_control, opt_performance
        The opt-split risks used to build the front.
    alpha, delta, n_ht, method
        The settings used.
    """

    found: bool
    index: int | None
    front: IntArray
    certified: BoolArray
    pvalues: FloatArray
    opt_control: FloatArray
    opt_performance: FloatArray
    alpha: float
    delta: float
    n_ht: int
    method: str


def pareto_test(
    *,
    opt_control: ArrayLike,
    opt_performance: ArrayLike,
    ht_losses: ArrayLike | None = None,
    ht_counts: ArrayLike | None = None,
    n_ht: int | None = None,
    alpha: float,
    delta: float,
    order: Order,
    method: PValueMethod = "binomial",
    strict: bool = False,
) -> ParetoTestResult:
    """Pareto testing of a control risk at level ``alpha`` (FWER ``delta``).

    Parameters
    ----------
    opt_control, opt_performance
        Per grid point, the empirical control risk and performance risk on the opt split (m,).
    ht_losses
        Control losses on the ht split, shape (n_ht, m), or instead ``ht_counts`` (m,) integer
        counts with ``n_ht`` (binary losses).
    order
        Grid order from least to most aggressive (``"ascending"``, ``"descending"`` or indices);
        the front is tested in this order. For CTD with "delegate iff d > τ" on an increasing
        grid this is ``"descending"`` (largest τ first).
    method
        p-value for H0: control risk > α (default exact binomial).
    strict
        Reject only p < δ (the CTD reference code's rule) instead of p ≤ δ.
    """
    alpha = check_level(alpha, "alpha")
    delta = check_level(delta, "delta")
    control = as_float_array(opt_control, "opt_control", ndim=1)
    performance = as_float_array(opt_performance, "opt_performance", ndim=1)
    m = control.size
    if performance.size != m:
        raise ValueError(
            f"opt_performance: length {performance.size} does not match opt_control (length {m})"
        )
    if (ht_losses is None) == (ht_counts is None):
        raise ValueError("ht_losses: give exactly one of ht_losses or ht_counts (with n_ht)")
    if ht_losses is not None:
        x = as_float_array(ht_losses, "ht_losses", ndim=2, low=0.0, high=1.0)
        if x.shape[1] != m:
            raise ValueError(f"ht_losses: expected {m} columns (grid size), got shape {x.shape}")
        n_test = x.shape[0]
        p = pvalues(x, alpha, method=method, delta=delta)
    else:
        if n_ht is None:
            raise ValueError("n_ht: required with ht_counts")
        n_test = check_positive_int(n_ht, "n_ht")
        counts = np.asarray(ht_counts)
        if counts.shape != (m,):
            raise ValueError(f"ht_counts: expected shape {(m,)}, got {counts.shape}")
        p = pvalues_from_counts(counts, n_test, alpha, method=method)

    grid_order = resolve_order(order, m)
    if grid_order.size != m:
        raise ValueError("order: must list every grid index once for Pareto testing")
    on_front = pareto_front(np.column_stack([control, performance]))
    front = grid_order[on_front[grid_order]]
    tested = fixed_sequence(p, delta, order=front, strict=strict)
    if tested.n_rejected == 0:
        index = None
    else:
        # argmin returns the first minimum, i.e. the least aggressive among ties.
        index = int(tested.indices[np.argmin(performance[tested.indices])])
    return ParetoTestResult(
        found=index is not None,
        index=index,
        front=front,
        certified=tested.rejected,
        pvalues=p,
        opt_control=control,
        opt_performance=performance,
        alpha=alpha,
        delta=delta,
        n_ht=n_test,
        method=method,
    )
