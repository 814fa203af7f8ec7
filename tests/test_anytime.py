"""Exact and unit tests of the anytime-valid LTT certifier and the audit-weighted losses."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from _monitor_sim import simulate_trajectories
from hypothesis import given, settings
from hypothesis import strategies as st

import ctd_stats.online.anytime_ltt as anytime_mod
from ctd_stats import learn_then_test
from ctd_stats.online import LateOutcomeCertifier, false_alarm_losses
from ctd_stats.online._bet import bet_block, bet_start, bet_step
from ctd_stats.online.anytime_audit import importance_weighted_losses
from ctd_stats.online.anytime_ltt import AnytimeLTT, AnytimeLTTState, CertificationStep
from ctd_stats.online.betting import betting_eprocess
from ctd_stats.online.monitors import alarm_matrix

GRID = np.linspace(0.0, 1.0, 21)


def _any(value: object) -> Any:
    """Deliberately wrong inputs, past the type checker."""
    return value


def _budget(seed: int, n: int, rate_shift: float = 0.0) -> np.ndarray:
    scores = np.random.default_rng(seed).uniform(size=n) - rate_shift
    return (scores[:, None] > GRID[None, :]).astype(np.float64)


def _stream(mon: AnytimeLTT, losses: np.ndarray) -> tuple[AnytimeLTTState, list[CertificationStep]]:
    state, steps = mon.init(), []
    for x in losses:
        state, step = mon.update(state, x)
        steps.append(step)
    return state, steps


@pytest.mark.parametrize("strategy", ["ons", "agrapa", "fixed"])
@pytest.mark.parametrize("bound", [1.0, 10.0])
def test_wealth_is_the_betting_kernels(strategy: str, bound: float) -> None:
    """Threshold j's log wealth = the betting monitor on x = 1 − L/B at null rate 1 − α/B."""
    rng = np.random.default_rng(3)
    losses = bound * (rng.uniform(size=(400, 6)) < np.linspace(0.05, 0.4, 6))
    mon = AnytimeLTT(6, alpha=0.2, delta=0.05, order="ascending", bound=bound, strategy=strategy)
    state, _ = _stream(mon, losses)
    for j in range(6):
        ref = betting_eprocess(
            1.0 - losses[:, j] / bound, alpha=1.0 - 0.2 / bound, level=0.05, strategy=strategy
        )
        assert state.log_wealth[0, j] == ref.log_wealth[-1]
        crossed = bool((ref.log_wealth >= -np.log(0.05)).any())
        assert state.crossed[0, j] == crossed


