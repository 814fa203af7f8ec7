"""One streaming protocol for every monitor and the delegator (optax-style pure updates).

A streaming object is an immutable *configuration* with two pure methods::

    state = monitor.init()
    state, step = monitor.update(state, x)      # x: one observation (positional only)

``update`` returns ``(state, step)`` in that order, everywhere: the new state first (pass it to
the next call), then the :class:`Step` that reports on the observation. The old state is never
changed. ``state`` is a frozen dataclass that serialises exactly (``state.to_json()`` /
``StateClass.from_json(text)``), so a monitor can be checkpointed anywhere and resumed with the
same decisions and e-values as an uninterrupted run. A state of the wrong type is refused with a
``TypeError`` whose message starts with ``state``.

Anything with these two methods is a :class:`StreamingMonitor` (a runtime-checkable protocol):
composers such as :class:`~ctd_stats.cascade.Delegator` accept any of them, as optax's ``chain``
accepts any gradient transformation. A stretch of observations processed at once (``run``)
gives a :class:`Trace`, the same type for every monitor, with exactly the steps one-at-a-time
``update`` calls would give. Alarm times are 0-based step indices counted from the monitor's
start: ``NO_ALARM = -1`` in arrays, ``None`` in scalar results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from ._repr import result_repr
from .typing import BoolArray, FloatArray

__all__ = ["NO_ALARM", "BatchMonitor", "Step", "StreamingMonitor", "Trace"]

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
        return (
            f"Step(t={self.t}, x={self.x:.6g}, statistic={self.statistic:.6g}, "
            f"alarm={self.alarm}, new_alarm={self.new_alarm}, alarm_step={self.alarm_step}, "
            f"delegated={self.delegated})"
        )


S = TypeVar("S")


@runtime_checkable
class StreamingMonitor(Protocol[S]):
    """``init() -> state`` and ``update(state, x, /) -> (state, Step)``, both pure."""

    def init(self) -> S: ...

    def update(self, state: S, x: float, /) -> tuple[S, Step]: ...


@runtime_checkable
class BatchMonitor(StreamingMonitor[S], Protocol[S]):
    """A streaming monitor that also processes a stretch at once: ``run(x, /, *, state=None)``.

    ``run`` must give exactly the states and statistics of ``update`` called element by
    element (every monitor of the package does, tested).
    """

    def run(self, x: Any, /, *, state: S | None = None) -> Trace[S]: ...


@dataclass(frozen=True)
class Trace(Generic[S]):
    """A stretch of stream processed at once (every monitor's ``run``, ``decide_stream``).

    Attributes
    ----------
    x
        The observations processed (for the delegator: the raw scores).
    statistic
        ``Step.statistic`` of every observation (log e-values for e-process monitors; zeros
        for a delegator without monitor).
    alarm_step
        0-based step (counted from the monitor's start, not the stretch's) of the first alarm,
        ``None`` while there is none; an alarm raised before the stretch is kept.
    state
        The state after the stretch (pass it on to continue).
    start
        Step index of the stretch's first observation.
    delegated
        The delegator's decisions (``None`` for monitors).
    """

    x: FloatArray
    statistic: FloatArray
    alarm_step: int | None
    state: S
    start: int = 0
    delegated: BoolArray | None = None

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    @property
    def alarm(self) -> BoolArray:
        """``Step.alarm`` of every observation (True from the first alarm on)."""
        steps = np.arange(self.start, self.start + self.x.size)
        out: BoolArray = (
            np.zeros(self.x.size, dtype=bool)
            if self.alarm_step is None
            else steps >= self.alarm_step
        )
        return out

    def __repr__(self) -> str:
        lines: list[tuple[str, object]] = [("statistic", self.statistic)]
        if self.delegated is not None:
            lines.append(("delegated", f"{int(self.delegated.sum())} of {self.delegated.size}"))
        lines.append(("state", type(self.state).__name__))
        return result_repr(
            "Trace",
            f"steps {self.start}..{self.start + self.x.size - 1}, alarm_step={self.alarm_step}",
            lines,
        )


def check_state(state: object, cls: type[S]) -> S:
    """``state`` itself if it is a ``cls``, else a ``TypeError`` that starts with ``state``."""
    if not isinstance(state, cls):
        raise TypeError(f"state: expected a {cls.__name__}, got {type(state).__name__}")
    return state


def trace_by_updates(
    monitor: StreamingMonitor[S],
    x: Iterable[float],
    state: S,
    *,
    start: int,
    alarm_step: int | None,
) -> Trace[S]:
    """The :class:`Trace` of calling ``monitor.update`` on each observation in order.

    The batch path of any monitor without a vectorised one; ``start`` and ``alarm_step`` are
    the given state's step and alarm (kept if the stretch is empty).
    """
    xs: list[float] = []
    stats: list[float] = []
    update = monitor.update
    for value in x:
        state, step = update(state, value)
        xs.append(step.x)
        stats.append(step.statistic)
        alarm_step = step.alarm_step
    return Trace(
        x=np.asarray(xs, dtype=np.float64),
        statistic=np.asarray(stats, dtype=np.float64),
        alarm_step=alarm_step,
        state=state,
        start=start,
    )
