"""Online results: "nothing found" is explicit, JSON round trips are exact, checkpoints resume."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
from _monitor_sim import simulate_trajectories
from hypothesis import given, settings
from hypothesis import strategies as st

from ctd_stats._streaming import Step
from ctd_stats.online.alarm_calibration import (
    UCB_BOUNDS,
    CRCThreshold,
    GeneralCRCThreshold,
    UCBThreshold,
    crc_general,
    crc_threshold,
    ucb_threshold,
)
from ctd_stats.online.eprocess import (
    EProcessMonitor,
    EProcessState,
    EProcessThreshold,
    EValuatorModel,
    conformal_threshold,
    pac_threshold,
    ville_threshold,
)
from ctd_stats.online.monitors import MonitorState, ThresholdMonitor

minima_st = st.lists(st.integers(0, 400).map(lambda k: k / 400), min_size=1, max_size=40)
alpha_st = st.floats(0.01, 0.95)
risk_st = st.sampled_from(["false_alarm", "missed_detection"])
grid_st = st.sampled_from([None, "paper", np.linspace(-0.5, 1.5, 37)])


def _same(a: Any, b: Any) -> bool:
    """Field-by-field equality: arrays with array_equal, floats bit-exact (±∞, NaN included)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            _same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        )
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float):
        return isinstance(b, float) and (a == b or (math.isnan(a) and math.isnan(b)))
    return type(a) is type(b) and bool(a == b)


def _check_round_trip(obj: Any) -> None:
    text = obj.to_json()
    back = type(obj).from_json(text)
    assert _same(obj, back)
    payload = json.loads(text)
    assert payload["kind"] == type(obj).__name__ and payload["guarantee"]


# --------------------------------------------------------------------------- nothing found
@pytest.mark.parametrize("risk", ["false_alarm", "missed_detection"])
def test_crc_too_few_points_says_so(risk: str) -> None:
    res = crc_threshold(np.linspace(0.1, 0.9, 8), alpha=0.1, risk=risk)  # type: ignore[call-overload]
    assert not res.found and res.k == 0 and res.index is None
    assert res.min_n == 9  # 1/(n+1) ≤ 0.1 needs n ≥ 9
    assert res.threshold == (-math.inf if risk == "false_alarm" else math.inf)
    assert "n >= 9" in (res.reason or "")
    lines = repr(res).splitlines()
    assert lines[0] == "CRCThreshold(found=False)" and lines[1].lstrip().startswith("reason:")
    assert len(lines) <= 12
    ok = crc_threshold(np.linspace(0.1, 0.9, 9), alpha=0.1, risk=risk)  # type: ignore[call-overload]
    assert ok.found and ok.reason is None and ok.min_n is None and ok.k == 1


@settings(max_examples=60, deadline=None)
@given(alpha_st, st.integers(1, 60))
def test_crc_min_n_is_the_smallest_size_that_works(alpha: float, n: int) -> None:
    res = crc_threshold(np.linspace(0, 1, n), alpha=alpha)
    if res.found:
        assert res.min_n is None
    else:
        assert res.min_n is not None and res.min_n > n
        assert crc_threshold(np.linspace(0, 1, res.min_n), alpha=alpha).found
        assert not crc_threshold(np.linspace(0, 1, res.min_n - 1), alpha=alpha).found


def test_crc_grid_index_points_at_the_threshold() -> None:
    m = np.random.default_rng(0).uniform(size=200)
    for risk in ("false_alarm", "missed_detection"):
        res = crc_threshold(m, alpha=0.2, risk=risk, grid="paper")
        assert res.found and res.index is not None
        assert np.linspace(0, 1, 10001)[res.index] == res.threshold
        assert repr(res).startswith(f"CRCThreshold(found=True, threshold={res.threshold:.6g}")


def test_general_crc_nothing_found() -> None:
    res = crc_general(np.zeros((3, 2)), [0.1, 0.2], alpha=0.1)
    assert not res.found and res.index is None and res.empirical_risk is None
    assert res.min_n == 9 and res.threshold == -math.inf
    ok = crc_general(np.zeros((9, 2)), [0.1, 0.2], alpha=0.1)
    assert ok.found and ok.index == 1 and ok.threshold == 0.2 and ok.empirical_risk == 0.0