@settings(max_examples=30, deadline=None)
@given(
    strategy=st.sampled_from(["ons", "agrapa", "fixed"]),
    per_stream=st.booleans(),
    cut=st.integers(0, 60),
    seed=st.integers(0, 2**16),
    m=st.sampled_from([7, 40]),  # running sums by cumsum (< 32 columns) or row by row
)
def test_bet_block_equals_bet_step_calls_bit_for_bit(
    strategy: str, per_stream: bool, cut: int, seed: int, m: int
) -> None:
    """The time-vectorised block == T calls of bet_step, from a fresh or a carried state."""
    rng = np.random.default_rng(seed)
    horizon = 60
    alpha: float | np.ndarray = rng.uniform(0.02, 0.9, m) if per_stream else 0.3
    cap = 0.5 / np.asarray(alpha) if per_stream else 0.5 / 0.3
    binary = rng.integers(0, 2, (horizon, m)).astype(float)
    x = np.where(rng.uniform(size=(horizon, m)) < 0.5, binary, rng.uniform(size=(horizon, m)))
    state = bet_start(m, strategy, cap, 0.5)
    for row in x[:cut]:  # carried state: the block continues a stream mid-way
        state, _ = bet_step(state, row, alpha, cap, 0.5, strategy)
    loop, used_loop = state, []
    for row in x[cut:]:
        loop, used = bet_step(loop, row, alpha, cap, 0.5, strategy)
        used_loop.append(used)
    block, used_block = bet_block(state, x[cut:], alpha, cap, 0.5, strategy)
    assert block[0] == loop[0]
    for got, want in zip(block[1:], loop[1:], strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(used_block, np.reshape(used_loop, (-1, m)))
    assert used_block.shape == (horizon - cut, m)
    # the same into reused, oversized, dirty buffers
    work = (np.full((horizon + 3, m), np.nan), np.ones((horizon + 3, m)), np.ones((horizon + 3, m)))
    again, used_again = bet_block(state, x[cut:], alpha, cap, 0.5, strategy, work=work)
    np.testing.assert_array_equal(used_again, used_block)
    for got, want in zip(again[1:], block[1:], strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("strategy", ["ons", "agrapa", "fixed"])
@pytest.mark.parametrize("risks", [1, 2])
def test_batch_equals_streaming_bit_for_bit(
    risks: int, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    losses = _budget(0, 900)
    if risks == 2:
        losses = np.stack([losses, _budget(1, 900, rate_shift=0.05)], axis=1)
    alpha = 0.2 if risks == 1 else [0.2, 0.25]
    mon = AnytimeLTT(21, alpha=alpha, delta=0.1, order="descending", strategy=strategy)
    state, steps = _stream(mon, losses)
    monkeypatch.setattr(anytime_mod, "_BLOCK_CELLS", 37 * 21 * risks)  # several blocks
    out = mon.run(mon.init(), losses)
    assert out.state == state
    assert [s.index for s in steps] == [None if i < 0 else int(i) for i in out.index]
    assert [s.n_certified for s in steps] == out.n_certified.tolist()
    assert state.found and state.index is not None
    # Two halves, streaming then batch, give the same state too.
    half = mon.run(mon.init(), losses[:450]).state
    assert mon.run(half, losses[450:]).state == state


def test_certified_is_a_growing_prefix_of_the_order() -> None:
    order = np.array([20, 18, 19, 16, 17, 15, 14])  # partial, not monotone in the grid
    mon = AnytimeLTT(21, alpha=0.3, delta=0.1, order=order)
    state, steps = mon.init(), []
    previous = np.zeros(21, dtype=bool)
    for x in _budget(4, 1500):
        state, step = mon.update(state, x)
        assert np.all(state.certified >= previous)  # only grows
        k = int(state.certified.sum())
        assert np.array_equal(np.flatnonzero(state.certified), np.sort(order[:k]))
        assert state.index == (int(order[k - 1]) if k else None)
        assert step.new_alarm == (k > int(previous.sum()))
        assert np.all(state.certified_step[state.certified] <= step.t)
        previous = state.certified
        steps.append(step)
    assert state.found and 0 < int(state.certified.sum()) < order.size
    first = next(s for s in steps if s.alarm)
    assert first.alarm_step == first.t and steps[-1].alarm_step == first.t


def test_step_and_state_protocol() -> None:
    mon = AnytimeLTT(3, alpha=0.2, delta=0.1, order="ascending")
    state = mon.init()
    new, step = mon.update(state, [0.0, 1.0, 0.5])
    assert isinstance(step, CertificationStep) and step.t == 0 and not step.alarm
    assert new.t == 1 and state.t == 0  # pure: the old state is unchanged
    with pytest.raises(ValueError):
        new.log_wealth[0, 0] = 1.0  # read-only arrays
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(new, "t", 5)  # noqa: B010 (a frozen field)
    with pytest.raises(TypeError, match=r"^state"):
        mon.update(_any("not a state"), [0.0, 0.0, 0.0])
    with pytest.raises(TypeError):
        _any(mon.update)(state=state, x=[0.0, 0.0, 0.0])
    assert "index" in repr(new) and "CertificationStep" in repr(step)


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(min_value=0, max_value=300), seed=st.integers(0, 2**16))
def test_json_checkpoint_continues_bit_identically(cut: int, seed: int) -> None:
    losses = _budget(seed, 300)
    mon = AnytimeLTT(21, alpha=0.2, delta=0.1, order="descending", strategy="ons")
    full = mon.run(mon.init(), losses).state
    head = mon.run(mon.init(), losses[:cut]).state if cut else mon.init()
    restored = mon.restore(head.to_json())
    assert restored == head
    rest = mon.run(restored, losses[cut:]).state if cut < 300 else restored
    assert rest == full
    assert rest.to_json() == full.to_json()


def test_state_refuses_a_non_array_field() -> None:
    state = AnytimeLTT(3, alpha=0.2, delta=0.1, order="ascending").init()
    with pytest.raises(TypeError, match=r"^sum_x"):
        dataclasses.replace(state, sum_x=_any(None))


@pytest.mark.parametrize(
    "other",
    [
        dict(m=20, order="descending"),
        dict(order="ascending"),
        dict(alpha=0.25),
        dict(delta=0.05),
        dict(bound=2.0),
        dict(strategy="ons"),
    ],
)
def test_checkpoint_refused_by_another_configuration(other: dict) -> None:
    base = dict(m=21, alpha=0.2, delta=0.1, order="descending")
    mon = _any(AnytimeLTT)(**base)
    text = mon.run(mon.init(), _budget(0, 50)).state.to_json()
    changed = AnytimeLTT(**{**base, **other})
    with pytest.raises(ValueError, match=r"^state"):
        changed.restore(text)
    with pytest.raises(ValueError, match=r"^state"):
        changed.update(AnytimeLTTState.from_json(text), np.zeros(changed.m))


def test_restart_spends_delta_over_epochs() -> None:
    mon = AnytimeLTT(21, alpha=0.2, delta=0.1, order="descending", max_epochs=None)
    deltas = [mon.epoch_delta(e) for e in range(40)]
    assert deltas[0] == 0.05 and sum(deltas) <= 0.1
    state = mon.run(mon.init(), _budget(0, 800)).state
    assert state.found
    fresh = mon.restart(state)
    assert fresh.epoch == 1 and fresh.epoch_start == 800 and fresh.t == 800
    assert not fresh.found and not fresh.crossed.any() and not fresh.log_wealth.any()
    _after, steps = _stream(mon, _budget(1, 5))
    assert steps[0].t == 0
    cont, step = mon.update(fresh, _budget(1, 1)[0])
    assert step.t == 800 and cont.epoch == 1
    once = AnytimeLTT(21, alpha=0.2, delta=0.1, order="descending")
    assert once.epoch_delta(0) == 0.1
    with pytest.raises(ValueError, match=r"^state"):
        once.restart(once.init())
    three = AnytimeLTT(21, alpha=0.2, delta=0.1, order="descending", max_epochs=3)
    assert three.epoch_delta(2) == 0.1 / 3
    s = three.restart(three.restart(three.init()))
    with pytest.raises(ValueError, match=r"^state"):
        three.restart(s)


def test_warm_start_splits_delta() -> None:
    batch = learn_then_test(_budget(9, 2000), alpha=0.2, delta=0.02, order="descending")
    mon = AnytimeLTT(21, alpha=0.2, delta=0.1, order="descending", warm_start=batch)
    assert mon.epoch_delta(0) == 0.1 - 0.02
    state = mon.init()
    assert state.index is None and mon.deployable_index(state) == batch.select_index()
    late = mon.run(state, _budget(1, 3000)).state
    best = max(
        [i for i in (late.index, batch.select_index()) if i is not None],
        key=lambda i: _any(batch.order).tolist().index(i),
    )
    assert mon.deployable_index(late) == best
    # after a restart only the online certificate speaks (post-drift data)
    mon2 = AnytimeLTT(21, alpha=0.2, delta=0.1, order="descending", warm_start=batch, max_epochs=2)
    assert mon2.deployable_index(mon2.restart(mon2.init())) is None
    for bad in (
        dict(delta=0.02),
        dict(alpha=0.3),
        dict(order="ascending"),
        dict(m=20),
    ):
        kw = dict(m=21, alpha=0.2, delta=0.1, order="descending", warm_start=batch)
        kw.update(bad)
        with pytest.raises(ValueError, match=r"^warm_start|^order"):
            _any(AnytimeLTT)(**kw)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(m=0), "m"),
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=1.0), "alpha"),
        (dict(alpha=[0.1, 0.2], bound=[1.0, 1.0, 1.0]), "bound"),
        (dict(bound=-1.0), "bound"),
        (dict(delta=1.0), "delta"),
        (dict(order=[0, 0]), "order"),
        (dict(order=[5]), "order"),
        (dict(strategy="kelly"), "strategy"),
        (dict(max_bet_fraction=1.0), "max_bet_fraction"),
        (dict(max_epochs=0), "max_epochs"),
    ],
)
def test_bad_configuration(kwargs: dict, name: str) -> None:
    base = dict(m=3, alpha=0.2, delta=0.1, order="ascending")
    with pytest.raises((ValueError, TypeError), match=rf"^{name}"):
        AnytimeLTT(**{**base, **kwargs})


