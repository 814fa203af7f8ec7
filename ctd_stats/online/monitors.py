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
from .._serialize import JSONSerializable
from .._streaming import NO_ALARM, Step
from .._validation import BoolArray, FloatArray, IntArray, as_float_array
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


@dataclass(frozen=True)
class MonitorState(JSONSerializable):
    """Frozen state of a streaming threshold monitor after ``t`` scores.

    ``alarm_step`` is the 0-based index of the first alarm (``None`` while there is none).
    """

    t: int = 0
    running_min: float = math.inf
    alarm_step: int | None = None

    @property
    def alarmed(self) -> bool:
        return self.alarm_step is not None

    def _json_meta(self) -> dict[str, Any]:
        return {
            "guarantee": "checkpoint of a threshold monitor (the threshold carries the guarantee)",
            "n": self.t,
            "calibration_sha256": None,
            "settings": {},
        }

    def __repr__(self) -> str:
        return result_repr(
            "MonitorState",
            f"t={self.t}, alarmed={self.alarmed}",
            [("running_min", self.running_min), ("alarm_step", self.alarm_step)],
        )


def _check_threshold(value: Any, name: str = "threshold") -> float:
    """A real number, not NaN (±inf allowed: never / always alarm)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name}: must not be NaN")
    return v


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

    def update(self, state: MonitorState, x: float) -> tuple[MonitorState, Step]:
        """Feed one score x; returns the new state and the step (statistic = the score)."""
        s = float(x)
        if math.isnan(s):
            raise ValueError("x: must not be NaN")
        t = state.t
        new_alarm = (not state.alarmed) and s < self.threshold
        alarm_step = t if new_alarm else state.alarm_step
        new_state = MonitorState(
            t=t + 1, running_min=min(state.running_min, s), alarm_step=alarm_step
        )
        step = Step(
            t=t,
            x=s,
            statistic=s,
            alarm=alarm_step is not None,
            new_alarm=new_alarm,
            alarm_step=alarm_step,
        )
        return new_state, step

    def run(self, scores: ArrayLike) -> IntArray:
        """Streaming run over one trajectory (via ``update``); per-step alarm flags as 0/1."""
        x = as_float_array(scores, "scores", ndim=1)
        state = self.init()
        out = np.zeros(len(x), dtype=np.int64)
        for i, s in enumerate(x):
            state, res = self.update(state, float(s))
            out[i] = res.alarm
        return out

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
    big = np.iinfo(np.int64).max
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
    sorted_mins = mins if presorted else np.sort(mins)
    return np.searchsorted(sorted_mins, lam, side="left").astype(np.int64)
