"""Shared pieces of the alarm-threshold calibrations (CRC and UCB): grids, input checks, reprs.

Validation happens here once, at the public edge (``_calibration_iv``); the CRC and UCB kernels
trust what they receive.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._validation import FloatArray, as_float_array, check_choice, check_sorted
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


def check_grid(grid: GridArg) -> FloatArray | None:
    """``None`` (closed form), ``"paper"`` or an increasing 1-d grid."""
    if grid is None:
        return None
    if isinstance(grid, str):
        check_choice(grid, "grid", ("paper",))
        return paper_grid()
    g = as_float_array(grid, "grid", ndim=1, finite=False)
    check_sorted(g, "grid")
    return g


def safe_threshold(risk: str) -> float:
    """The threshold that is always safe for ``risk``: never alarm (−∞) / always alarm (+∞)."""
    return -np.inf if risk == "false_alarm" else np.inf


def safe_words(risk: str) -> str:
    return "-inf (never alarm)" if risk == "false_alarm" else "+inf (always alarm)"


def threshold_repr(name: str, obj: Any, lines: list[tuple[str, Any]]) -> str:
    """Compact repr that LEADS with found / reason / min_n."""
    if obj.found:
        head = f"found=True, threshold={obj.threshold:.6g}"
        if obj.index is not None:
            head += f", index={obj.index}"
        return result_repr(name, head, lines)
    first = [("reason", obj.reason), ("min_n", obj.min_n), ("threshold", obj.threshold)]
    return result_repr(name, "found=False", first + lines)