@pytest.mark.parametrize(
    "x", [[0.0, 0.0], [0.0, 0.0, 1.5], [0.0, -0.1, 0.0], [0.0, np.nan, 0.0], "abc"]
)
def test_bad_losses(x: object) -> None:
    mon = AnytimeLTT(3, alpha=0.2, delta=0.1, order="ascending")
    with pytest.raises((ValueError, TypeError), match=r"^x"):
        mon.update(mon.init(), _any(x))
    two = AnytimeLTT(3, alpha=[0.2, 0.3], delta=0.1, order="ascending")
    with pytest.raises(ValueError, match=r"^x"):
        two.update(two.init(), [0.0, 0.0, 0.0])  # two risks need (2, 3)
    with pytest.raises(ValueError, match=r"^losses"):
        mon.run(mon.init(), np.full((4, 3), 2.0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -0.1, 1.5])
def test_bad_losses_in_float64_arrays(bad: float) -> None:
    """float64 and bool arrays skip the conversion, not the checks."""
    mon = AnytimeLTT(3, alpha=0.2, delta=0.1, order="ascending")
    x = np.array([0.0, bad, 0.0])
    with pytest.raises(ValueError, match=r"^x"):
        mon.update(mon.init(), x)
    with pytest.raises(ValueError, match=r"^losses"):
        mon.run(mon.init(), np.tile(x, (5, 1)))
    half = AnytimeLTT(3, alpha=0.2, delta=0.1, order="ascending", bound=0.5)
    with pytest.raises(ValueError, match=r"^losses"):
        half.run(half.init(), np.eye(3, dtype=bool))  # True = 1 > bound
    assert half.run(half.init(), np.zeros((4, 3), dtype=bool)).state.t == 4


