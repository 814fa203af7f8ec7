"""The cascade's streaming protocol (checkpoint / restore, batch = step by step, one bet update)
and validate-once at the public edge."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ctd_stats._validation as validation
from ctd_stats.cascade import (
    BudgetMonitor,
    DelegationSession,
    Delegator,
    DelegatorState,
    calibrate_ctd,
    calibrate_uncertainty,
    simulate_cascade,
    sweep,
)
from ctd_stats.online.betting import BettingState, betting_eprocess

strategies = st.sampled_from(["ons", "agrapa", "fixed"])
_CAL = simulate_cascade(600, seed=30)
_CALIBRATIONS = {
    "dv": calibrate_ctd(_CAL.labels, _CAL.probe, _CAL.expert, _CAL.dv, alpha=0.2),
    "uncertainty": calibrate_uncertainty(_CAL.labels, _CAL.probe, _CAL.expert, alpha=0.3),
}


@given(
    st.integers(1, 400),
    st.floats(0.01, 0.9),
    st.floats(0.0, 1.0),
    strategies,
    st.floats(0.05, 0.95),
    st.integers(0, 10_000),
)
def test_scalar_bets_equal_the_online_kernel_bit_for_bit(
    n: int, alpha: float, rate: float, strategy: str, cap: float, seed: int
) -> None:
    x = (np.random.default_rng(seed).random(n) < rate).astype(int)
    ref = betting_eprocess(x.astype(float), alpha=alpha, strategy=strategy, max_bet_fraction=cap)
    trace = BudgetMonitor(alpha, strategy=strategy, max_bet_fraction=cap).run(x)
    assert np.array_equal(trace.statistic, ref.log_wealth)


@given(st.integers(1, 300), st.data(), strategies, st.floats(0.05, 0.6), st.integers(0, 999))
def test_budget_monitor_checkpoint_restore(
    n: int, data: st.DataObject, strategy: str, alpha: float, seed: int
) -> None:
    x = (np.random.default_rng(seed).random(n) < alpha * 1.4).astype(int).tolist()
    k = data.draw(st.integers(0, n))
    mon = BudgetMonitor(alpha, level=0.1, strategy=strategy)
    state, steps = mon.init(), []
    for v in x:
        state, step = mon.update(state, v)
        steps.append(step)
    resumed = mon.init()
    for v in x[:k]:
        resumed, _ = mon.update(resumed, v)
    resumed = BettingState.from_json(resumed.to_json())
    tail = []
    for v in x[k:]:
        resumed, step = mon.update(resumed, v)
        tail.append(step)
    assert tail == steps[k:] and resumed == state


@given(
    st.sampled_from(["dv", "uncertainty"]),
    st.integers(1, 300),
    st.data(),
    strategies,
    st.integers(0, 999),
)
def test_delegator_checkpoint_restore_and_stream_equal_steps(
    signal: str, n: int, data: st.DataObject, strategy: str, seed: int
) -> None:
    stream = simulate_cascade(n, seed=seed, dv_offset=0.4)
    scores = (stream.probe if signal == "uncertainty" else stream.dv).tolist()
    k = data.draw(st.integers(0, n))
    dl = Delegator(_CALIBRATIONS[signal], strategy=strategy, level=0.2)
    session = DelegationSession(dl)
    steps = [session.decide(s) for s in scores]
    # checkpoint at step k through JSON, continue: the same Steps (decisions and e-values)
    first = DelegationSession(dl)
    for s in scores[:k]:
        first.decide(s)
    restored = DelegationSession.restore(dl, first.checkpoint())
    assert [restored.decide(s) for s in scores[k:]] == steps[k:]
    assert restored.state == session.state
    # the vectorised path, in two stretches, gives the same decisions, e-values and alarm
    a = dl.decide_stream(np.asarray(scores[:k]), state=None) if k else None
    b = (
        dl.decide_stream(np.asarray(scores[k:]), state=None if a is None else a.state)
        if k < n
        else None
    )
    delegated = np.concatenate([t.delegated for t in (a, b) if t is not None])
    log_e = np.concatenate([t.statistic for t in (a, b) if t is not None])
    assert np.array_equal(delegated, [bool(s.delegated) for s in steps])
    assert np.array_equal(log_e, [s.statistic for s in steps])
    last = b if b is not None else a
    assert last is not None and last.state == session.state
    assert last.alarm_step == steps[-1].alarm_step
    assert DelegatorState.from_json(last.state.to_json()) == last.state


def test_sweep_validates_nothing_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CascadeTable and CTDSettings are validated when built; sweep only runs kernels."""
    table = simulate_cascade(600, seed=31)
    calls: list[str] = []
    import ctd_stats.cascade as pkg

    for name in ("as_float_array", "as_binary_array", "as_int_array"):
        original = getattr(validation, name)

        def counting(*args: object, _o: object = original, _n: str = name, **kw: object) -> object:
            calls.append(f"{_n}({args[1] if len(args) > 1 else kw.get('name')})")
            return _o(*args, **kw)  # type: ignore[operator]

        for mod in vars(pkg).values():
            if getattr(mod, "__name__", "").startswith("ctd_stats.cascade.") and hasattr(mod, name):
                monkeypatch.setattr(mod, name, counting)
    sweep(table)
    assert calls == []


def test_the_counter_sees_public_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the test above: a user-given grid is validated, and counted, once."""

    calls: list[str] = []
    original = validation.as_float_array

    def counting(*args: object, **kw: object) -> object:
        calls.append(str(args[1]))
        return original(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(validation, "as_float_array", counting)
    table = simulate_cascade(600, seed=31)
    sweep(table, grid=np.linspace(-2, 2, 50))
    assert calls.count("grid") == 1
