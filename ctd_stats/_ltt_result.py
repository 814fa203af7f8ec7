"""The result of :func:`ctd_stats.ltt.learn_then_test` and the reason it gives when empty.

Split out of :mod:`ctd_stats.ltt` (which re-exports :class:`LTTResult`, the selection rules and
:func:`first_level`): the certified set, its selection rules, its exact JSON, and why nothing was
certified, with the smallest calibration size that could have certified something (``min_n``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._repr import result_repr
from ._serialize import JSONSerializable, array_sha256, exact_eq
from ._validation import as_float_array, check_choice
from .conditional_pvalues import too_few_reason
from .pvalues import min_n_for_zero_losses
from .typing import BoolArray, FloatArray, IntArray

__all__ = ["RULES", "LTTResult", "Rule", "first_level", "new_result", "why_none"]

Rule = Literal["most_aggressive", "least_aggressive"]
RULES: Final[tuple[str, ...]] = ("most_aggressive", "least_aggressive")


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
        >>> from ctd_stats import learn_then_test
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


def first_level(delta: float, procedure: str, m: int, idx: IntArray | None) -> float:
    """Level at which the first hypothesis can be rejected: δ, or δ/m for the splitting ones.

    Shared with :mod:`ctd_stats.grouped` (import it from :mod:`ctd_stats.ltt`).
    """
    if procedure in ("fixed_sequence", "split_fixed_sequence"):
        return delta
    if procedure == "fallback":
        assert idx is not None
        return delta / idx.size
    return delta / m


def new_result(
    *,
    found: bool,
    certified: BoolArray,
    indices: IntArray,
    pvalues: FloatArray,
    risk_pvalues: FloatArray,
    order: IntArray | None,
    alpha: FloatArray,
    delta: float,
    method: str,
    procedure: str,
    strict: bool,
    n: int,
    calibration_sha256: str | NDArray[Any] | tuple[NDArray[Any], ...],
    reason: str | None,
    min_n: int | None,
    sample_sizes: IntArray | None,
    n_opt: int,
) -> LTTResult:
    """``LTTResult(...)`` with every field given, for validated fields (learn_then_test).

    The fields are set as the frozen dataclass's ``__init__`` sets them (in field order,
    ``calibration_sha256`` in its descriptor's slot), at a tenth of its ~2 µs: as much as the
    FWER step of a 100-point grid.
    """
    result = object.__new__(LTTResult)
    result.__dict__.update(
        found=found,
        certified=certified,
        indices=indices,
        pvalues=pvalues,
        risk_pvalues=risk_pvalues,
        order=order,
        alpha=alpha,
        delta=delta,
        method=method,
        procedure=procedure,
        strict=strict,
        n=n,
        _calibration_sha256=calibration_sha256,
        reason=reason,
        min_n=min_n,
        sample_sizes=sample_sizes,
        n_opt=n_opt,
    )
    return result


def why_none(
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
    level = first_level(delta, procedure, p.size, idx)
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