@pytest.mark.parametrize("strategy", ["ons", "agrapa"])
@pytest.mark.parametrize("bound", [1.0, 4.0])
def test_bool_and_float_losses_agree(bound: float, strategy: str) -> None:
    losses = _budget(2, 700) > 0.5
    mon = AnytimeLTT(21, alpha=0.2, delta=0.1, order="descending", bound=bound, strategy=strategy)
    ref = mon.run(mon.init(), losses.astype(np.float64))
    assert ref.state.found
    for same in (losses, np.asfortranarray(losses), losses.astype(np.int8)):
        out = mon.run(mon.init(), same)
        assert out.state == ref.state
        assert np.array_equal(out.index, ref.index)
    state, steps = _stream(mon, losses[:80])
    assert (state, steps) == _stream(mon, losses[:80].astype(np.float64))
    assert mon.run(mon.init(), losses[:80]).state == state


def test_per_risk_bounds() -> None:
    two = AnytimeLTT(3, alpha=[0.2, 0.5], delta=0.1, order="ascending", bound=[1.0, 10.0])
    state, _ = two.update(two.init(), [[1.0, 0.0, 0.0], [10.0, 0.0, 5.0]])
    assert state.t == 1
    with pytest.raises(ValueError, match=r"^x"):
        two.update(two.init(), [[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_importance_weighted_losses() -> None:
    got = importance_weighted_losses(
        [[1.0, 0.0], [np.nan, np.nan], [0.5, 1.0]], [1, 0, 1], [0.5, 0.2, 0.25]
    )
    assert np.array_equal(got, [[2.0, 0.0], [0.0, 0.0], [2.0, 4.0]])
    assert np.array_equal(importance_weighted_losses([1.0, 0.0], True, 0.1), [10.0, 0.0])
    rng = np.random.default_rng(0)  # unbiased: E[A L / π] = L
    pi = rng.uniform(0.1, 1.0, size=200_000)
    a = rng.uniform(size=pi.size) < pi
    w = importance_weighted_losses(np.where(a, 1.0, np.nan)[:, None], a, pi, pi_min=0.1)
    assert abs(w.mean() - 1.0) < 0.02 and w.max() <= 10.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(losses=[1.0, 0.0], audited=False, pi=0.5), "losses"),  # label on an unaudited input
        (dict(losses=[np.nan, 0.0], audited=True, pi=0.5), "losses"),
        (dict(losses=[1.5, 0.0], audited=True, pi=0.5), "losses"),
        (dict(losses=[-0.5, 0.0], audited=True, pi=0.5), "losses"),
        (dict(losses=[1.0, 0.0], audited=True, pi=0.0), "pi"),
        (dict(losses=[1.0, 0.0], audited=True, pi=1.5), "pi"),
        (dict(losses=[1.0, 0.0], audited=True, pi=0.05, pi_min=0.1), "pi"),
        (dict(losses=[1.0, 0.0], audited=2, pi=0.5), "audited"),
        (dict(losses=[[1.0, 0.0]], audited=[1, 1], pi=0.5), "audited"),
        (dict(losses=[[1.0, 0.0]], audited=[1], pi=[0.5, 0.5]), "pi"),
        (dict(losses=[[1.0, 0.0], [0.0]], audited=[1, 1], pi=0.5), "losses"),  # ragged
        (dict(losses=[[1.0, 0.0]], audited=[[1], [1, 0]], pi=0.5), "audited"),
    ],
)
def test_importance_weighted_losses_refuses(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}"):
        importance_weighted_losses(**kwargs)


