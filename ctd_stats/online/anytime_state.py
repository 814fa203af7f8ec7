"""The results of :class:`~ctd_stats.online.AnytimeLTT`: its frozen state, one step, one run.

Split from :mod:`ctd_stats.online.anytime_ltt` (which re-exports them); the guarantee they carry
is stated there (anytime-valid Learn-then-Test: Angelopoulos et al. 2022, Sec. 3; testing by
betting, Waudby-Smith & Ramdas 2024, Sec. 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from .._repr import result_repr
from .._serialize import JSONSerializable, exact_eq
from .._streaming import Step
from ..typing import BoolArray, FloatArray, IntArray

__all__ = ["AnytimeLTTRun", "AnytimeLTTState", "CertificationStep"]

#: The array fields of a state, read-only once it is made.
_ARRAYS: Final[tuple[str, ...]] = (
    "certified",
    "certified_step",
    "crossed",
    "log_wealth",
    "next_bet",
    "sum_x",
    "sum_sq_dev",
    "ons_a",
)


@exact_eq
@dataclass(frozen=True, repr=False)
class AnytimeLTTState(JSONSerializable, kind="ctd_stats.AnytimeLTTState"):
    """Frozen state of an :class:`~ctd_stats.online.AnytimeLTT` after ``t`` inputs (read-only).

    Attributes
    ----------
    t
        Inputs seen over the whole deployment (every epoch).
    epoch, epoch_start
        The current epoch (0 until the first :meth:`~ctd_stats.online.AnytimeLTT.restart`) and
        the 0-based index of its first input.
    certified
        Boolean mask over the grid (grid order): the certified set of this epoch.
    index
        The most aggressive certified grid index (last certified in the testing order), or
        ``None`` while nothing is certified.
    certified_step
        0-based input index at which each grid point was certified (``NO_ALARM`` = not yet).
    crossed
        (n_risks, m): whether each risk's wealth has crossed 1/δ_e this epoch (latched).
    log_wealth, next_bet, sum_x, sum_sq_dev, ons_a
        (n_risks, m): the log wealth and the bet kernel's state (``next_bet`` is predictable).
    fingerprint
        Identifies the monitor's grid, order, α, δ, bounds and bet options; a state is refused
        by a monitor with another fingerprint.
    """

    t: int
    epoch: int
    epoch_start: int
    certified: BoolArray
    index: int | None
    certified_step: IntArray
    crossed: BoolArray
    log_wealth: FloatArray
    next_bet: FloatArray
    sum_x: FloatArray
    sum_sq_dev: FloatArray
    ons_a: FloatArray
    fingerprint: str

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            value = getattr(self, name)
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{name}: expected a numpy array, got {type(value).__name__}")
            value.setflags(write=False)

    @property
    def found(self) -> bool:
        """Whether anything is certified in this epoch."""
        return self.index is not None

    def _json_meta(self) -> dict[str, Any]:
        return {
            "guarantee": (
                "checkpoint of an anytime-valid Learn-then-Test certifier (with probability at "
                "least 1 - delta, at every time, every certified threshold has risk <= alpha)"
            ),
            "n": self.t,
            "calibration_sha256": None,
            "settings": {"fingerprint": self.fingerprint, "epoch": self.epoch},
        }

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"t={self.t}, epoch={self.epoch}, index={self.index}",
            [("n_certified", int(self.certified.sum())), "certified", "epoch_start", "log_wealth"],
        )


@dataclass(frozen=True, repr=False)
class CertificationStep(Step):
    """The :class:`~ctd_stats._streaming.Step` of a certifier, with the certified set's frontier.

    For a certifier an *alarm* is a rejection: ``alarm`` is True once anything is certified in
    this epoch, ``new_alarm`` when the certified set grew at this input, ``alarm_step`` the
    0-based input at which the first threshold was certified. ``x`` is the loss (first risk) and
    ``statistic`` the log wealth (smallest over risks) of the *frontier*: the first threshold in
    the testing order not yet certified (the last one when all are). ``index`` and
    ``n_certified`` describe the certified set after this input.
    """

    index: int | None = None
    n_certified: int = 0

    def __repr__(self) -> str:
        return result_repr(self, f"t={self.t}, index={self.index}")


@dataclass(frozen=True, repr=False)
class AnytimeLTTRun:
    """What :meth:`~ctd_stats.online.AnytimeLTT.run` returns for a block of T inputs.

    ``state`` equals the state after T calls of :meth:`~ctd_stats.online.AnytimeLTT.update`
    (bit for bit); ``index`` (T,) is the most aggressive certified grid index after each input
    (``NO_ALARM`` while nothing is certified) and ``n_certified`` (T,) the size of the certified
    set.
    """

    state: AnytimeLTTState
    index: IntArray
    n_certified: IntArray

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"T={self.index.size}, index={self.state.index}",
            [("index", self.index), ("n_certified", self.n_certified)],
        )
