"""The self-certifying delegator: exact batch = streaming, checkpoints, restarts, validity."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ctd_stats import learn_then_test
from ctd_stats._streaming import StreamingMonitor
from ctd_stats.cascade.self_certifying import (
    SelfCertifyingDelegator,
    SelfCertifyingState,
    SelfCertifyingStep,
)
from ctd_stats.online import AnytimeLTT

GRID = np.linspace(0.5, 1.0, 26)


def _any(value: object) -> Any:
    """Deliberately wrong inputs, past the type checker."""
    return value


def _delegator(**kw: Any) -> SelfCertifyingDelegator:
    cert = AnytimeLTT(GRID.size, alpha=0.2, delta=0.1, order="descending", max_epochs=None, **kw)
    return SelfCertifyingDelegator(GRID, cert, level=0.05)


def _drifting(seed: int, n0: int = 1500, n1: int = 2500, shift: float = 0.15) -> np.ndarray:
    """Uniform DV scores (rate 1 − λ at λ), then shifted up by ``shift`` (a drift)."""
    rng = np.random.default_rng(seed)
    return np.concatenate((rng.uniform(size=n0), rng.uniform(size=n1) + shift))


def _loop(
    dg: SelfCertifyingDelegator, scores: np.ndarray, state: SelfCertifyingState | None = None
) -> tuple[SelfCertifyingState, list[SelfCertifyingStep]]:
    state = dg.init() if state is None else state
    steps = []
    for s in scores:
        state, step = dg.update(state, float(s))
        steps.append(step)
    return state, steps


@pytest.mark.parametrize("warm", [False, True])
def test_decide_stream_equals_updates_across_restarts(
    warm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = None
    if warm:
        cal = np.random.default_rng(99).uniform(size=800)
        ws = learn_then_test(cal[:, None] > GRID, alpha=0.2, delta=0.02, order="descending")
    dg = _delegator(warm_start=ws)
    scores = _drifting(1)
    state, steps = _loop(dg, scores)
    import ctd_stats.cascade.self_certifying as mod

    monkeypatch.setattr(mod, "_PASS_CELLS", 333 * GRID.size)  # several passes
    trace = dg.decide_stream(scores)
    assert trace.state == state
    assert trace.delegated is not None
    assert trace.delegated.tolist() == [s.delegated for s in steps]
    assert trace.threshold.tolist() == [s.threshold for s in steps]
    assert np.array_equal(trace.statistic, [s.statistic for s in steps])
    assert trace.restarts.tolist() == [s.t for s in steps if s.restarted] == list(state.restarts)
    assert state.restarts and state.epoch == len(state.restarts)
    # two stretches give the same as one
    half = dg.decide_stream(scores[:2100])
    assert dg.decide_stream(scores[2100:], state=half.state).state == state
    if warm:  # epoch 0 starts at the batch certificate
        assert steps[0].threshold == GRID[ws.select_index("most_aggressive")]  # type: ignore[union-attr]


def test_starts_safe_tightens_then_restarts_after_drift() -> None:
    dg = _delegator()
    assert isinstance(dg, StreamingMonitor)
    trace = dg.decide_stream(_drifting(2))
    thr, d = trace.threshold, trace.delegated
    assert d is not None
    assert thr[0] == math.inf and not d[thr == math.inf].any()  # never delegates uncertified
    first = trace.restarts[0]
    assert first >= 1500  # no alarm before the drift on this stream
    pre = thr[: first + 1]
    finite = pre[np.isfinite(pre)]
    assert np.all(np.diff(finite) <= 0)  # within an epoch: only more aggressive
    assert 0.8 <= finite[-1] < 0.9  # rate 1 − λ ≤ α = 0.2 certified close to 0.8
    assert thr[first + 1] == math.inf  # the restart forgets the old certificate
    post = thr[first + 1 :]
    assert np.isfinite(post[-1]) and post[-1] >= 0.95  # recertified: rate 1.15 − λ ≤ 0.2
    assert set(trace.changes.tolist()) >= {first + 1}
    assert "restarts" in repr(trace) and "threshold" in repr(trace.state)


@settings(max_examples=10, deadline=None)
@given(cut=st.integers(0, 4000), seed=st.integers(0, 2**10))
def test_json_checkpoint_resumes_exactly(cut: int, seed: int) -> None:
    dg = _delegator()
    scores = _drifting(seed)
    full = dg.decide_stream(scores)
    head = dg.decide_stream(scores[:cut]).state if cut else dg.init()
    text = head.to_json()
    restored = dg.restore(text)
    assert restored == head and restored.to_json() == text
    if cut == scores.size:
        assert restored == full.state
        return
    rest = dg.decide_stream(scores[cut:], state=restored)
    assert rest.state == full.state
    assert np.array_equal(rest.threshold, full.threshold[cut:])
    if cut < scores.size:  # one update from the restored state agrees too
        _, step = dg.update(restored, float(scores[cut]))
        assert step.threshold == full.threshold[cut]


def test_refuses_bad_configuration_and_foreign_states() -> None:
    ok = AnytimeLTT(GRID.size, alpha=0.2, delta=0.1, order="descending", max_epochs=None)
    with pytest.raises(ValueError, match=r"^grid"):
        SelfCertifyingDelegator(GRID[::-1], ok)
    with pytest.raises(TypeError, match=r"^certifier"):
        SelfCertifyingDelegator(GRID, _any("ltt"))
    for bad in (
        AnytimeLTT(5, alpha=0.2, delta=0.1, order="descending", max_epochs=None),
        AnytimeLTT(GRID.size, alpha=0.2, delta=0.1, order="descending"),  # no restarts
        AnytimeLTT(GRID.size, alpha=[0.2, 0.3], delta=0.1, order="descending", max_epochs=None),
        AnytimeLTT(GRID.size, alpha=0.2, delta=0.1, order="descending", bound=2.0, max_epochs=None),
    ):
        with pytest.raises(ValueError, match=r"^certifier"):
            SelfCertifyingDelegator(GRID, bad)
    dg = SelfCertifyingDelegator(GRID, ok)
    other = _delegator(strategy="ons")
    with pytest.raises(ValueError, match=r"^state"):
        dg.update(other.init(), 0.5)
    with pytest.raises(ValueError, match=r"^state"):
        dg.restore(other.init().to_json())
    with pytest.raises(TypeError, match=r"^state"):
        dg.update(_any("state"), 0.5)
    with pytest.raises(ValueError, match=r"^score"):
        dg.update(dg.init(), math.nan)
    with pytest.raises(ValueError, match=r"^scores"):
        dg.decide_stream([0.1, math.inf])
    with pytest.raises(AttributeError):
        setattr(dg, "grid", GRID)  # noqa: B010 (an immutable attribute)


@pytest.mark.validity
def test_composed_delegator_valid_across_a_drift_and_a_restart() -> None:
    """Over N streams that drift once: the number of streams that ever deploy a threshold whose
    rate is ≥ α on its epoch's data (epoch 0 before the drift; epochs that start after it), or
    still deploy a pre-drift certificate that the drift broke at the end of the stream, stays
    ≤ binom.ppf(1 − 1e−4, N, δ). The twin that never restarts (its monitor cannot alarm) keeps
    the pre-drift certificate after the drift and fails the same check."""
    n_streams, n0, n1, shift, alpha, delta = 300, 1500, 3000, 0.1, 0.2, 0.1
    grid = np.array([0.75, 0.8, 0.85, 0.9, 0.95])  # rates 1 − λ before, 1.1 − λ after
    null0, null1 = grid <= 0.8, grid <= 0.9  # rate ≥ α (boundary included)

    def violations(level: float) -> int:
        cert = AnytimeLTT(grid.size, alpha=alpha, delta=delta, order="descending", max_epochs=None)
        dg = SelfCertifyingDelegator(grid, cert, level=level)
        bad = 0
        for s in range(n_streams):
            trace = dg.decide_stream(_drifting(1000 + s, n0, n1, shift))
            thr = trace.threshold
            starts = np.concatenate(([0], trace.restarts + 1))
            epoch_start = starts[np.searchsorted(starts, np.arange(thr.size), side="right") - 1]
            j = np.searchsorted(grid, thr)  # grid index of each finite threshold
            finite = np.isfinite(thr)
            jj = np.minimum(j, grid.size - 1)
            before = finite & (np.arange(thr.size) < n0) & null0[jj]
            after = finite & (epoch_start >= n0) & null1[jj]
            early = finite & (epoch_start > 0) & (epoch_start < n0) & null0[jj]
            # long after the drift, the deployed threshold still stems from before it
            stale = finite[-1] and epoch_start[-1] < n0 and bool(null1[jj[-1]])
            bad += bool((before | after | early).any()) or stale
        return bad

    tol = int(stats.binom.ppf(1 - 1e-4, n_streams, delta))
    assert violations(0.05) <= tol
    assert violations(1e-300) > tol  # no restart: the old certificate outlives the drift
