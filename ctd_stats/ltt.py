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
from numpy.typing import ArrayLike

from ._repr import result_repr
from ._serialize import JSONSerializable, array_sha256
from ._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_float_array,
    as_int_array,
    check_choice,
    check_level,
    check_levels,
    check_positive_int,
)
from .fwer import PROCEDURES, Order, Procedure, _check_strict, _fwer, _order_iv
from .pvalues import METHODS, PValueMethod, _check_binary, _from_counts, _from_losses
from .pvalues import _min_n_for_zero_losses as _min_n

__all__ = ["RULES", "LTTResult", "Rule", "learn_then_test"]

Rule = Literal["most_aggressive", "least_aggressive"]
RULES: Final[tuple[str, ...]] = ("most_aggressive", "least_aggressive")


@dataclass(frozen=True, repr=False)
class LTTResult(JSONSerializable):
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
        (given, or counted from boolean losses: they determine every p-value).
    reason
        Why nothing was certified (``None`` when found).
    min_n
        When nothing was certified: the smallest calibration size at which the most favourable
        outcome (no losses at all) would certify a point at this ``alpha`` / ``delta`` with this
        method and procedure; ``None`` when found or not computable (``wsr``).
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
    calibration_sha256: str
    reason: str | None = None
    min_n: int | None = None

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
        return {
            "guarantee": (
                f"Learn-then-Test: with probability at least 1 - {self.delta!r} over the "
                f"{self.n} calibration points, every certified grid point has true risk <= "
                f"alpha = [{levels}] (one level per risk), by {self.procedure} FWER control of "
                f"{self.method} p-values."
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
    n: int | None = None,
    alpha: float | ArrayLike,
    delta: float,
    method: PValueMethod = "binomial",
    procedure: Procedure = "fixed_sequence",
    order: Order | None = None,
    strict: bool = False,
) -> LTTResult:
    """Certify grid points whose risk is at most ``alpha`` with probability ≥ 1 − ``delta``.

    Parameters
    ----------
    losses
        Loss matrix in [0, 1]: shape (n, m) for one risk, (n_risks, n, m) for several.
    counts, n
        Instead of ``losses`` for binary losses: integer loss counts of shape (m,) or
        (n_risks, m), and the number of calibration points ``n``.
    alpha
        Risk level(s), one per risk, each in (0, 1).
    delta
        FWER level in (0, 1).
    method
        p-value, one of :data:`ctd_stats.pvalues.METHODS` (``"wsr"`` needs ``losses``).
    procedure
        ``"fixed_sequence"`` (default), ``"holm"``, ``"bonferroni"`` or ``"fallback"``.
    order
        Testing order, most conservative first: ``"ascending"`` / ``"descending"`` grid order
        or explicit indices. Required for the sequential procedures (fixed sequence, fallback);
        it must be fixed before seeing the calibration data. Optional for Holm and Bonferroni,
        where it only defines aggressiveness for :meth:`LTTResult.select` (then it must list
        every grid index).
    strict
        Fixed-sequence only: reject p < δ instead of p ≤ δ.

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
    """
    check_choice(method, "method", METHODS)
    check_choice(procedure, "procedure", PROCEDURES)
    delta = check_level(delta, "delta")
    # A plain float is the common case: skip the array round trip (same value either way).
    alphas = np.array([check_level(alpha, "alpha")]) if type(alpha) is float else None
    if alphas is None:
        alphas = check_levels(alpha, "alpha")
    strict = _check_strict(strict)

    if (losses is None) == (counts is None):
        raise ValueError("losses: give exactly one of losses or counts (with n)")
    if losses is not None and n is not None:
        raise ValueError("n: only used with counts; losses already give n")
    sha: str | None = None
    if losses is not None and isinstance(losses, np.ndarray) and losses.dtype == np.bool_:
        # Boolean losses are binary by construction: count them once, without a float copy.
        if losses.ndim not in (2, 3) or 0 in losses.shape:
            raise ValueError(f"losses: expected a non-empty 2-d or 3-d array, got {losses.shape}")
        if method != "wsr":
            counts, n, losses = losses.sum(axis=-2), losses.shape[-2], None
            # Hash the counts (they determine the result): hashing the (n, m) matrix as float64
            # would cost more than the whole calibration.

    if losses is not None:
        x = as_float_array(losses, "losses", ndim=(2, 3), low=0.0, high=1.0)
        stacked = x if x.ndim == 3 else x[None]
        n_cal, m = stacked.shape[1], stacked.shape[2]
        if n_cal == 0 or m == 0:
            raise ValueError(f"losses: must not be empty, got shape {x.shape}")
        _check_risk_count(alphas, stacked.shape[0])
        _check_binary(x, method)
        sha = array_sha256(x)
    else:
        if n is None:
            raise ValueError("n: required with counts")
        if method == "wsr":
            raise ValueError("method: 'wsr' depends on the order of the losses; pass losses")
        n_cal = check_positive_int(n, "n")
        assert counts is not None  # exactly one of losses/counts was given
        k = as_int_array(counts, "counts", ndim=(1, 2), low=0, high=n_cal)
        stacked_k = k if k.ndim == 2 else k[None]
        m = stacked_k.shape[1]
        _check_risk_count(alphas, stacked_k.shape[0])
        if sha is None:
            sha = array_sha256(k)
    idx = _order_iv(order, procedure, m)
    if idx is not None and procedure in ("holm", "bonferroni") and idx.size != m:
        raise ValueError(f"order: must list every grid index once for procedure={procedure!r}")

    # Kernels only from here on: every input is validated.
    if losses is not None:
        per_risk = [_from_losses(stacked[r], float(a), method, delta) for r, a in enumerate(alphas)]
    else:
        per_risk = [
            _from_counts(stacked_k[r], n_cal, float(a), method) for r, a in enumerate(alphas)
        ]
    risk_p = per_risk[0][None] if len(per_risk) == 1 else np.stack(per_risk)
    combined = per_risk[0] if len(per_risk) == 1 else risk_p.max(axis=0)
    fw = _fwer(combined, delta, procedure, idx, strict)
    found = bool(fw.indices.size)
    reason, min_n = (
        (None, None)
        if found
        else _why_none(combined, alphas, delta, method, procedure, idx, strict, n_cal)
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
        calibration_sha256=str(sha),
        reason=reason,
        min_n=min_n,
    )


def _first_level(delta: float, procedure: str, m: int, idx: IntArray | None) -> float:
    """Level at which the first hypothesis can be rejected: δ, or δ/m for the splitting ones."""
    if procedure == "fixed_sequence":
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
) -> tuple[str, int | None]:
    """``reason`` and ``min_n`` of an empty certified set."""
    level = _first_level(delta, procedure, p.size, idx)
    needed = [_min_n(float(a), level, method, strict=strict) for a in alphas]
    min_n = None if any(v is None for v in needed) else max(v for v in needed if v is not None)
    op = "<" if strict else "<="
    if min_n is not None and n < min_n:
        return (
            f"too few calibration points: even with no losses at all, n >= {min_n} is needed to "
            f"certify anything (n = {n}; {method} p-value {op} {level:.4g} under {procedure})",
            min_n,
        )
    if procedure == "fixed_sequence":
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
