"""Shared pieces of the alarm-threshold calibrations (CRC and UCB): grids, input checks, reprs.

Validation happens here once, at the public edge (:func:`calibration_inputs`,
:func:`grouped_minima`); the CRC and UCB kernels trust what they receive.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Generic, Literal, TypeVar, cast

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._validation import as_float_array, check_choice, check_grid, check_level, plain
from ..grouped import Caps, caps_iv, caps_per_group, group_labels, group_position
from ..typing import BoolArray, FloatArray, IntArray
from .trajectories import Trajectories

Risk = Literal["false_alarm", "missed_detection"]
RISKS: Final[tuple[str, ...]] = ("false_alarm", "missed_detection")
PAPER_GRID_SIZE: Final[int] = 10001
GridArg = ArrayLike | Literal["paper"] | None
#: A group label: an integer or a non-empty string (see :func:`ctd_stats.grouped.group_labels`).
Label = int | str


def paper_grid() -> FloatArray:
    """The online-monitoring paper's threshold grid, ``linspace(0, 1, 10001)``."""
    return np.linspace(0.0, 1.0, PAPER_GRID_SIZE)


def calibration_minima(calibration: Trajectories | ArrayLike, risk: str) -> FloatArray:
    """Minima of the class that calibrates ``risk`` (or the given minima themselves)."""
    if isinstance(calibration, Trajectories):
        labels = calibration.require_labels("calibration")
        want = 1 if risk == "false_alarm" else 0
        mins: FloatArray = calibration.minima[labels == want]
        if len(mins) == 0:
            kind = "correct (label 1)" if want == 1 else "incorrect (label 0)"
            raise ValueError(f"calibration: no {kind} trajectory to calibrate the {risk} risk")
        return mins
    return as_float_array(calibration, "calibration", ndim=1)


def resolve_grid(grid: GridArg) -> FloatArray | None:
    """``None`` (closed form), ``"paper"`` or an increasing 1-d grid (±inf ends allowed)."""
    if grid is None:
        return None
    if isinstance(grid, str):
        check_choice(grid, "grid", ("paper",))
        return paper_grid()
    return check_grid(grid, "grid", finite=False)


def one_alpha(alpha: Caps, groups: ArrayLike | None) -> float | None:
    """``alpha`` checked as one level; None for per-group caps with ``groups`` (see group_caps).

    One number is checked before the groups are read (as without groups); caps need the labels.
    """
    if groups is not None and caps_per_group(alpha):
        return None
    return check_level(cast(float, alpha), "alpha")


def group_caps(
    alpha: Caps, checked: float | None, labels: tuple[Label, ...]
) -> tuple[float | tuple[float, ...], list[float]]:
    """The cap as a result records it (one number, or the caps in group order), and per group."""
    if checked is not None:
        return checked, [checked] * len(labels)
    caps = tuple(caps_iv(alpha, labels, "alpha").tolist())
    return caps, list(caps)


def grouped_minima(
    calibration: Trajectories | ArrayLike, mins: FloatArray, risk: str, groups: ArrayLike
) -> tuple[tuple[Label, ...], tuple[FloatArray, ...]]:
    """Sorted group labels and each group's calibration minima (in calibration order).

    ``mins`` are the validated minima of ``calibration`` (from :func:`calibration_inputs`).
    ``groups`` has one label per trajectory of ``calibration`` (all of them, both classes, for
    :class:`Trajectories`; one per minimum otherwise). Every label must keep at least one
    trajectory of the class that calibrates ``risk``.
    """
    if isinstance(calibration, Trajectories):
        want = 1 if risk == "false_alarm" else 0
        keep = calibration.require_labels("calibration") == want
        rows, what = calibration.n_trajectories, "trajectories"
    else:
        keep = np.ones(len(mins), dtype=np.bool_)
        rows, what = len(mins), "calibration minima"
    labels, inverse = group_labels(groups, "groups")
    if len(inverse) != rows:
        raise ValueError(f"groups: has {len(inverse)} labels for {rows} {what} (one per row)")
    inv = inverse[keep]
    sizes = np.bincount(inv, minlength=len(labels))
    if not sizes.all():
        kind = "correct (label 1)" if risk == "false_alarm" else "incorrect (label 0)"
        empty = labels[int(np.argmin(sizes))]
        raise ValueError(
            f"groups: group {plain(empty)} has no {kind} trajectory to calibrate {risk}"
        )
    # A stable sort keeps each group's rows in calibration order (WSR depends on the order).
    perm = np.argsort(inv, kind="stable")
    parts = np.split(mins[perm], np.cumsum(sizes)[:-1])
    return labels, tuple(parts)


def calibration_inputs(
    calibration: Trajectories | ArrayLike, risk: str, grid: GridArg
) -> tuple[FloatArray, FloatArray | None]:
    """Validated ``risk``, the calibration minima of its class and the resolved grid."""
    check_choice(risk, "risk", RISKS)
    return calibration_minima(calibration, risk), resolve_grid(grid)


