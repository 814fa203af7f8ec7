"""Shared pieces of the alarm-threshold calibrations (CRC and UCB): grids, input checks, reprs.

Validation happens here once, at the public edge (:func:`calibration_inputs`); the CRC and UCB
kernels trust what they receive.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._validation import as_float_array, check_choice, check_grid
from ..typing import FloatArray
from .trajectories import Trajectories

Risk = Literal["false_alarm", "missed_detection"]
RISKS: Final[tuple[str, ...]] = ("false_alarm", "missed_detection")
PAPER_GRID_SIZE: Final[int] = 10001
GridArg = ArrayLike | Literal["paper"] | None


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
