"""The vectorised grouped ``Delegator.decide_stream`` is bit for bit ``update`` in a loop.

Reference: :meth:`Delegator.update` called on each input in order (the protocol's definition of
a stretch). Compared: every step's statistic (bytes), decision, the alarm step, the final state
(``==`` and its exact JSON) — shared and per-group calibrations, DV and probe scores, inputs
with and without groups, fresh / mid-stream / already alarmed / JSON-restored states, alarms
inside the stretch (a jump in the scores at a drawn position), the package's budget monitors,
a custom betting monitor, a monitor without ``run`` and no monitor. The vectorised path must
not fall back to the loop on valid input (the loop is forbidden there); errors keep their
messages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ctd_stats._streaming import Step
from ctd_stats.cascade import (
    Delegator,
    ThresholdCalibration,
    calibrate_budget_only,
    calibrate_uncertainty,
)
from ctd_stats.cascade.delegator import GroupedDelegatorState
from ctd_stats.cascade.streaming import BudgetMonitor
from ctd_stats.online.betting import BettingMonitor, BettingState

G = 3


class UpdateOnly:
    """A monitor the package does not own (no ``run``): a budget monitor behind ``update``."""

    def __init__(self, inner: BudgetMonitor) -> None:
        self.inner = inner

    def init(self) -> BettingState:
        return self.inner.init()

    def update(self, state: BettingState, x: float, /) -> tuple[BettingState, Step]:
        return self.inner.update(state, x)


def _calibrations() -> dict[str, ThresholdCalibration]:
    rng = np.random.default_rng(11)
    n = 1500
    g = rng.integers(0, G, n)
    s = rng.normal(size=n) + 0.4 * g
    y = rng.integers(0, 2, n)
    p = rng.uniform(size=n)
    e = np.clip(0.8 * y + rng.uniform(0, 0.2, n), 0, 1)
    names = np.array(["a", "b", "c"])[g]
    return {
        "shared": calibrate_budget_only(s, alpha=0.2, groups=g, group_alpha=[0.1, 0.3, 0.2]),
        "per_group": calibrate_budget_only(s, alpha=0.2, groups=g, per_group=True),
        "strings": calibrate_budget_only(s, alpha=0.2, groups=names, per_group=True),
        "probe": calibrate_uncertainty(y, p, e, alpha=0.3, groups=g, per_group=True),
        "probe_shared": calibrate_uncertainty(y, p, e, alpha=0.3, groups=g),
    }


CAL = _calibrations()
LABELS: dict[str, tuple[Any, ...]] = {k: c.groups or () for k, c in CAL.items()}


def _delegators() -> dict[str, Delegator]:
    out = {
        "shared": Delegator(CAL["shared"], level=0.5),
        "shared_fixed": Delegator(CAL["shared"], level=0.5, strategy="fixed"),
        "per_group": Delegator(CAL["per_group"], level=0.5, strategy="agrapa"),
        "strings": Delegator(CAL["strings"], level=0.5),
        "probe": Delegator(CAL["probe"], level=0.5),
        "probe_shared": Delegator(CAL["probe_shared"], level=0.05),
        "no_monitor": Delegator(CAL["per_group"], monitor=False),
        "betting": Delegator(CAL["shared"], monitor=BettingMonitor(0.2, level=0.2)),
        "update_only": Delegator(CAL["shared"], monitor=UpdateOnly(BudgetMonitor(0.2, level=0.2))),
    }
    return out


DELEGATORS = _delegators()
CALIBRATION_OF = {
    "shared": "shared",
    "shared_fixed": "shared",
    "per_group": "per_group",
    "strings": "strings",
    "probe": "probe",
    "probe_shared": "probe_shared",
    "no_monitor": "per_group",
    "betting": "shared",
    "update_only": "shared",
}


def _loop(
    d: Delegator, scores: list[float], groups: list[Any] | None, state: Any
) -> tuple[int, np.ndarray, np.ndarray, Any]:
    st_ = d.init() if state is None else state
    start = st_.t
    stats, dec = [], []
    for i, value in enumerate(scores):
        st_, step = d.update(st_, value, group=None if groups is None else groups[i])
        stats.append(step.statistic)
        dec.append(step.delegated)
    return start, np.asarray(stats, dtype=np.float64), np.asarray(dec, dtype=bool), st_


def _forbidden(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the grouped stream fell back to the loop on valid input")


def _check_identical(
    d: Delegator, scores: list[float], groups: list[Any] | None, state: Any, *, fast: bool = True
) -> Any:
    start, stats, dec, ref = _loop(d, scores, groups, state)
    with pytest.MonkeyPatch.context() as mp:
        if fast:
            mp.setattr(Delegator, "_stream_grouped_loop", _forbidden)
        trace = d.decide_stream(scores, groups=groups, state=state)
    assert trace.start == start
    assert trace.x.tobytes() == np.asarray(scores, dtype=np.float64).tobytes()
    assert trace.statistic.dtype == np.float64 and trace.statistic.tobytes() == stats.tobytes()
    assert trace.delegated is not None and np.array_equal(trace.delegated, dec)
    assert trace.alarm_step == ref.alarm_step
    assert type(trace.state) is GroupedDelegatorState and trace.state == ref
    assert trace.state.to_json() == ref.to_json()
    return trace


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, list[float], list[Any] | None, Any]:
    name = draw(st.sampled_from(sorted(DELEGATORS)))
    d = DELEGATORS[name]
    cal = CAL[CALIBRATION_OF[name]]
    labels = LABELS[CALIBRATION_OF[name]]
    probe = cal.reference is not None
    unit = st.floats(0.0, 1.0) if probe else st.floats(-3.0, 4.0)

    def stretch(n: int) -> tuple[list[float], list[Any] | None]:
        xs = draw(st.lists(unit, min_size=n, max_size=n))
        jump = draw(st.integers(0, n))  # from here on every input delegates (an alarm follows)
        if draw(st.booleans()):
            xs = xs[:jump] + ([0.5] * (n - jump) if probe else [x + 6.0 for x in xs[jump:]])
        no_groups = cal.group_mode == "shared" and draw(st.booleans())
        gs = None if no_groups else draw(st.lists(st.sampled_from(labels), min_size=n, max_size=n))
        return xs, gs

    n = draw(st.integers(1, 120))
    scores, groups = stretch(n)
    state = None
    how = draw(st.sampled_from(["none", "init", "prefix", "json"]))
    if how == "init":
        state = d.init()
    elif how in ("prefix", "json"):
        px, pg = stretch(draw(st.integers(1, 80)))
        state = _loop(d, px, pg, None)[3]
        if how == "json":
            state = GroupedDelegatorState.from_json(state.to_json())
    return name, scores, groups, state


@settings(derandomize=True, max_examples=300, deadline=None, database=None)
@given(case=_cases())
def test_vectorised_equals_update_loop(
    case: tuple[str, list[float], list[Any] | None, Any],
) -> None:
    name, scores, groups, state = case
    trace = _check_identical(DELEGATORS[name], scores, groups, state)
    before = None if state is None else state.alarm_step
    if trace.alarm_step is not None and before is None:
        event(f"alarm inside the stretch ({trace.state.alarm_source.split(' ')[0]})")
    event(f"state alarmed before: {before is not None}")


def _alarmed_stretch(d: Delegator, seed: int, n: int = 400) -> tuple[list[float], list[int]]:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, G, n)
    x = rng.normal(size=n) + 0.4 * g
    x[n // 2 :] += 3.0  # shift half-way: the stream delegates far above budget
    return x.tolist(), g.tolist()


@pytest.mark.parametrize("name", ["shared", "per_group", "betting", "update_only"])
def test_alarm_mid_stretch_and_after(name: str) -> None:
    d = DELEGATORS[name]
    x, g = _alarmed_stretch(d, 3)
    trace = _check_identical(d, x, g, None)
    assert trace.alarm_step is not None and 0 < trace.alarm_step < len(x) - 1
    assert trace.state.alarm_source is not None
    # Continued from a state alarmed in the middle of an earlier stretch: the alarm is kept.
    half = _check_identical(d, x[:300], g[:300], None)
    assert half.alarm_step is not None and half.alarm_step < 300
    rest = _check_identical(d, x[300:], g[300:], half.state)
    assert rest.alarm_step == half.alarm_step == trace.alarm_step and rest.state == trace.state


def test_group_alarm_first_then_overall_keeps_group_source() -> None:
    # One group far above its cap of 0.1 while the overall rate stays moderate.
    d = DELEGATORS["shared"]
    rng = np.random.default_rng(5)
    g = rng.integers(0, G, 600)
    x = np.where(g == 0, 5.0, -3.0)
    trace = _check_identical(d, x.tolist(), g.tolist(), None)
    assert trace.state.alarm_source == "group 0"


def test_tie_at_one_step_goes_to_the_overall_monitor() -> None:
    # A group's cap equal to α and a stream of that group only: the overall monitor and the
    # group's see the same decisions at the same budget and level, so they alarm together.
    rng = np.random.default_rng(2)
    g = rng.integers(0, G, 900)
    s = rng.normal(size=900)
    c = calibrate_budget_only(s, alpha=0.2, groups=g, group_alpha=0.2)
    d = Delegator(c, level=0.3)
    x = np.full(200, 5.0).tolist()
    trace = _check_identical(d, x, [1] * 200, None)
    st_ = trace.state
    assert st_.monitor.alarm_step == st_.group_monitors[1].alarm_step == trace.alarm_step
    assert st_.alarm_source == "overall"


def test_shared_without_groups_leaves_group_monitors() -> None:
    d = DELEGATORS["shared"]
    x, _ = _alarmed_stretch(d, 4, n=200)
    trace = _check_identical(d, x, None, None)
    assert trace.state.monitor.t == 200 and all(m.t == 0 for m in trace.state.group_monitors)
    assert trace.state.alarm_source in (None, "overall")


def test_empty_stretch_is_refused_as_before() -> None:
    d = DELEGATORS["per_group"]
    with pytest.raises(ValueError, match=r"^scores: must not be empty$"):
        d.decide_stream([], groups=[])
    with pytest.raises(ValueError, match=r"^scores: must not be empty$"):
        DELEGATORS["shared"].decide_stream([])


def test_unknown_group_message_unchanged() -> None:
    d = DELEGATORS["per_group"]
    with pytest.raises(ValueError) as loop_err:
        d.update(d.init(), 0.1, group=9)
    with pytest.raises(ValueError) as stream_err:
        d.decide_stream([0.1, 0.2], groups=[0, 9])
    assert str(stream_err.value) == str(loop_err.value)
    assert str(stream_err.value) == "group: 9 is not one of the calibrated groups (0, 1, 2)"
    with pytest.raises(ValueError, match=r"^groups: required by a per-group calibration"):
        d.decide_stream([0.1, 0.2])
    with pytest.raises(ValueError, match=r"^groups: length 1 does not match scores \(2\)$"):
        d.decide_stream([0.1, 0.2], groups=[0])


def test_errors_of_update_are_kept() -> None:
    # A probe score outside [0, 1] raises at its step, as update does (after earlier inputs).
    d = DELEGATORS["probe"]
    with pytest.raises(ValueError) as loop_err:
        d.update(d.init(), 1.5, group=0)
    with pytest.raises(ValueError) as stream_err:
        d.decide_stream([0.2, 0.9, 1.5, -0.1], groups=[0, 1, 2, 0])
    assert str(stream_err.value) == str(loop_err.value)
    assert str(stream_err.value) == "score: a probe score must lie in [0, 1], got 1.5"
    # A state with missing group monitors fails as the loop does.
    fresh = d.init()
    assert isinstance(fresh, GroupedDelegatorState)
    bad = dataclasses.replace(fresh, group_monitors=())
    with pytest.raises(IndexError) as stream_ix:
        d.decide_stream([0.2], groups=[1], state=bad)
    with pytest.raises(IndexError) as loop_ix:
        d.update(bad, 0.2, group=1)
    assert str(stream_ix.value) == str(loop_ix.value)
    with pytest.raises(TypeError, match=r"^state: expected a GroupedDelegatorState"):
        d.decide_stream([0.2], groups=[1], state=DELEGATORS["betting"].init().monitor)


def test_fallback_loop_is_the_reference() -> None:
    # The loop the vectorised path falls back to gives the same trace as the vectorised one.
    d = DELEGATORS["per_group"]
    x, g = _alarmed_stretch(d, 8, n=300)
    fast = _check_identical(d, x, g, None)
    slow = d._stream_grouped_loop(np.asarray(x), list(g), d.init())
    assert slow.statistic.tobytes() == fast.statistic.tobytes() and slow.state == fast.state


def test_statistic_is_pythons_max_for_signed_zeros_and_nan() -> None:
    # max([overall, group 0, ...]) keeps the first of equal values (-0.0 before 0.0) and skips
    # a NaN after the first entry; np.maximum would do neither.
    d = DELEGATORS["shared"]
    fresh = d.init()
    assert isinstance(fresh, GroupedDelegatorState)
    zero = dataclasses.replace(fresh, monitor=dataclasses.replace(fresh.monitor, log_wealth=-0.0))
    trace = _check_identical(d, [-3.0, -3.0], [0, 1], zero)
    assert np.signbit(trace.statistic).all()  # -0.0: the overall monitor's, not a group's 0.0
    nan_group = dataclasses.replace(fresh.group_monitors[2], log_wealth=float("nan"))
    odd = dataclasses.replace(fresh, group_monitors=(*fresh.group_monitors[:2], nan_group))
    trace = _check_identical(d, [-3.0, 5.0, 5.0], [0, 1, 1], odd)
    assert not np.isnan(trace.statistic).any()
