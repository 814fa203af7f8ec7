"""The vectorised stretch of a grouped :class:`~ctd_stats.cascade.Delegator` (``decide_stream``).

One input of a grouped delegator (``Delegator.update``) is decided at its group's threshold, its
decision D_t is fed to the overall budget monitor (every input) and to its group's monitor (the
group's inputs only), the step's statistic is the largest current log e-value of the monitors,
and the delegator's ``alarm_step`` latches at the first step at which any monitor raises its own
first alarm (the overall monitor first at a tie). A stretch gives exactly the same numbers when
done per monitor rather than per input, because the monitors are independent of each other:

* all thresholds and decisions at once (one gather, one comparison);
* each monitor on its own subsequence: the overall one on every decision, group g's on the
  decisions of group g's inputs, through the betting monitor's ``run`` (its bets in one scalar
  loop, the wealth vectorised; identical to its ``update``, tested there), and a monitor the
  package does not own through its ``update`` (its ``Step.new_alarm`` is what counts);
* group g's log wealth at every step of the stretch is its last value so far (a gather by the
  running count of g's inputs); the statistic is Python's ``max`` over [overall, group 0, ...]
  reproduced column by column (``np.where(c > m, c, m)``: same ties, signed zeros and NaN);
* the first own alarm of each monitor, mapped to the step of the stretch it fell on.

:func:`grouped_stream` returns ``None`` where this could differ from the loop in what it raises
(a probe score outside [0, 1], monitor states of the wrong type or number): the caller then runs
the loop, which raises at the same step as ``update`` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..online.betting import BettingMonitor, BettingState
from ..typing import BoolArray, FloatArray, IntArray
from .calibration import ThresholdCalibration
from .signals import uncertainty_from_sorted
from .streaming import BudgetMonitor

__all__: list[str] = []

#: Monitors whose ``run`` and ``update`` (alarm latched at the first crossing) are the package's.
_BATCH_TYPES = (BudgetMonitor, BettingMonitor)


@dataclass(frozen=True)
class GroupedRun:
    """What a stretch changes: per-step statistic and decision, the monitors' new states and
    the delegator's (latched) alarm."""

    statistic: FloatArray
    delegated: BoolArray
    monitor: Any
    group_monitors: tuple[Any, ...]
    alarm_step: int | None
    alarm_source: str | None


def _is_batch(monitor: object) -> bool:
    return type(monitor) in _BATCH_TYPES


def _monitor_run(monitor: Any, d: BoolArray, state: Any) -> tuple[FloatArray, int | None, Any]:
    """(statistic per step, index of the monitor's own first alarm in ``d`` or None, state)."""
    if _is_batch(monitor):
        trace = monitor.run(d, state=state)
        new = None
        if state.alarm_step is None and trace.alarm_step is not None:
            new = trace.alarm_step - state.t
        return trace.statistic, new, trace.state
    stats = np.empty(d.size)
    first: int | None = None
    update = monitor.update
    for i, value in enumerate(d.tolist()):
        state, step = update(state, value)
        stats[i] = step.statistic
        if first is None and step.new_alarm:
            first = i
    return stats, first, state


def grouped_stream(
    c: ThresholdCalibration,
    mon: Any,
    gmons: tuple[BudgetMonitor, ...] | None,
    x: FloatArray,
    gi: IntArray | None,
    st: Any,
) -> GroupedRun | None:
    """The stretch ``x`` (validated scores) with group positions ``gi`` (None: no groups) of a
    grouped delegator with calibration ``c``, overall monitor ``mon`` and group monitors
    ``gmons``, from its state ``st`` (a ``GroupedDelegatorState``), exactly as ``update`` in a
    loop; ``None`` where the loop must run (see module)."""
    assert c.groups is not None and c.group_thresholds is not None
    n_groups = len(c.groups)
    gstates = list(st.group_monitors)
    if mon is not None and _is_batch(mon) and not isinstance(st.monitor, BettingState):
        return None
    if gmons is not None and (
        len(gstates) != n_groups or not all(isinstance(g, BettingState) for g in gstates)
    ):
        return None
    if c.reference is not None:
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            return None
        signal = uncertainty_from_sorted(x, c.reference)
    else:
        signal = x
    if gi is None:
        threshold: float | FloatArray = c.threshold
    else:
        threshold = np.asarray(c.group_thresholds, dtype=np.float64)[gi]
    d: BoolArray = np.asarray(signal > threshold, dtype=bool)
    n = int(d.size)
    columns: list[FloatArray] = []
    events: list[tuple[int, int, str]] = []  # (step in stretch, overall first, source)
    mstate = st.monitor
    if mon is not None:
        stats, first, mstate = _monitor_run(mon, d, mstate)
        columns.append(np.asarray(stats, dtype=np.float64))
        if first is not None:
            events.append((first, 0, "overall"))
    if gmons is not None:
        for g, gmon in enumerate(gmons):
            state = gstates[g]
            if gi is None:
                columns.append(np.full(n, state.log_wealth, dtype=np.float64))
                continue
            mask = gi == g
            pos = np.flatnonzero(mask)
            if not pos.size:
                columns.append(np.full(n, state.log_wealth, dtype=np.float64))
                continue
            stats, first, gstates[g] = _monitor_run(gmon, d[pos], state)
            # log wealth after each step: the value after the group's latest input so far.
            path = np.concatenate((np.asarray([state.log_wealth], dtype=np.float64), stats))
            columns.append(path[np.cumsum(mask)])
            if first is not None:
                events.append((int(pos[first]), 1, f"group {c.groups[g]!r}"))
    if columns:
        statistic = columns[0].copy()
        for col in columns[1:]:  # Python's max(...) left to right: replace only if larger
            statistic = np.where(col > statistic, col, statistic)
    else:
        statistic = np.zeros(n)
    alarm_step, source = st.alarm_step, st.alarm_source
    if alarm_step is None and events:
        i, _, source = min(events)
        alarm_step = st.t + i
    return GroupedRun(statistic, d, mstate, tuple(gstates), alarm_step, source)