def safe_threshold(risk: str) -> float:
    """The threshold that is always safe for ``risk``: never alarm (−∞) / always alarm (+∞)."""
    return -np.inf if risk == "false_alarm" else np.inf


def uncertified(
    risk: str, n: int, need: int | None, too_few: str, otherwise: str
) -> tuple[str, int | None]:
    """``(reason, min_n)`` of a calibration that certified nothing.

    ``too_few`` explains the failure when ``n`` is below ``need`` (the smallest n that could
    succeed; ``None`` when out of reach), ``otherwise`` when more data would not help; the
    reason ends with the safe threshold that is returned instead.
    """
    safe = "-inf (never alarm)" if risk == "false_alarm" else "+inf (always alarm)"
    if need is not None and n < need:
        return f"{too_few}; threshold is {safe}", need
    return f"{otherwise}; threshold is {safe}", None


class ThresholdResult:
    """The repr of a threshold result: found / reason / min_n FIRST, then ``_repr_lines``.

    A mixin for frozen dataclasses with ``found``, ``threshold``, ``index``, ``reason`` and
    ``min_n`` fields (declare them with ``repr=False`` so this ``__repr__`` is used).
    """

    _repr_lines: ClassVar[tuple[str, ...]] = ()
    found: bool
    threshold: float
    alpha: float
    n: int
    index: int | None
    reason: str | None
    min_n: int | None

    def __repr__(self) -> str:
        lines = list(self._repr_lines)
        if self.found:
            head = f"found=True, threshold={self.threshold:.6g}"
            if self.index is not None:
                head += f", index={self.index}"
            return result_repr(self, head, lines)
        return result_repr(self, "found=False", ["reason", "min_n", "threshold", *lines])


R = TypeVar("R", bound=ThresholdResult)


class GroupedThresholdResult(Generic[R]):
    """Lookup by group, per-group arrays, the repr and JSON header of a grouped threshold result.

    A mixin for frozen dataclasses with ``groups`` (labels in sorted order) and ``results``
    (one ungrouped threshold result per group, in the same order); declare them with
    ``repr=False`` so this ``__repr__`` is used.
    """

    _repr_lines: ClassVar[tuple[str, ...]] = ()
    #: Settings shown in the JSON header after ``groups``.
    _json_settings: ClassVar[tuple[str, ...]] = ()
    groups: tuple[Label, ...]
    results: tuple[R, ...]
    guarantee: str
    calibration_sha256: str

    def _json_meta(self) -> dict[str, object]:
        settings = {name: getattr(self, name) for name in self._json_settings}
        return {
            "guarantee": self.guarantee,
            "n": int(self.n.sum()),
            "calibration_sha256": self.calibration_sha256,
            "settings": {"groups": list(self.groups), **settings},
        }

    def group_index(self, group: Label | np.integer[Any]) -> int:
        """Position of ``group`` in :attr:`groups`; ``ValueError`` naming ``group`` if unknown."""
        return group_position(self.groups, group)

    def result_for(self, group: Label | np.integer[Any]) -> R:
        """The threshold result of ``group`` (its ``found``, ``reason``, ``min_n``, ``n``)."""
        return self.results[self.group_index(group)]

    def threshold_for(self, group: Label | np.integer[Any]) -> float:
        """The alarm threshold of ``group`` (its safe ±inf when nothing was certified)."""
        return self.results[self.group_index(group)].threshold

    def thresholds(self) -> dict[Label, float]:
        """``{group: threshold_for(group)}`` for every group, in group order."""
        return {g: r.threshold for g, r in zip(self.groups, self.results, strict=True)}

    @property
    def threshold_array(self) -> FloatArray:
        """Thresholds in group order, shape (G,)."""
        return np.array([r.threshold for r in self.results], dtype=np.float64)

    @property
    def found(self) -> BoolArray:
        """Per group: whether a threshold was certified, shape (G,)."""
        return np.array([r.found for r in self.results], dtype=np.bool_)

    @property
    def n(self) -> IntArray:
        """Calibration trajectories per group, shape (G,)."""
        return np.array([r.n for r in self.results], dtype=np.int64)

    @property
    def caps(self) -> FloatArray:
        """Each group's cap α_g in group order, shape (G,)."""
        return np.array([r.alpha for r in self.results], dtype=np.float64)

    def __repr__(self) -> str:
        found = self.found
        head = f"groups={len(self.groups)}, found={int(found.sum())}/{len(self.groups)}"
        lines: list[str | tuple[str, Any]] = []
        if not found.all():
            first = int(np.argmin(found))
            lines.append(("reason", f"group {self.groups[first]!r}: {self.results[first].reason}"))
        lines += [
            ("groups", self.groups),
            ("thresholds", self.threshold_array),
            ("n", self.n),
            *self._repr_lines,
        ]
        return result_repr(self, head, lines)