@pytest.mark.parametrize("bound", [b for b in UCB_BOUNDS if b != "paper_nonstandard_hb"])
def test_ucb_too_few_points_says_so(bound: str) -> None:
    res = ucb_threshold(np.linspace(0.1, 0.9, 5), alpha=0.1, delta=0.1, bound=bound)
    assert not res.found and res.threshold == -math.inf and res.index is None
    assert res.min_n is not None and res.min_n > 5
    assert repr(res).splitlines()[1].lstrip().startswith("reason:")
    # the most favourable data of size min_n (all minima tied, so zero losses at the first
    # candidate) certifies; one point fewer does not
    assert ucb_threshold(np.full(res.min_n, 0.5), alpha=0.1, delta=0.1, bound=bound).found
    worse = ucb_threshold(np.full(res.min_n - 1, 0.5), alpha=0.1, delta=0.1, bound=bound)
    assert not worse.found
    if bound == "binomial":  # (1 − α)^n ≤ δ
        assert res.min_n == math.ceil(math.log(0.1) / math.log(0.9))


def test_ucb_missed_detection_nothing_found_is_always_alarm() -> None:
    res = ucb_threshold([0.2, 0.3], alpha=0.1, risk="missed_detection")
    assert not res.found and res.threshold == math.inf


def test_ucb_grid_index() -> None:
    m = np.random.default_rng(1).uniform(size=300)
    g = np.linspace(0, 1, 501)
    for risk in ("false_alarm", "missed_detection"):
        res = ucb_threshold(m, alpha=0.2, risk=risk, grid=g)
        assert res.found and res.index is not None and g[res.index] == res.threshold


def test_conformal_too_few_points() -> None:
    res = conformal_threshold(np.arange(5.0), alpha=0.1)
    assert not res.found and res.log_threshold == math.inf and res.min_n == 9
    assert conformal_threshold(np.arange(9.0), alpha=0.1).found


def test_threshold_vocabulary() -> None:
    v = ville_threshold(0.05)
    assert v.rate == 0.05 and v.delta is None and v.found and v.method == "ville"
    p = pac_threshold(np.arange(50.0), alpha=0.1, delta=0.05)
    assert p.rate == 0.1 and p.delta == 0.05 and p.method == "pac"
    with pytest.raises(ValueError, match=r"^level:"):
        ville_threshold(1.0)
    with pytest.raises(TypeError):
        pac_threshold(np.arange(50.0), 0.1)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- JSON
@settings(max_examples=60, deadline=None)
@given(minima_st, alpha_st, risk_st, grid_st)
def test_crc_round_trip(mins: list[float], alpha: float, risk: str, grid: Any) -> None:
    _check_round_trip(crc_threshold(mins, alpha=alpha, risk=risk, grid=grid))  # type: ignore[call-overload]


@settings(max_examples=40, deadline=None)
@given(
    minima_st,
    alpha_st,
    risk_st,
    st.sampled_from(["binomial", "hb", "wsr", "paper_nonstandard_hb"]),
    st.sampled_from([None, np.linspace(0, 1, 41)]),
)
def test_ucb_round_trip(mins: list[float], alpha: float, risk: str, bound: str, grid: Any) -> None:
    res = ucb_threshold(mins, alpha=alpha, risk=risk, bound=bound, grid=grid)  # type: ignore[call-overload]
    _check_round_trip(res)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 6), alpha_st, st.booleans())
def test_general_crc_round_trip(n: int, m: int, alpha: float, increasing: bool) -> None:
    rng = np.random.default_rng(n * 7 + m)
    x = np.sort(rng.uniform(size=(n, m)), axis=1)
    x = x if increasing else x[:, ::-1]
    res = crc_general(
        x,
        np.arange(m, dtype=float),
        alpha=alpha,
        direction="increasing" if increasing else "decreasing",
    )
    _check_round_trip(res)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.floats(-50, 50), st.just(math.inf)), min_size=1, max_size=40),
    alpha_st,
)
def test_eprocess_threshold_round_trip(values: list[float], alpha: float) -> None:
    _check_round_trip(pac_threshold(values, alpha=alpha, delta=0.1))
    _check_round_trip(conformal_threshold(values, alpha=alpha))
    _check_round_trip(ville_threshold(alpha))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.integers(80, 200), st.sampled_from(["first_step", "per_step"]))
