"""Tests of the budget monitor (cascade.streaming) and the one-at-a-time Delegator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _monitor_sim import simulate_trajectories
from scipy import stats

from ctd_stats import NO_ALARM
from ctd_stats._streaming import BatchMonitor, Step, StreamingMonitor, Trace
from ctd_stats.cascade import (
    BudgetMonitor,
    DelegationSession,
    Delegator,
    budget_log_eprocess,
    calibrate_budget_only,
    calibrate_ctd,
    calibrate_uncertainty,
    first_alarm_times,
    simulate_cascade,
)
from ctd_stats.online.betting import BettingMonitor, BettingState
from ctd_stats.online.eprocess import EProcessMonitor, EValuatorModel, ville_threshold
from ctd_stats.online.monitors import ThresholdMonitor
from ctd_stats.online.trajectories import Trajectories


def test_e_process_hand_value() -> None:
    # fixed bet λ = 1.0 · 0.5 / α = 2 at α = 0.25:
    # D = 1 → ×(1 + 2·0.75) = 2.5, D = 0 → ×(1 − 2·0.25) = 0.5
    log_k = budget_log_eprocess([1, 1, 0], alpha=0.25, strategy="fixed", fixed_fraction=1.0)
    assert np.allclose(np.exp(log_k), [2.5, 6.25, 3.125])


def test_update_and_run_agree() -> None:
    d = (np.random.default_rng(0).random(300) < 0.35).astype(int)
    mon = BudgetMonitor(0.3)
    state = mon.init()
    steps = []
    for x in d:
        state, step = mon.update(state, int(x))
        steps.append(step)
    trace = mon.run(d)
    assert np.array_equal([s.statistic for s in steps], trace.statistic)
    assert state == trace.state
    assert state.alarm_step == trace.alarm_step
    assert [s.t for s in steps] == list(range(300))
    assert np.array_equal(trace.statistic, budget_log_eprocess(d, alpha=0.3))
    # run() continues from a given state
    first = mon.run(d[:100])
    assert np.array_equal(mon.run(d[100:], state=first.state).statistic, trace.statistic[100:])


@pytest.mark.validity
def test_monitor_is_anytime_valid_at_the_boundary_of_the_null() -> None:
    """Streams delegating at exactly rate α: #ever-alarmed ≤ binom.ppf(1 − 1e−4, N, level)."""
    n_streams, length, alpha, level = 1000, 1000, 0.3, 0.05
    d = np.random.default_rng(1).random((n_streams, length)) < alpha
    alarms = first_alarm_times(budget_log_eprocess(d, alpha=alpha), level=level) != NO_ALARM
    assert alarms.sum() <= stats.binom.ppf(1 - 1e-4, n_streams, level)


@pytest.mark.validity
def test_naive_repeated_z_test_fails_the_same_check() -> None:
    """Negative control: peeking at a fixed-n z-test every step is not anytime valid."""
    n_streams, length, alpha, level = 1000, 1000, 0.3, 0.05
    d = np.random.default_rng(1).random((n_streams, length)) < alpha
    t = np.arange(1, length + 1)
    z = (np.cumsum(d, axis=1) - alpha * t) / np.sqrt(alpha * (1 - alpha) * t)
    alarms = (z > stats.norm.ppf(1 - level)).any(axis=1)
    assert alarms.sum() > stats.binom.ppf(1 - 1e-4, n_streams, level)


def test_monitor_detects_an_excess_rate() -> None:
    d = np.random.default_rng(2).random((200, 2000)) < 0.4
    first = first_alarm_times(budget_log_eprocess(d, alpha=0.3), level=0.05)  # 0-based
    assert np.all(first != NO_ALARM)
    assert np.median(first + 1) < 600


