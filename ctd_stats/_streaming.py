"""One streaming protocol for every monitor and the delegator (optax-style pure updates).

A streaming object is an immutable *configuration* with two pure methods::

    state = monitor.init()
    state, step = monitor.update(state, x)      # x: one observation

``state`` is a frozen dataclass that serialises exactly (``state.to_json()`` /
``StateClass.from_json(text)``), so a monitor can be checkpointed anywhere and resumed with the
same decisions and e-values as an uninterrupted run. ``step`` is a :class:`Step`, the same shape
for every monitor. Alarm times are 0-based step indices: ``NO_ALARM = -1`` in arrays, ``None`` in
scalar results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

__all__ = ["NO_ALARM", "Step", "StreamingMonitor"]

#: First-alarm index in integer arrays when no alarm was raised (scalar results use ``None``).
NO_ALARM: Final[int] = -1


@dataclass(frozen=True)
class Step:
    """What a streaming monitor reports after one observation.

    Attributes
    ----------
    t
        0-based index of the observation just processed.
    x
        The observation (a score, a loss or a 0/1 indicator).
    statistic
        The monitored statistic after this observation: the score itself for a threshold
        monitor, log K_t (log e-value) for e-process monitors.
    alarm
        True from the first alarm on (alarms latch).
    new_alarm
        True only at the observation that raised the alarm.
    alarm_step
        0-based index of the first alarm, ``None`` while there is none.
    delegated
        The decision for this input (the delegator only; ``None`` for monitors).
    """

    t: int
    x: float
    statistic: float
    alarm: bool
    new_alarm: bool
    alarm_step: int | None
    delegated: bool | None = None

    def __repr__(self) -> str:
        extra = "" if self.delegated is None else f", delegated={self.delegated}"
        return (
            f"Step(t={self.t}, x={self.x:.6g}, statistic={self.statistic:.6g}, "
            f"alarm={self.alarm}, alarm_step={self.alarm_step}{extra})"
        )


S = TypeVar("S")


class StreamingMonitor(Protocol[S]):
    """``init() -> state`` and ``update(state, x) -> (state, Step)``, both pure."""

    def init(self) -> S: ...

    def update(self, state: S, x: float, /) -> tuple[S, Step]: ...
