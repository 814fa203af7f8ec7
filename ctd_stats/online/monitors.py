"""Threshold monitors: streaming (one score at a time) and vectorised over trajectories.

A threshold monitor with threshold λ raises an alarm at the first step t with s_t < λ (strict);
the alarm is absorbing. A trajectory therefore alarms iff its minimum score m = min_t s_t < λ,
and the first alarm step is the first t at which the running minimum drops below λ.

Streaming use (optax style, pure functions of an immutable state)::

    monitor = ThresholdMonitor(threshold=0.4)
    state = monitor.init()
    for s in scores:
        state, step = monitor.update(state, s)
        if step.alarm:
            break

or ``monitor.run(scores)``, a :class:`~ctd_stats._streaming.Trace` with the same steps.

Vectorised use: :func:`first_alarm_steps` (one threshold, many trajectories),
:func:`first_alarm_matrix` (many thresholds), :func:`alarm_matrix` / :func:`alarm_counts` (whether
each trajectory ever alarms, from minima sorted once). Alarm steps are 0-based positions; ``-1``
means the trajectory never alarms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._repr import result_repr
from .._serialize import JSONSerializable, exact_eq
from .._streaming import NO_ALARM, Step, Trace, check_state, trace_by_updates
from .._validation import _INT64_MAX, as_float_array
from ..typing import BoolArray, FloatArray, IntArray
from .trajectories import Trajectories, check_trajectories

__all__ = [
    "NO_ALARM",
    "MonitorState",
    "ThresholdMonitor",
    "alarm_counts",
    "alarm_matrix",
    "first_alarm_from_mask",
    "first_alarm_matrix",
    "first_alarm_steps",
    "running_minima",
]


@exact_eq
@dataclass(frozen=True)
class MonitorState(JSONSerializable, kind="ctd_stats.MonitorState"):
    """Frozen state of a streaming threshold monitor after ``t`` scores.

    ``alarm_step`` is the 0-based index of the first alarm (``None`` while there is none).
    """

    t: int = 0
    running_min: float = math.inf
    alarm_step: int | None = None

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    _json_guarantee = "checkpoint of a threshold monitor (the threshold carries the guarantee)"

    def __repr__(self) -> str:
        return result_repr(self, f"t={self.t}, alarm_step={self.alarm_step}", ["running_min"])


def _check_threshold(value: Any, name: str = "threshold") -> float:
    """A real number, not NaN (±inf allowed: never / always alarm)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name}: must not be NaN")
    return v


def check_score(x: float) -> float:
    """One streamed score as a float, refusing NaN (±inf allowed)."""
    s = float(x)
    if math.isnan(s):
        raise ValueError("x: must not be NaN")
    return s


def latched_step(t: int, x: float, statistic: float, crossed: bool, alarm_step: int | None) -> Step:
    """The :class:`Step` of observation ``t``: the alarm latches at the first ``crossed`` step.

    ``alarm_step`` is the first alarm before this observation (``None``: none yet); the
    returned step's ``alarm_step`` is the one to keep in the new state.
    """
    new_alarm = alarm_step is None and crossed
    alarm_step = t if new_alarm else alarm_step
    return Step(
        t=t,
        x=x,
        statistic=statistic,
        alarm=alarm_step is not None,
        new_alarm=new_alarm,
        alarm_step=alarm_step,
    )


@dataclass(frozen=True)
class ThresholdMonitor:
    """Alarm at the first step whose score is strictly below ``threshold``.

    ``threshold = -inf`` never alarms, ``+inf`` alarms at the first step. A calibrated threshold
    (see :mod:`ctd_stats.online.alarm_calibration`) carries that calibration's guarantee for
    trajectories exchangeable with the calibration ones (monitoring paper §3).
    """

    threshold: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", _check_threshold(self.threshold))

    def init(self) -> MonitorState:
        """Fresh state for a new trajectory."""
        return MonitorState()

    def update(self, state: MonitorState, x: float, /) -> tuple[MonitorState, Step]:
        """Feed one score x; returns the new state and the step (statistic = the score)."""
        check_state(state, MonitorState)
        s = check_score(x)
        step = latched_step(state.t, s, s, s < self.threshold, state.alarm_step)
        running_min = min(state.running_min, s)
        return MonitorState(state.t + 1, running_min, step.alarm_step), step

    def run(self, x: ArrayLike, /, *, state: MonitorState | None = None) -> Trace[MonitorState]:
        """Feed a stretch of scores (``update`` in a loop) from ``state`` (default: fresh).

        ``trace.alarm`` are the per-step alarm flags, ``trace.alarm_step`` the first alarm.
        """
        xs = as_float_array(x, "x", ndim=1)
        state = self.init() if state is None else check_state(state, MonitorState)
        return trace_by_updates(
            self, xs.tolist(), state, start=state.t, alarm_step=state.alarm_step
        )

    def first_alarm_steps(self, trajectories: Trajectories) -> IntArray:
        """Vectorised first-alarm positions (``NO_ALARM`` if none) for many trajectories."""
        return first_alarm_steps(trajectories, self.threshold)