def test_false_alarm_losses_are_the_alarm_matrix() -> None:
    traj = simulate_trajectories(np.random.default_rng(4), 200)
    grid = np.array([-np.inf, 0.2, 0.5, 0.8, np.inf])
    got = false_alarm_losses(traj, grid)
    assert np.array_equal(got, alarm_matrix(traj.minima, grid).astype(float))
    assert np.array_equal(false_alarm_losses(traj.minima, grid), got)
    with pytest.raises(ValueError, match=r"^grid"):
        false_alarm_losses(traj, [0.5, 0.2])


def test_late_outcomes_enter_in_arrival_order() -> None:
    traj = simulate_trajectories(np.random.default_rng(5), 600)
    assert traj.labels is not None
    grid = np.linspace(0.0, 1.0, 21)
    cert = LateOutcomeCertifier(grid, AnytimeLTT(21, alpha=0.2, delta=0.1, order="ascending"))
    arrival = np.random.default_rng(0).permutation(traj.n_trajectories)  # value-blind delays
    late = traj.subset(arrival)
    assert late.labels is not None
    state, steps = cert.init(), []
    for i in range(late.n_trajectories):
        seq = late.scores[late.offsets[i] : late.offsets[i + 1]]
        state, step = cert.update(state, seq, bool(late.labels[i]))
        steps.append(step)
    assert cert.run(cert.init(), late) == state  # labels read from the Trajectories
    assert cert.run(cert.init(), late.minima, late.labels) == state
    assert state.t == int(late.labels.sum())  # only correct trajectories enter
    assert all((s is None) == (lab == 0) for s, lab in zip(steps, late.labels, strict=True))
    assert state.found
    with pytest.raises(TypeError, match=r"^correct"):
        cert.update(state, [0.5], _any(1))
    with pytest.raises(ValueError, match=r"^correct"):
        cert.run(state, late.minima)
    with pytest.raises(ValueError, match=r"^certifier"):
        LateOutcomeCertifier(grid[:5], AnytimeLTT(21, alpha=0.2, delta=0.1, order="ascending"))