@pytest.mark.validity
def test_delegator_end_to_end_no_alarm_then_alarm_under_shift() -> None:
    """Calibrate CTD once; exchangeable streams rarely alarm, a DV shift alarms promptly."""
    cal = simulate_cascade(800, seed=3)
    c = calibrate_ctd(cal.labels, cal.probe, cal.expert, cal.dv, alpha=0.3)
    assert c.found
    n_streams, length, level = 400, 1500, 0.05
    same = simulate_cascade(n_streams * length, seed=4).dv.reshape(n_streams, length)
    shifted = simulate_cascade(n_streams * length, seed=5, dv_offset=0.5).dv.reshape(
        n_streams, length
    )
    # each decision uses one score only, so the policy can be applied to all streams at once
    first_same = first_alarm_times(budget_log_eprocess(c.delegate(same), alpha=0.3), level=level)
    first_shift = first_alarm_times(
        budget_log_eprocess(c.delegate(shifted), alpha=0.3), level=level
    )
    # calibration succeeded (true rate ≤ α), so same-distribution streams are under the null
    assert (first_same != NO_ALARM).sum() <= stats.binom.ppf(1 - 1e-4, n_streams, level)
    assert (first_shift != NO_ALARM).mean() >= 0.95
    assert np.median(first_shift[first_shift != NO_ALARM] + 1) < 1000
    # the Delegator (one input at a time) reproduces the vectorised alarm times
    for i in range(3):
        trace = Delegator(c, level=level).decide_stream(shifted[i])
        assert trace.statistic is not None
        assert (NO_ALARM if trace.alarm_step is None else trace.alarm_step) == first_shift[i]


def test_decide_matches_decide_stream_and_policy() -> None:
    cal = simulate_cascade(600, seed=6)
    c = calibrate_ctd(cal.labels, cal.probe, cal.expert, cal.dv, alpha=0.2)
    stream = simulate_cascade(400, seed=7, dv_offset=0.3)
    session = DelegationSession(Delegator(c))
    steps = [session.decide(float(x)) for x in stream.dv]
    trace = Delegator(c).decide_stream(stream.dv)
    assert trace.delegated is not None
    assert np.array_equal([bool(s.delegated) for s in steps], trace.delegated)
    assert np.array_equal(trace.delegated, stream.dv > c.threshold)
    assert trace.statistic is not None
    assert np.array_equal([s.statistic for s in steps], trace.statistic)
    assert steps[-1].alarm_step == trace.alarm_step and session.state == trace.state
    assert [s.t for s in steps] == list(range(400))
    assert session.needs_recalibration == trace.alarmed


def test_unc_calibrated_delegator_takes_probe_scores() -> None:
    cal = simulate_cascade(600, seed=8)
    c = calibrate_uncertainty(cal.labels, cal.probe, cal.expert, alpha=0.3)
    dl = Delegator(c, monitor=False)
    p = float(np.median(cal.probe))
    _, step = dl.update(dl.init(), p)
    assert step.delegated == bool(c.delegate(np.array([p]))[0])
    assert step.statistic == 0.0 and not step.alarm
    with pytest.raises(ValueError, match="score"):
        dl.update(dl.init(), 1.5)
    # the scalar path (bisect) and the vectorised path (searchsorted) agree exactly
    probes = simulate_cascade(2000, seed=9).probe
    trace = Delegator(c).decide_stream(probes)
    assert trace.delegated is not None
    session = DelegationSession(Delegator(c))
    steps = [session.decide(float(x)) for x in probes]
    assert np.array_equal([bool(s.delegated) for s in steps], trace.delegated)
    assert np.array_equal([s.statistic for s in steps], trace.statistic)


def test_no_threshold_never_delegates_and_never_alarms() -> None:
    cal = simulate_cascade(30, seed=1)
    c = calibrate_budget_only(cal.dv, alpha=0.01)
    assert not c.found
    trace = Delegator(c).decide_stream(simulate_cascade(500, seed=2).dv)
    assert trace.delegated is not None
    assert not trace.delegated.any() and not trace.statistic.any() and not trace.alarmed


def test_budget_of_one_has_no_monitor() -> None:
    cal = simulate_cascade(200, seed=1)
    c = calibrate_budget_only(cal.dv, alpha=1.0)
    dl = Delegator(c)
    assert dl.monitor is None
    trace = dl.decide_stream(cal.dv)
    assert trace.delegated is not None and trace.delegated.all()
    assert not trace.statistic.any() and trace.alarm_step is None


