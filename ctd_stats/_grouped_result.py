"""The result of grouped Learn-then-Test and the reasons it gives (see :mod:`ctd_stats.grouped`).

Split out of :mod:`ctd_stats.grouped` (which re-exports :class:`GroupedLTTResult`): the certified
sets per group, their selection rules, the stated guarantee per mode, and why a group (or the
shared threshold) certified nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

from ._ltt_result import RULES, Rule
from ._repr import result_repr
from ._serialize import JSONSerializable, exact_eq
from ._validation import as_float_array, check_choice, plain
from .typing import BoolArray, FloatArray, IntArray

__all__ = ["GroupLabel", "GroupedLTTResult", "Reasons"]

GroupLabel = int | str
_CORRECTION_TEXT: Final[dict[str, str]] = {
    "bonferroni": "Bonferroni delta/G",
    "sidak": "Sidak 1 - (1 - delta)^(1/G): disjoint independent groups, given the group sizes",
}


def group_position(groups: Sequence[GroupLabel], group: object) -> int:
    """Position of ``group`` in the calibrated ``groups``; ``ValueError`` naming ``group``.

    A label matches only a label of its own kind (``1`` never matches ``"1"``); a numpy integer
    matches a Python integer.
    """
    for i, g in enumerate(groups):
        same_kind = type(g) is type(group) or (isinstance(group, np.integer) and isinstance(g, int))
        if same_kind and g == group:
            return i
    raise ValueError(f"group: {plain(group)} is not one of the calibrated groups {tuple(groups)}")


@exact_eq
@dataclass(frozen=True, repr=False)
class GroupedLTTResult(JSONSerializable, kind="ctd_stats.GroupedLTTResult"):
    """Certified grid points per group (or one shared set) of a grouped Learn-then-Test.

    Attributes
    ----------
    groups
        The group labels, in the result's group order (every per-group array follows it).
    mode, correction
        ``"per_group"``, ``"simultaneous"`` (with ``correction`` ``"bonferroni"`` or
        ``"sidak"``) or ``"shared"``; ``correction`` is ``None`` outside simultaneous.
    found, certified, indices
        Per group: anything certified, the mask over the grid (G, m), the certified indices
        in rejection order. In shared mode every group holds the shared set.
    pvalues
        Per-group binomial (or ``method``) p-values, shape (G, m), at each group's cap.
    alpha, delta, group_delta
        Caps (G,), the overall δ and the level each group was tested at (δ, δ/G or Šidák;
        δ in shared mode).
    n, sample_sizes
        Rows per group (G,); per grid point sizes (G, m) when given, else ``None``.
    min_n
        Per group, the smallest size at which zero losses would certify a point at its cap
        and level (−1 when not computable: ``wsr``).
    reason
        Per group, why nothing was certified (``None`` where found).
    overall_alpha, shared_pvalues, overall_pvalues
        Shared mode: the overall budget (``None``: caps only), the intersection–union p-value
        max(p_all, max_g p_g) (m,), and p_all (m,) (``None`` without an overall budget).
    """

    groups: tuple[GroupLabel, ...]
    mode: str
    correction: str | None
    found: BoolArray
    certified: BoolArray
    indices: tuple[IntArray, ...]
    pvalues: FloatArray
    alpha: FloatArray
    delta: float
    group_delta: float
    method: str
    procedure: str
    strict: bool
    order: IntArray | None
    n: IntArray
    min_n: IntArray
    reason: tuple[str | None, ...]
    calibration_sha256: str
    sample_sizes: IntArray | None = None
    overall_alpha: float | None = None
    shared_pvalues: FloatArray | None = None
    overall_pvalues: FloatArray | None = None

    def group_index(self, group: GroupLabel | np.integer[Any]) -> int:
        """Position of ``group`` in :attr:`groups`; ``ValueError`` naming ``group`` if unknown."""
        return group_position(self.groups, group)

    def select_index(
        self, group: GroupLabel | None = None, *, rule: Rule = "most_aggressive"
    ) -> int | None:
        """The certified grid index of ``group`` chosen by ``rule`` (``None``: none certified).

        In shared mode ``group`` may be omitted (every group has the shared set).
        """
        check_choice(rule, "rule", RULES)
        if group is None:
            if self.mode != "shared":
                raise ValueError(f"group: required with mode={self.mode!r} (one set per group)")
            i = 0
        else:
            i = self.group_index(group)
        if not self.found[i]:
            return None
        if self.order is None:
            raise ValueError(
                f"rule: procedure={self.procedure!r} was run without order=, so aggressiveness "
                "is undefined; pass order="
            )
        ranked = self.order[self.certified[i][self.order]]
        return int(ranked[-1] if rule == "most_aggressive" else ranked[0])

    def select(
        self, grid: ArrayLike, *, group: GroupLabel | None = None, rule: Rule = "most_aggressive"
    ) -> float | None:
        """``grid[select_index(group, rule=rule)]``, or ``None`` if nothing was certified."""
        g = as_float_array(grid, "grid", ndim=1, finite=False)
        if g.size != self.certified.shape[1]:
            raise ValueError(
                f"grid: expected {self.certified.shape[1]} values (one per grid point), "
                f"got {g.size}"
            )
        index = self.select_index(group, rule=rule)
        return None if index is None else float(g[index])

    def thresholds(
        self, grid: ArrayLike, *, rule: Rule = "most_aggressive"
    ) -> dict[GroupLabel, float | None]:
        """``{group: select(grid, group=group, rule=rule)}`` for every group."""
        return {g: self.select(grid, group=g, rule=rule) for g in self.groups}

    def __repr__(self) -> str:
        shared = self.mode == "shared"
        head = f"mode={self.mode!r}, groups={len(self.groups)}, " + (
            f"found={bool(self.found[0])}, n_certified={self.indices[0].size}"
            if shared
            else f"found={int(self.found.sum())}/{len(self.groups)}"
        )
        lines: list[tuple[str, Any]] = []
        if not self.found.all():
            first = int(np.argmin(self.found))
            lines.append(("reason", self.reason[first]))
        lines += [
            ("groups", self.groups),
            ("n", self.n),
            ("min_n", self.min_n),
            ("alpha", self.alpha),
            ("overall_alpha", self.overall_alpha),
            ("delta", self.delta),
            ("group_delta", None if shared else self.group_delta),
            ("correction", self.correction),
            ("method", self.method),
            ("procedure", self.procedure + (" (strict)" if self.strict else "")),
            ("found", None if shared else self.found),
            ("n_certified", np.array([i.size for i in self.indices])),
        ]
        return result_repr(self, head, lines)

    def _json_meta(self) -> dict[str, Any]:
        caps = ", ".join(
            f"{g!r}: {float(a)!r}" for g, a in zip(self.groups, self.alpha, strict=True)
        )
        common = f"{self.procedure} FWER control of {self.method} p-values"
        if self.mode == "per_group":
            text = (
                f"Per group (Mondrian Learn-then-Test): for EACH group g separately, with "
                f"probability at least 1 - {self.delta!r} over that group's calibration rows, "
                f"every grid point certified for g has group risk <= its cap ({{{caps}}}), by "
                f"{common} on the group's rows alone. Not simultaneous over groups."
            )
        elif self.mode == "simultaneous":
            text = (
                f"Simultaneous over groups: with probability at least 1 - {self.delta!r}, for "
                f"every group g at once, every grid point certified for g has group risk <= its "
                f"cap ({{{caps}}}); each group tested at {self.group_delta!r} "
                f"({_CORRECTION_TEXT[str(self.correction)]}), by {common}."
            )
        else:
            overall = "" if self.overall_alpha is None else f"<= {self.overall_alpha!r} and "
            text = (
                f"One shared threshold (intersection-union): with probability at least "
                f"1 - {self.delta!r}, every certified grid point has overall risk {overall}"
                f"every group's risk <= its cap ({{{caps}}}), by {common} of "
                "max(p_overall, max_g p_g), no correction."
            )
        return {
            "guarantee": text,
            "n": int(self.n.sum()),
            "calibration_sha256": self.calibration_sha256,
            "settings": {
                "mode": self.mode,
                "groups": list(self.groups),
                "alpha": [float(a) for a in self.alpha],
                "overall_alpha": self.overall_alpha,
                "delta": self.delta,
                "group_delta": self.group_delta,
                "correction": self.correction,
                "method": self.method,
                "procedure": self.procedure,
                "strict": self.strict,
            },
        }


@dataclass(frozen=True)
class Reasons:
    """Reasons for an empty certified set, per group or for the shared threshold."""

    labels: tuple[GroupLabel, ...]
    caps: FloatArray
    level: float
    first: float
    method: str
    procedure: str
    idx: IntArray | None
    strict: bool

    def _rule(self) -> str:
        op = "<" if self.strict else "<="
        return f"{self.method} p-value {op} {self.first:.4g} under {self.procedure}"

    def group(self, g: int, p: FloatArray, min_n: int, n: int) -> str:
        name = f"group {self.labels[g]!r} (alpha = {float(self.caps[g]):.4g})"
        if 0 <= n < min_n:
            return (
                f"{name}: too few calibration points: even with no losses at all, n >= {min_n} "
                f"is needed to certify anything (n = {n}; {self._rule()})"
            )
        if self.procedure == "fixed_sequence":
            assert self.idx is not None
            j = int(self.idx[0])
            return (
                f"{name}: the first grid point tested (index {j}) has p-value {p[j]:.4g}, not "
                f"{'<' if self.strict else '<='} {self.level:.4g}: its risk is not shown to be "
                "<= the cap, so testing stopped"
            )
        return f"{name}: no p-value is small enough: the smallest is {p.min():.4g} ({self._rule()})"

    def shared(
        self,
        p: FloatArray,
        overall_p: FloatArray | None,
        overall_alpha: float | None,
        min_n: IntArray,
        n: IntArray,
    ) -> str:
        short = [g for g in range(len(self.labels)) if 0 <= n[g] < min_n[g]]
        if short:
            g = short[0]
            return (
                f"shared threshold: group {self.labels[g]!r} is too small for its cap "
                f"{float(self.caps[g]):.4g}: even with no losses, n >= {int(min_n[g])} is needed "
                f"(n = {int(n[g])}; {self._rule()}); the max over groups never gets there"
            )
        j = int(self.idx[0]) if self.idx is not None else int(p.max(axis=0).argmin())
        g = int(p[:, j].argmax())
        blocker, value = f"group {self.labels[g]!r}", float(p[g, j])
        if overall_p is not None and overall_p[j] > value:
            blocker, value = f"the overall budget {overall_alpha!r}", float(overall_p[j])
        where = (
            "the first grid point tested"
            if self.procedure == "fixed_sequence"
            else ("the most favourable grid point")
        )
        return (
            f"shared threshold: at {where} (index {j}) the largest p-value is {value:.4g}, "
            f"from {blocker}, not {'<' if self.strict else '<='} {self.first:.4g}"
        )