def first_alarm_from_mask(trajectories: Trajectories, mask: ArrayLike) -> IntArray:
    """First 0-based step where the per-step boolean ``mask`` (N,) is True, per trajectory.

    Returns (n,) int64, ``NO_ALARM`` where a trajectory has no True step. Works for any alarm
    rule (threshold monitors, e-processes) expressed step by step.
    """
    check_trajectories(trajectories)
    m = np.asarray(mask, dtype=bool)
    if m.shape != (trajectories.n_steps,):
        raise ValueError(f"mask: expected shape ({trajectories.n_steps},), got {m.shape}")
    big = _INT64_MAX
    pos = np.where(m, trajectories.step_index, big)
    first: IntArray = np.minimum.reduceat(pos, trajectories.offsets[:-1])
    return np.where(first == big, NO_ALARM, first).astype(np.int64)


def first_alarm_steps(trajectories: Trajectories, threshold: float) -> IntArray:
    """First step with score < ``threshold`` for each trajectory (``NO_ALARM`` if none)."""
    check_trajectories(trajectories)
    lam = _check_threshold(threshold)
    return first_alarm_from_mask(trajectories, trajectories.scores < lam)


def running_minima(trajectories: Trajectories) -> FloatArray:
    """(N,) running minimum of the scores within each trajectory (exact, O(N) memory).

    Position p of every trajectory longer than p is updated at once; the trajectories are
    ordered by length once, so the active set at position p is a prefix of that order.
    """
    run = check_trajectories(trajectories).scores.copy()
    lengths = trajectories.lengths
    order = np.argsort(-lengths, kind="stable")
    starts = trajectories.offsets[:-1][order]
    sorted_lengths = lengths[order]
    for p in range(1, int(sorted_lengths[0])):
        k = int(np.searchsorted(-sorted_lengths, -p, side="left"))  # #{T_i > p}
        idx = starts[:k] + p
        run[idx] = np.minimum(run[idx - 1], run[idx])
    return run


def first_alarm_matrix(trajectories: Trajectories, thresholds: ArrayLike) -> IntArray:
    """(n, m) first alarm step for each trajectory and each of m thresholds.

    Uses the running minimum (non-increasing), so the first alarm position is the number of
    steps whose running minimum is still ≥ λ; a count equal to T_i means no alarm.
    """
    check_trajectories(trajectories)
    lam = as_float_array(thresholds, "thresholds", ndim=(0, 1), finite=False)
    squeeze = lam.ndim == 0
    lam = np.atleast_1d(lam)
    run = running_minima(trajectories)
    still_ok = (run[:, None] >= lam[None, :]).astype(np.int64)
    counts: IntArray = np.add.reduceat(still_ok, trajectories.offsets[:-1], axis=0)
    out = np.where(counts >= trajectories.lengths[:, None], NO_ALARM, counts).astype(np.int64)
    return out[:, 0] if squeeze else out


def alarm_matrix(minima: ArrayLike, thresholds: ArrayLike) -> BoolArray:
    """(n, m) whether each trajectory (given its minimum score) ever alarms at each threshold."""
    mins = as_float_array(minima, "minima", ndim=1)
    lam = as_float_array(thresholds, "thresholds", ndim=1, finite=False)
    out: BoolArray = mins[:, None] < lam[None, :]
    return out


def alarm_counts(minima: ArrayLike, thresholds: ArrayLike, *, presorted: bool = False) -> IntArray:
    """Number of trajectories that alarm, #{m_i < λ_j}, for each threshold (sorting once).

    With ``presorted=True`` the minima must already be sorted increasingly (not re-checked).
    """
    mins = as_float_array(minima, "minima", ndim=1, allow_empty=True)
    lam = as_float_array(thresholds, "thresholds", ndim=(0, 1), finite=False)
    if not isinstance(presorted, (bool, np.bool_)):
        raise TypeError(f"presorted: expected a bool, got {type(presorted).__name__}")
    sorted_mins = mins if presorted else np.sort(mins)
    return np.searchsorted(sorted_mins, lam, side="left").astype(np.int64)
