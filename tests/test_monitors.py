"""Threshold monitors: streaming == vectorised, strictness, absorbing alarms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctd_stats.online.monitors import (
    NO_ALARM,
    ThresholdMonitor,
    alarm_counts,
    alarm_matrix,
    first_alarm_from_mask,
    first_alarm_matrix,
    first_alarm_steps,
    running_minima,
)
from ctd_stats.online.trajectories import Trajectories

# Scores on a coarse grid so that ties with the thresholds actually happen.
score = st.integers(0, 10).map(lambda k: k / 10)
ragged = st.lists(st.lists(score, min_size=1, max_size=7), min_size=1, max_size=10)
thresholds = st.lists(
    st.one_of(score, st.just(-math.inf), st.just(math.inf), st.floats(-0.5, 1.5)),
    min_size=1,
    max_size=5,
)


def _streaming_first_alarm(monitor: ThresholdMonitor, scores: list[float]) -> int:
    state = monitor.init()
    first = NO_ALARM
    for s in scores:
        state, res = monitor.update(state, s)
        if res.new_alarm:
            first = res.t
    assert (NO_ALARM if state.alarm_step is None else state.alarm_step) == first
    return first


@settings(max_examples=200, deadline=None)
@given(ragged, thresholds)
def test_vectorised_equals_streaming(parts: list[list[float]], lams: list[float]) -> None:
    tr = Trajectories.from_arrays(parts)
    mat = first_alarm_matrix(tr, lams)
    for j, lam in enumerate(lams):
        mon = ThresholdMonitor(threshold=lam)
        stream = np.array([_streaming_first_alarm(mon, p) for p in parts])
        np.testing.assert_array_equal(first_alarm_steps(tr, lam), stream)
        np.testing.assert_array_equal(mat[:, j], stream)
        np.testing.assert_array_equal(mon.first_alarm_steps(tr), stream)
    # whether a trajectory alarms at all = min < lambda, counted from sorted minima
    ever = alarm_matrix(tr.minima, lams)
    np.testing.assert_array_equal(ever, mat != NO_ALARM)
    np.testing.assert_array_equal(alarm_counts(tr.minima, lams), ever.sum(axis=0))


@settings(max_examples=100, deadline=None)
@given(ragged)
def test_running_minima_match_python(parts: list[list[float]]) -> None:
    tr = Trajectories.from_arrays(parts)
    expected = np.concatenate([np.minimum.accumulate(np.asarray(p)) for p in parts])
    np.testing.assert_array_equal(running_minima(tr), expected)


def test_alarm_is_strict_and_absorbing() -> None:
    mon = ThresholdMonitor(threshold=0.5)
    trace = mon.run([0.7, 0.5, 0.4, 0.9, 0.6])
    np.testing.assert_array_equal(trace.alarm, [0, 0, 1, 1, 1])
    assert trace.alarm_step == 2 and trace.state.t == 5
    state = mon.init()
    state, r1 = mon.update(state, 0.3)
    state, r2 = mon.update(state, 0.1)
    assert r1.new_alarm and r1.alarm and r1.alarm_step == 0
    assert r2.alarm and not r2.new_alarm and r2.alarm_step == 0
    assert state.running_min == 0.1 and state.t == 2


def test_infinite_thresholds() -> None:
    tr = Trajectories.from_arrays([[0.2, 0.1], [1.0]])
    np.testing.assert_array_equal(first_alarm_steps(tr, -math.inf), [NO_ALARM, NO_ALARM])
    np.testing.assert_array_equal(first_alarm_steps(tr, math.inf), [0, 0])


def test_mask_helper() -> None:
    tr = Trajectories.from_arrays([[0.2, 0.1, 0.3], [1.0, 2.0]])
    np.testing.assert_array_equal(
        first_alarm_from_mask(tr, [False, True, True, False, False]), [1, NO_ALARM]
    )
    with pytest.raises(ValueError, match="mask"):
        first_alarm_from_mask(tr, [True])


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ThresholdMonitor(threshold=math.nan)
    with pytest.raises(TypeError, match="threshold"):
        ThresholdMonitor(threshold="0.3")  # type: ignore[arg-type]
    mon = ThresholdMonitor(threshold=0.5)
    with pytest.raises(ValueError, match=r"^x:"):
        mon.update(mon.init(), math.nan)
    with pytest.raises(ValueError, match="thresholds"):
        first_alarm_matrix(Trajectories.from_arrays([[0.1]]), [math.nan])
    with pytest.raises(ValueError, match="minima"):
        alarm_matrix([0.1, math.nan], [0.5])
