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
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._repr import result_repr
from ._serialize import JSONSerializable, array_sha256, exact_eq
from ._validation import as_float_array, check_choice, check_level
from .fwer import FWERResult, Order, check_strict, fixed_sequence_kernel, resolve_order
from .pvalues import (
    METHODS,
    PValueMethod,
    counts_iv,
    from_counts,
    from_losses,
    losses_iv,
    min_n_for_zero_losses,
)
from .typing import BoolArray, FloatArray, IntArray

__all__ = ["ParetoTestResult", "pareto_front", "pareto_test"]


def pareto_front(objectives: ArrayLike) -> BoolArray:
    """Mask of the Pareto-efficient rows of ``objectives`` (shape (m, k), all minimised).

    Row i is dropped iff some row j is ≤ in every column and < in at least one. Exact duplicates
    do not dominate each other, so all copies of an efficient point are kept. If nothing
    survives (impossible for finite inputs, kept as a safeguard) every row is kept.
    """
    return _pareto_front(as_float_array(objectives, "objectives", ndim=2))


def _pareto_front(obj: FloatArray) -> BoolArray:
    le = np.all(obj[:, None, :] <= obj[None, :, :], axis=2)  # le[j, i]: j ≤ i everywhere
    lt = np.any(obj[:, None, :] < obj[None, :, :], axis=2)
    dominated = np.any(le & lt, axis=0)
    keep = ~dominated
    return keep if keep.any() else np.ones(obj.shape[0], dtype=bool)


@exact_eq
@dataclass(frozen=True, repr=False)
class ParetoTestResult(JSONSerializable, kind="ctd_stats.ParetoTestResult"):
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
    alpha, delta, n_ht, method, strict
        The settings used.
    calibration_sha256
        :func:`ctd_stats._serialize.array_sha256` of the ht losses or counts given.
    reason
        Why nothing was certified (``None`` when found).
    min_n
        When nothing was certified: the smallest ht size at which the most favourable outcome
        (no ht losses) would certify the first point of the front; ``None`` when found or not
        computable (``wsr``).
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
    strict: bool
    calibration_sha256: str
    reason: str | None = None
    min_n: int | None = None

    def __repr__(self) -> str:
        head = f"found={self.found}, index={self.index}"
        lines: list[tuple[str, Any]] = []
        if not self.found:
            lines += [("reason", self.reason), ("min_n", self.min_n)]
        lines += [
            ("alpha", self.alpha),
            ("delta", self.delta),
            ("n_ht", self.n_ht),
            ("method", self.method + (" (strict)" if self.strict else "")),
            ("front", self.front),
            ("certified", self.certified),
            ("pvalues", self.pvalues),
        ]
        return result_repr("ParetoTestResult", head, lines)

    def _json_meta(self) -> dict[str, Any]:
        return {
            "guarantee": (
                f"Pareto testing: with probability at least 1 - {self.delta!r} over the "
                f"{self.n_ht} hypothesis-testing points, the chosen grid point (and every "
                f"certified one) has true control risk <= alpha = {self.alpha!r} (fixed-sequence "
                f"testing of {self.method} p-values along the opt-split Pareto front)."
            ),
            "n": self.n_ht,
            "calibration_sha256": self.calibration_sha256,
            "settings": {
                "alpha": self.alpha,
                "delta": self.delta,
                "method": self.method,
                "strict": self.strict,
            },
        }


def fixed_sequence_on_front(
    p: FloatArray, front: IntArray, performance: FloatArray, delta: float, strict: bool
) -> tuple[FWERResult, int | None]:
    """Fixed-sequence testing along the front; the certified point of lowest opt performance
    risk (``None`` when none is certified). argmin takes the first minimum: among ties the least
    aggressive point (Laufer-Goldshtein et al. 2023, Alg. 1)."""
    tested = fixed_sequence_kernel(p, delta, front, strict)
    if tested.n_rejected == 0:
        return tested, None
    return tested, int(tested.indices[np.argmin(performance[tested.indices])])


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
    check_choice(method, "method", METHODS)
    alpha = check_level(alpha, "alpha")
    delta = check_level(delta, "delta")
    strict = check_strict(strict)
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
        if n_ht is not None:
            raise ValueError("n_ht: only used with ht_counts; ht_losses already give n_ht")
        x = losses_iv(ht_losses, method)
        if x.ndim != 2 or x.shape[1] != m:
            raise ValueError(f"ht_losses: expected {m} columns (grid size), got shape {x.shape}")
        n_test, sha = x.shape[0], array_sha256(x)
    else:
        assert ht_counts is not None  # exactly one of ht_losses / ht_counts was given
        if n_ht is None:
            raise ValueError("n_ht: required with ht_counts")
        if method == "wsr":
            raise ValueError("method: 'wsr' depends on the order of the losses; pass ht_losses")
        counts, n_test = counts_iv(ht_counts, n_ht, ndim=1, names=("ht_counts", "n_ht"))
        if counts.shape != (m,):
            raise ValueError(f"ht_counts: expected shape {(m,)}, got {counts.shape}")
        sha = array_sha256(counts)
    grid_order = resolve_order(order, m)
    if grid_order.size != m:
        raise ValueError("order: must list every grid index once for Pareto testing")

    # Kernels only from here on.
    if ht_losses is not None:
        p = from_losses(x, alpha, method, delta)
    else:
        p = from_counts(counts, n_test, alpha, method)
    on_front = _pareto_front(np.column_stack([control, performance]))
    front = grid_order[on_front[grid_order]]
    tested, index = fixed_sequence_on_front(p, front, performance, delta, strict)
    reason: str | None = None
    min_n: int | None = None
    if index is None:
        min_n = min_n_for_zero_losses(alpha, delta, method, strict=strict)
        op = "<" if strict else "<="
        if min_n is not None and n_test < min_n:
            reason = (
                "too few hypothesis-testing points: even with no losses at all, "
                f"n_ht >= {min_n} is needed to certify anything "
                f"(n_ht = {n_test}; {method} p-value {op} {delta:.4g})"
            )
        else:
            first = int(front[0])
            reason = (
                f"the least aggressive point of the Pareto front (index {first}) has ht p-value "
                f"{p[first]:.4g}, not {op} delta = {delta:.4g}: its control risk is not shown to "
                "be <= alpha, so testing stopped"
            )
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
        strict=strict,
        calibration_sha256=sha,
        reason=reason,
        min_n=min_n,
    )
