"""Population-level betting e-process: streaming == vectorised, anytime validity, power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _monitor_sim import simulate_trajectories
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ctd_stats._streaming import NO_ALARM
from ctd_stats.online._bet import bet_path, bet_start, bet_step, first_bet, log_wealth_path
from ctd_stats.online.alarm_calibration import crc_threshold
from ctd_stats.online.betting import BET_STRATEGIES, BettingMonitor, BettingState, betting_eprocess
from ctd_stats.online.monitors import first_alarm_steps


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1)), min_size=1, max_size=60),
    st.sampled_from(BET_STRATEGIES),
    st.floats(0.05, 0.5),
)
def test_streaming_equals_vectorised(xs: list[float], strategy: str, eps: float) -> None:
    mon = BettingMonitor(alpha=eps, level=0.1, strategy=strategy)
    state = mon.init()
    log_w, bets = [], []
    for x in xs:
        bets.append(state.next_bet)
        state, step = mon.update(state, x)
        log_w.append(step.statistic)
    path = betting_eprocess(xs, alpha=eps, level=0.1, strategy=strategy)
    np.testing.assert_array_equal(path.log_wealth, log_w)
    np.testing.assert_array_equal(path.bets, bets)
    expected_alarm = NO_ALARM if state.alarm_step is None else state.alarm_step
    assert int(path.alarm_step) == expected_alarm
    # bets are in [0, c/eps] and the wealth is the product of the betting factors
    assert np.all((path.bets >= 0) & (path.bets <= 0.5 / eps + 1e-12))
    expected = np.cumsum(np.log1p(path.bets * (np.asarray(xs) - eps)))
    np.testing.assert_allclose(path.log_wealth, expected, rtol=1e-10, atol=1e-12)
    # two streams at once give the same rows
    both = betting_eprocess(np.vstack([xs, xs]), alpha=eps, level=0.1, strategy=strategy)
    np.testing.assert_array_equal(both.log_wealth[1], path.log_wealth)


def test_alarm_is_absorbing_and_first_crossing() -> None:
    mon = BettingMonitor(alpha=0.1, level=0.2, strategy="fixed")
    state = mon.init()
    first = None
    for t in range(40):
        state, step = mon.update(state, 1.0 if t < 10 else 0.0)
        if step.new_alarm:
            first = t
        if first is not None:
            assert step.alarm and step.alarm_step == first
    assert first is not None and state.alarm_step == first
    path = betting_eprocess([1.0] * 10 + [0.0] * 30, alpha=0.1, level=0.2, strategy="fixed")
    assert int(path.alarm_step) == first
    assert path.log_wealth[first] >= math.log(5) > path.log_wealth[first - 1]


@pytest.mark.validity
@pytest.mark.parametrize("strategy", BET_STRATEGIES)
@pytest.mark.parametrize("mean_gap", [0.0, 0.03])
def test_anytime_validity_under_the_null(strategy: str, mean_gap: float) -> None:
    rng = np.random.default_rng(100)
    n, horizon, eps, alpha = 2000, 1000, 0.1, 0.05
    x = (rng.uniform(size=(n, horizon)) < eps - mean_gap).astype(float)
    path = betting_eprocess(x, alpha=eps, level=alpha, strategy=strategy)
    assert np.sum(path.alarm_step != NO_ALARM) <= stats.binom.ppf(1 - 1e-4, n, alpha)


@pytest.mark.validity
def test_non_predictable_bets_fail_the_same_check() -> None:
    """Choosing the bet after seeing x_t (not predictable) destroys validity."""
    rng = np.random.default_rng(101)
    n, horizon, eps, alpha = 2000, 300, 0.1, 0.05
    x = (rng.uniform(size=(n, horizon)) < eps).astype(float)
    peeking_bets = np.where(x > eps, 0.5 / eps, 0.0)
    log_w = np.cumsum(np.log1p(peeking_bets * (x - eps)), axis=1)
    crossed = np.sum((log_w >= -math.log(alpha)).any(axis=1))
    assert crossed > stats.binom.ppf(1 - 1e-4, n, alpha)


@pytest.mark.validity
@pytest.mark.parametrize("strategy", ["ons", "agrapa"])
def test_power_when_the_rate_exceeds_eps(strategy: str) -> None:
    rng = np.random.default_rng(102)
    x = (rng.uniform(size=(500, 1000)) < 0.2).astype(float)
    path = betting_eprocess(x, alpha=0.1, level=0.05, strategy=strategy)
    assert np.mean(path.alarm_step != NO_ALARM) > 0.95


@pytest.mark.validity
def test_watching_a_deployed_monitor() -> None:
    """A CRC-calibrated monitor passes; one whose threshold drifted up is caught."""
    rng = np.random.default_rng(103)
    eps = 0.2
    cal = simulate_trajectories(rng, 2000)
    lam = crc_threshold(cal, alpha=eps).threshold
    stream = simulate_trajectories(rng, 6000, correct_fraction=1.0)
    good = (first_alarm_steps(stream, lam) != NO_ALARM).astype(float)
    broken = (first_alarm_steps(stream, lam + 0.08) != NO_ALARM).astype(float)
    assert good.mean() < eps < broken.mean()
    assert int(betting_eprocess(good, alpha=eps, level=0.05).alarm_step) == NO_ALARM
    assert int(betting_eprocess(broken, alpha=eps, level=0.05).alarm_step) != NO_ALARM


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="x"):
        betting_eprocess([0.1, 1.5], alpha=0.1)
    with pytest.raises(ValueError, match="x"):
        betting_eprocess([0.1, math.nan], alpha=0.1)
    with pytest.raises(ValueError, match=r"^alpha:"):
        betting_eprocess([0.1], alpha=1.0)
    with pytest.raises(ValueError, match=r"^level:"):
        betting_eprocess([0.1], alpha=0.1, level=0.0)
    with pytest.raises(ValueError, match=r"^strategy:"):
        BettingMonitor(alpha=0.1, level=0.1, strategy="kelly")
    with pytest.raises(ValueError, match=r"^max_bet_fraction:"):
        BettingMonitor(alpha=0.1, level=0.1, max_bet_fraction=1.0)
    mon = BettingMonitor(alpha=0.1, level=0.1)
    with pytest.raises(ValueError, match="x"):
        mon.update(mon.init(), -0.1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 1.0, 0.3]), min_size=1, max_size=80),
    st.sampled_from(BET_STRATEGIES),
    st.data(),
)
def test_checkpoint_restore_gives_the_same_steps(
    xs: list[float], strategy: str, data: st.DataObject
) -> None:
    """JSON checkpoint at a random point, restore, continue: the same Steps as one run."""
    mon = BettingMonitor(alpha=0.1, level=0.2, strategy=strategy)
    cut = data.draw(st.integers(0, len(xs)))
    state, straight = mon.init(), []
    for x in xs:
        state, step = mon.update(state, x)
        straight.append(step)
    state, resumed = mon.init(), []
    for x in xs[:cut]:
        state, step = mon.update(state, x)
        resumed.append(step)
    state = BettingState.from_json(state.to_json())
    for x in xs[cut:]:
        state, step = mon.update(state, x)
        resumed.append(step)
    assert resumed == straight


def test_state_json_refuses_tampering() -> None:
    mon = BettingMonitor(alpha=0.1, level=0.2)
    state, _ = mon.update(mon.init(), 1.0)
    text = state.to_json()
    assert BettingState.from_json(text) == state
    with pytest.raises(ValueError, match=r"^text:"):
        BettingState.from_json(text.replace('"t": 1', '"t": 2'))
    with pytest.raises(ValueError, match=r"^text:"):
        BettingState.from_json(text.replace('"schema_version": 1', '"schema_version": 99'))
    with pytest.raises(ValueError, match=r"^text:"):
        BettingState.from_json(text[:-5])
    assert repr(state).startswith("BettingState(t=1")
    assert "of 1 streams" in repr(betting_eprocess([1.0, 0.0], alpha=0.1))


@pytest.mark.parametrize("strategy", BET_STRATEGIES)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("per_stream_alpha", [False, True])
def test_vectorised_bet_step_equals_scalar_bet_path(
    strategy: str, seed: int, per_stream_alpha: bool
) -> None:
    """One step across m streams (bet_step) == the scalar kernel stream by stream, bit for bit."""
    rng = np.random.default_rng(seed)
    m, horizon = 9, 150
    alpha = rng.uniform(0.02, 0.6, m) if per_stream_alpha else float(rng.uniform(0.02, 0.6))
    cap = 0.5 / np.asarray(alpha) if per_stream_alpha else 0.5 / float(alpha)
    binary = rng.integers(0, 2, (horizon, m)).astype(float)
    x = np.where(rng.uniform(size=(horizon, m)) < 0.5, binary, rng.uniform(size=(horizon, m)))
    state = bet_start(m, strategy, cap, 0.5)
    log_w = np.zeros(m)
    bets, logs = [], []
    for t in range(horizon):
        state, used = bet_step(state, x[t], alpha, cap, 0.5, strategy)
        log_w = log_w + np.log1p(used * (x[t] - alpha))
        bets.append(used)
        logs.append(log_w)
    for j in range(m):
        a_j = float(np.broadcast_to(alpha, (m,))[j])
        c_j = float(np.broadcast_to(cap, (m,))[j])
        start = (0, first_bet(strategy, c_j, 0.5), 0.0, 0.0, 1.0)
        end, path_bets = bet_path(start, x[:, j].tolist(), a_j, c_j, 0.5, strategy)
        np.testing.assert_array_equal(np.array(bets)[:, j], path_bets)
        assert end == (state[0], *(float(arr[j]) for arr in state[1:]))
        expected_log = log_wealth_path(0.0, path_bets, x[:, j], a_j)
        np.testing.assert_array_equal(np.array(logs)[:, j], expected_log)