def test_evaluator_model_round_trip_random(seed: int, n: int, prior: str) -> None:
    cal = simulate_trajectories(np.random.default_rng(seed), n)
    model = EValuatorModel.fit(cal, prior=prior)
    back = EValuatorModel.from_json(model.to_json())
    assert _same(model, back)
    assert np.array_equal(model.log_ratio(cal), back.log_ratio(cal))


def test_evaluator_model_round_trip_gives_the_same_log_ratios() -> None:
    cal = simulate_trajectories(np.random.default_rng(3), 300)
    test = simulate_trajectories(np.random.default_rng(4), 200)
    model = EValuatorModel.fit(cal)
    back = EValuatorModel.from_json(model.to_json())
    assert _same(model, back)
    assert np.array_equal(model.log_ratio(test), back.log_ratio(test))
    assert model.n == 300 and model.calibration_sha256 is not None
    assert len(repr(model).splitlines()) <= 12


@pytest.mark.parametrize(
    "obj",
    [
        crc_threshold(np.linspace(0, 1, 30), alpha=0.2),
        ucb_threshold(np.linspace(0, 1, 30), alpha=0.2),
        crc_general(np.zeros((3, 2)), [0.1, 0.2], alpha=0.1),
        pac_threshold(np.arange(3.0), alpha=0.1),
    ],
    ids=["crc", "ucb", "general", "pac"],
)
def test_tampered_unknown_or_malformed_payloads_are_refused(obj: Any) -> None:
    cls = type(obj)
    text = obj.to_json()
    payload = json.loads(text)
    edited = dict(payload, fields=dict(payload["fields"], n=payload["fields"]["n"] + 1))
    with pytest.raises(ValueError, match=r"^text: checksum"):
        cls.from_json(json.dumps(edited))
    with pytest.raises(ValueError, match=r"^text: unknown schema_version"):
        cls.from_json(json.dumps(dict(payload, schema_version=99)))
    with pytest.raises(ValueError, match=r"^text:"):
        cls.from_json(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"^text:"):
        cls.from_json("[1, 2]")
    other = EProcessThreshold if cls is not EProcessThreshold else CRCThreshold
    with pytest.raises(ValueError, match=r"^text:"):
        other.from_json(text)
    with pytest.raises(TypeError, match=r"^text:"):
        cls.from_json(3)
    assert cls in (CRCThreshold, UCBThreshold, GeneralCRCThreshold, EProcessThreshold)


# --------------------------------------------------------------------------- checkpoints
def _run(mon: Any, state: Any, xs: list[float]) -> tuple[Any, list[Step]]:
    steps = []
    for x in xs:
        state, step = mon.update(state, x)
        steps.append(step)
    return state, steps


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40), st.floats(0, 1), st.data())
def test_threshold_monitor_checkpoint(xs: list[float], lam: float, data: st.DataObject) -> None:
    mon = ThresholdMonitor(threshold=lam)
    cut = data.draw(st.integers(0, len(xs)))
    _, straight = _run(mon, mon.init(), xs)
    state, first = _run(mon, mon.init(), xs[:cut])
    state = MonitorState.from_json(state.to_json())
    _, rest = _run(mon, state, xs[cut:])
    assert first + rest == straight
    alarms = [s.t for s in straight if s.new_alarm]
    assert straight[-1].alarm_step == (alarms[0] if alarms else None)


_MODEL = EValuatorModel.fit(simulate_trajectories(np.random.default_rng(77), 300))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.01, 0.99), min_size=1, max_size=14), st.floats(0.05, 0.5), st.data())
def test_eprocess_monitor_checkpoint(xs: list[float], level: float, data: st.DataObject) -> None:
    mon = EProcessMonitor(model=_MODEL, threshold=ville_threshold(level))
    cut = data.draw(st.integers(0, len(xs)))
    _, straight = _run(mon, mon.init(), xs)
    state, first = _run(mon, mon.init(), xs[:cut])
    state = EProcessState.from_json(state.to_json())
    _, rest = _run(mon, state, xs[cut:])
    assert first + rest == straight  # decisions and e-values bit for bit
