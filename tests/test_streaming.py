"""Tests of ctd_stats.cascade.streaming: the one-at-a-time Delegator and the budget monitor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ctd_stats.cascade.delegation import calibrate_budget_only, calibrate_ctd, calibrate_uncertainty
from ctd_stats.cascade.simulation import simulate_cascade
from ctd_stats.cascade.streaming import (
    BudgetMonitor,
    Delegator,
    budget_log_eprocess,
    first_alarm_times,
)


def test_e_process_hand_value() -> None:
    # fixed bet λ = 1.0 · 0.5 / α = 2 at α = 0.25:
    # D = 1 → ×(1 + 2·0.75) = 2.5, D = 0 → ×(1 − 2·0.25) = 0.5
    log_k = budget_log_eprocess([1, 1, 0], 0.25, strategy="fixed", fixed_fraction=1.0)
    assert np.allclose(np.exp(log_k), [2.5, 6.25, 3.125])


def test_update_and_run_agree() -> None:
    d = (np.random.default_rng(0).random(300) < 0.35).astype(int)
    a, b = BudgetMonitor(0.3), BudgetMonitor(0.3)
    steps = [a.update(int(x)) for x in d]
    trace = b.run(d)
    assert np.allclose([math.log(s.e_value) for s in steps], trace.log_e_values)
    assert a.alarm_time == b.alarm_time
    assert np.allclose(trace.log_e_values, budget_log_eprocess(d, 0.3))
    # run() continues from the current state
    c = BudgetMonitor(0.3)
    c.run(d[:100])
    assert np.allclose(c.run(d[100:]).log_e_values, trace.log_e_values[100:])


@pytest.mark.validity
def test_monitor_is_anytime_valid_at_the_boundary_of_the_null() -> None:
    """Streams delegating at exactly rate α: #ever-alarmed ≤ binom.ppf(1 − 1e−4, N, level)."""
    n_streams, length, alpha, level = 1000, 1000, 0.3, 0.05
    d = np.random.default_rng(1).random((n_streams, length)) < alpha
    alarms = first_alarm_times(budget_log_eprocess(d, alpha), level) > 0
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
    first = first_alarm_times(budget_log_eprocess(d, 0.3), 0.05)
    assert np.all(first > 0)
    assert np.median(first) < 600


@pytest.mark.validity
def test_delegator_end_to_end_no_alarm_then_alarm_under_shift() -> None:
    """Calibrate CTD once; exchangeable streams rarely alarm, a DV shift alarms promptly."""
    cal = simulate_cascade(800, seed=3)
    c = calibrate_ctd(dv=cal.dv, probe=cal.probe, expert=cal.expert, labels=cal.labels, alpha=0.3)
    assert c.found
    n_streams, length, level = 400, 1500, 0.05
    same = simulate_cascade(n_streams * length, seed=4).dv.reshape(n_streams, length)
    shifted = simulate_cascade(n_streams * length, seed=5, dv_offset=0.5).dv.reshape(
        n_streams, length
    )
    # each decision uses one score only, so the policy can be applied to all streams at once
    first_same = first_alarm_times(budget_log_eprocess(c.delegate(same), 0.3), level)
    first_shift = first_alarm_times(budget_log_eprocess(c.delegate(shifted), 0.3), level)
    # calibration succeeded (true rate ≤ α), so same-distribution streams are under the null
    assert (first_same > 0).sum() <= stats.binom.ppf(1 - 1e-4, n_streams, level)
    assert (first_shift > 0).mean() >= 0.95
    assert np.median(first_shift[first_shift > 0]) < 1000
    # the Delegator (one input at a time) reproduces the vectorised alarm times
    for i in range(3):
        _, trace = Delegator(c, level=level).decide_stream(shifted[i])
        assert trace is not None
        assert (trace.alarm_time or 0) == first_shift[i]


def test_decide_matches_decide_stream_and_policy() -> None:
    cal = simulate_cascade(600, seed=6)
    c = calibrate_ctd(dv=cal.dv, probe=cal.probe, expert=cal.expert, labels=cal.labels, alpha=0.2)
    stream = simulate_cascade(400, seed=7)
    one = Delegator(c)
    decisions = [one.decide(float(x)) for x in stream.dv]
    batch, trace = Delegator(c).decide_stream(stream.dv)
    assert np.array_equal([d.delegate for d in decisions], batch)
    assert np.array_equal(batch, stream.dv > c.threshold)
    assert trace is not None and (trace.alarm_time is None) == (not decisions[-1].alarm)
    assert [d.t for d in decisions] == list(range(1, 401))


def test_unc_calibrated_delegator_takes_probe_scores() -> None:
    cal = simulate_cascade(600, seed=8)
    c = calibrate_uncertainty(probe=cal.probe, expert=cal.expert, labels=cal.labels, alpha=0.3)
    dl = Delegator(c, monitor=False)
    p = float(np.median(cal.probe))
    dec = dl.decide(p)
    assert dec.delegate == bool(c.delegate(np.array([p]))[0])
    assert dec.e_value == 1.0 and not dec.alarm
    with pytest.raises(ValueError, match="score"):
        dl.decide(1.5)


def test_no_threshold_never_delegates_and_never_alarms() -> None:
    cal = simulate_cascade(30, seed=1)
    c = calibrate_budget_only(scores=cal.dv, alpha=0.01)
    assert not c.found
    dl = Delegator(c)
    d, trace = dl.decide_stream(simulate_cascade(500, seed=2).dv)
    assert not d.any() and trace is not None and not trace.alarmed


def test_output_combines_scores() -> None:
    cal = simulate_cascade(600, seed=6)
    c = calibrate_ctd(dv=cal.dv, probe=cal.probe, expert=cal.expert, labels=cal.labels, alpha=0.2)
    dl = Delegator(c, monitor=False)
    hi = dl.decide(float(cal.dv.max()) + 1.0)
    lo = dl.decide(float(cal.dv.min()) - 1.0)
    assert hi.delegate and not lo.delegate
    assert dl.output(0.2, 0.9, hi) == 0.9
    assert dl.output(0.2, 0.9, hi, merge="average") == pytest.approx(0.55)
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
        m.update(2)
    with pytest.raises(ValueError, match="delegated"):
        m.run([0, 1, 3])
    with pytest.raises(ValueError, match="delegated"):
        budget_log_eprocess([0.5], 0.3)
    cal = simulate_cascade(300, seed=0)
    c = calibrate_ctd(dv=cal.dv, probe=cal.probe, expert=cal.expert, labels=cal.labels, alpha=0.3)
    dl = Delegator(c)
    with pytest.raises(ValueError, match="score"):
        dl.decide(float("nan"))
    with pytest.raises(TypeError, match="score"):
        dl.decide("0.3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="calibration"):
        Delegator(0.3)  # type: ignore[arg-type]