def test_output_combines_scores() -> None:
    cal = simulate_cascade(600, seed=6)
    c = calibrate_ctd(cal.labels, cal.probe, cal.expert, cal.dv, alpha=0.2)
    dl = Delegator(c, monitor=False)
    state = dl.init()
    state, hi = dl.update(state, float(cal.dv.max()) + 1.0)
    state, lo = dl.update(state, float(cal.dv.min()) - 1.0)
    assert hi.delegated and not lo.delegated
    assert dl.output(0.2, 0.9, hi) == 0.9
    assert dl.output(0.2, 0.9, True, merge="average") == pytest.approx(0.55)
    assert dl.output(0.2, None, lo) == 0.2
    with pytest.raises(ValueError, match="expert"):
        dl.output(0.2, None, hi)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="alpha"):
        BudgetMonitor(1.0)
    with pytest.raises(ValueError, match="alpha"):
        BudgetMonitor(0.0)
    with pytest.raises(ValueError, match="level"):
        BudgetMonitor(0.3, level=1.0)
    with pytest.raises(ValueError, match="strategy"):
        BudgetMonitor(0.3, strategy="kelly")
    with pytest.raises(ValueError, match="max_bet_fraction"):
        BudgetMonitor(0.3, max_bet_fraction=1.0)
    m = BudgetMonitor(0.3)
    with pytest.raises(ValueError, match="delegated"):
        m.update(m.init(), 2)
    with pytest.raises(TypeError, match="state"):
        m.update(None, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delegated"):
        m.run([0, 1, 3])
    with pytest.raises(ValueError, match="delegated"):
        budget_log_eprocess([0.5], alpha=0.3)
    cal = simulate_cascade(300, seed=0)
    c = calibrate_ctd(cal.labels, cal.probe, cal.expert, cal.dv, alpha=0.3)
    dl = Delegator(c)
    with pytest.raises(ValueError, match="score"):
        dl.update(dl.init(), float("nan"))
    with pytest.raises(TypeError, match="score"):
        dl.update(dl.init(), "0.3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="calibration"):
        Delegator(0.3)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        dl.monitor = None


# ------------------------------------------------------------------ the protocol is the type
def _monitors() -> list[tuple[object, list[float]]]:
    """Every monitor of the package with a short valid input stream."""
    rng = np.random.default_rng(3)
    cal = simulate_trajectories(rng, 300)
    model = EValuatorModel.fit(cal)
    bits = [float(b) for b in (rng.uniform(size=60) < 0.4)]
    scores = rng.uniform(size=60).tolist()
    calib = calibrate_budget_only(rng.normal(size=500), alpha=0.2)
    return [
        (BettingMonitor(0.2, level=0.1), bits),
        (BettingMonitor(0.2, level=0.1, strategy="agrapa"), scores),
        (BudgetMonitor(0.2, level=0.1), [int(b) for b in bits]),
        (ThresholdMonitor(0.3), scores),
        (EProcessMonitor(model, ville_threshold(0.2)), scores),
        (Delegator(calib, level=0.1), rng.normal(size=60).tolist()),
    ]


def test_every_monitor_is_a_streaming_monitor_with_a_checked_state() -> None:
    for mon, _ in _monitors():
        assert isinstance(mon, StreamingMonitor)
        assert isinstance(mon, BatchMonitor) != isinstance(mon, Delegator)
        with pytest.raises(TypeError, match=r"^state"):
            mon.update(object(), 0.0)
        with pytest.raises(TypeError):  # positional only
            mon.update(state=mon.init(), x=0.0)  # type: ignore[call-arg]
    assert not isinstance(object(), StreamingMonitor)


def test_every_batch_path_gives_the_trace_of_its_updates() -> None:
    """One Trace type; run (decide_stream) == update in a loop, resumed from any state."""
    for mon, xs in _monitors():
        m: Any = mon
        state, steps = m.init(), []
        for x in xs:
            state, step = m.update(state, x)
            steps.append(step)
        batch = m.decide_stream if isinstance(mon, Delegator) else m.run
        first = batch(np.asarray(xs[:25]))
        rest = batch(np.asarray(xs[25:]), state=first.state)
        for trace, part, start in ((first, steps[:25], 0), (rest, steps[25:], 25)):
            assert isinstance(trace, Trace) and trace.start == start
            assert np.array_equal(trace.statistic, [s.statistic for s in part])
            assert np.array_equal(trace.x, [s.x for s in part])
            assert trace.alarm_step == part[-1].alarm_step
            assert np.array_equal(trace.alarm, [s.alarm for s in part])
        assert rest.state == state
        if isinstance(mon, Delegator):
            assert rest.delegated is not None
            assert np.array_equal(rest.delegated, [s.delegated for s in steps[25:]])


class _CountingMonitor:
    """A user's monitor: counts delegations, alarms at the third (no ``run``: loop fallback)."""

    def init(self) -> int:
        return 0

    def update(self, state: int, x: float, /) -> tuple[int, Step]:
        n = state + int(x)
        return n, Step(
            t=0,
            x=float(x),
            statistic=float(n),
            alarm=n >= 3,
            new_alarm=False,
            alarm_step=None if n < 3 else 0,
        )


def test_delegator_composes_any_streaming_monitor() -> None:
    cal = simulate_cascade(1000, seed=2)
    c = calibrate_budget_only(cal.dv, alpha=0.2)
    stream = simulate_cascade(300, seed=3).dv
    custom = Delegator(c, monitor=_CountingMonitor())
    trace = custom.decide_stream(stream)
    state, stats_one = custom.init(), []
    for s in stream:
        state, step = custom.update(state, float(s))
        stats_one.append(step.statistic)
    assert trace.delegated is not None
    assert np.array_equal(trace.statistic, np.cumsum(trace.delegated))
    assert np.array_equal(trace.statistic, stats_one) and trace.state == state
    # the online BettingMonitor passed as the monitor == the default budget monitor
    default = Delegator(c, level=0.05).decide_stream(stream)
    betting = Delegator(c, monitor=BettingMonitor(0.2, level=0.05)).decide_stream(stream)
    assert np.array_equal(default.statistic, betting.statistic)
    assert default.alarm_step == betting.alarm_step
    with pytest.raises(TypeError, match=r"^monitor"):
        Delegator(c, monitor="budget")  # type: ignore[arg-type]


def test_budget_monitor_is_the_betting_monitor_on_indicators() -> None:
    bits = (np.random.default_rng(4).uniform(size=400) < 0.3).astype(int)
    budget = BudgetMonitor(0.2, level=0.1, strategy="agrapa").run(bits)
    betting = BettingMonitor(0.2, level=0.1, strategy="agrapa").run(bits.astype(float))
    assert budget.state == betting.state and type(budget.state) is BettingState
    assert np.array_equal(budget.statistic, betting.statistic)
    assert budget.state.n_positive == bits.sum() and budget.state.rate == bits.mean()
    assert BettingState.from_json(budget.state.to_json()) == budget.state
    with pytest.raises(ValueError, match=r"^delegated"):
        BudgetMonitor(0.2).update(BudgetMonitor(0.2).init(), 0.5)
    with pytest.raises(ValueError, match=r"^alpha"):
        BudgetMonitor(1.0)
    assert BettingMonitor(0.2).level == BudgetMonitor(0.2).level == 0.05


def test_eprocess_monitor_keeps_only_what_its_model_reads() -> None:
    """Checkpoint size and update cost are bounded by the longest step model, not by t."""
    rng = np.random.default_rng(5)
    model = EValuatorModel.fit(simulate_trajectories(rng, 300))
    horizon = max(m.step for m in model.step_models)
    mon = EProcessMonitor(model, ville_threshold(0.05))
    assert mon.horizon == horizon
    xs = rng.uniform(0.3, 1.0, size=10_000)
    at_horizon = mon.run(xs[:horizon]).state
    calls = []
    original = model.log_ratio

    def counting(tr: Trajectories) -> Any:
        calls.append(tr.n_steps)
        return original(tr)

    object.__setattr__(model, "log_ratio", counting)
    try:
        trace = mon.run(xs[horizon:], state=at_horizon)
    finally:
        object.__delattr__(model, "log_ratio")
    assert calls == []  # past the horizon an update reads nothing: O(1), not O(t)
    end = trace.state
    assert end.t == 10_000 and len(end.prefix) == horizon
    assert len(end.to_json()) <= len(at_horizon.to_json()) + 16  # only t's digits grow
    # the same log M_t as the model on the whole trajectory
    full = Trajectories(scores=xs[: horizon + 40], offsets=np.array([0, horizon + 40]))
    state = mon.init()
    for x in xs[: horizon + 40]:
        state, step = mon.update(state, float(x))
    assert step.statistic == float(model.log_ratio(full)[-1])


def test_step_repr_shows_every_field() -> None:
    step = Step(t=3, x=0.5, statistic=1.25, alarm=True, new_alarm=False, alarm_step=2)
    text = repr(step)
    for name in (
        "t=3",
        "x=0.5",
        "statistic=1.25",
        "alarm=True",
        "new_alarm=False",
        "alarm_step=2",
        "delegated=None",
    ):
        assert name in text
