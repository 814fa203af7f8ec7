"""Grouped cascade calibrations: CTD / Unc. calibrated / budget-only LTT with a cap per group.

Monte Carlo validity (delegation-rate simulation with analytic true rates, as in
tests/test_validity_grouped.py: group g's DV scores are U^{b_g}, so its rate at τ is
R_g(τ) = 1 − τ^{1/b_g}); the ungrouped calibration breaking a binding cap; properties (one group
is the ungrouped calibration bit for bit, relabelling permutes, a smaller cap never delegates
more); bad input; the Delegator with groups; exact JSON.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ctd_stats._serialize import _values_equal
from ctd_stats.cascade import (
    CascadeTable,
    DelegationSession,
    Delegator,
    DelegatorState,
    ThresholdCalibration,
    calibrate_budget_only,
    calibrate_ctd,
    calibrate_uncertainty,
    sweep,
)
from ctd_stats.cascade.delegator import GroupedDelegatorState

DELTA = 0.1
GRID = np.linspace(0.0, 1.0, 201)
SAME = (
    "threshold",
    "index",
    "found",
    "certified",
    "pvalues",
    "front",
    "opt_budget",
    "opt_performance",
    "n_opt",
    "n_test",
    "min_n",
)


def _tolerance(runs: int) -> int:
    return int(stats.binom.ppf(1 - 1e-4, runs, DELTA))


def _rate(shape: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """True rates R_g(τ) = 1 − τ^{1/b_g} (τ clipped to [0, 1]; +∞ delegates nothing)."""
    return 1.0 - np.clip(tau, 0.0, 1.0) ** (1.0 / shape)


def _draw(shape: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> tuple[Any, Any]:
    groups = np.repeat(np.arange(shape.size), n)
    return rng.uniform(size=groups.size) ** shape[groups], groups


def _cascade(rng: np.random.Generator, n: int, n_groups: int = 3) -> tuple[Any, Any, Any, Any, Any]:
    y = rng.integers(0, 2, n)
    p = rng.uniform(size=n)
    e = np.clip(0.8 * y + rng.uniform(0, 0.2, n), 0, 1)
    g = rng.integers(0, n_groups, n)
    dv = rng.normal(size=n) + 0.6 * (g == 0) + 0.5 * y
    return y, p, e, dv, g


# --------------------------------------------------------------------------- validity
SHAPE = np.array([0.4, 1.0, 2.5])  # group 0 delegates most
N = np.array([500, 700, 300])
W = N / N.sum()


@pytest.mark.validity
@pytest.mark.parametrize("per_group", [False, True])
def test_budget_only_grouped_violates_at_most_delta(per_group: bool) -> None:
    runs = 1000
    rng = np.random.default_rng(11)
    caps = np.array([0.2, 0.25, 0.15])
    v = 0
    for _ in range(runs):
        s, g = _draw(SHAPE, N, rng)
        c = calibrate_budget_only(
            s, alpha=0.25, delta=DELTA, grid=GRID, groups=g, group_alpha=caps, per_group=per_group
        )
        assert c.group_thresholds is not None
        rates = _rate(SHAPE, c.group_thresholds)
        v += bool((rates > caps).any() or W @ rates > 0.25)
    assert v <= _tolerance(runs), (v, _tolerance(runs))


@pytest.mark.validity
@pytest.mark.parametrize("per_group", [False, True])
def test_ctd_grouped_violates_at_most_delta(per_group: bool) -> None:
    runs = 400
    rng = np.random.default_rng(12)
    caps = np.array([0.1, 0.2, 0.15])
    grid = np.linspace(0.0, 1.0, 81)
    v = 0
    for _ in range(runs):
        s, g = _draw(SHAPE, N, rng)
        y = rng.integers(0, 2, s.size)
        p = rng.uniform(size=s.size)
        e = np.clip(0.7 * y + 0.3 * s, 0, 1)  # the expert helps where s is high
        c = calibrate_ctd(
            y, p, e, s, alpha=0.2, delta=DELTA, grid=grid, groups=g, group_alpha=caps,
            per_group=per_group,
        )  # fmt: skip
        assert c.group_thresholds is not None
        rates = _rate(SHAPE, c.group_thresholds)
        v += bool((rates > caps).any() or W @ rates > 0.2)
    assert v <= _tolerance(runs), (v, _tolerance(runs))


@pytest.mark.validity
def test_ungrouped_calibration_breaks_a_binding_group_cap() -> None:
    """The invalid twin: the marginal budget holds, group 0's cap (= α) breaks in most runs."""
    runs = 1000
    rng = np.random.default_rng(13)
    marginal_bad = cap_bad = grouped_bad = 0
    for _ in range(runs):
        s, g = _draw(SHAPE, N, rng)
        c = calibrate_budget_only(s, alpha=0.2, delta=DELTA, grid=GRID)
        rates = _rate(SHAPE, np.full(3, c.threshold))
        marginal_bad += bool(W @ rates > 0.2)
        cap_bad += bool(rates[0] > 0.2)
        cg = calibrate_budget_only(s, alpha=0.2, delta=DELTA, grid=GRID, groups=g)
        grouped_bad += bool((_rate(SHAPE, np.full(3, cg.threshold)) > 0.2).any())
    tol = _tolerance(runs)
    assert marginal_bad <= tol  # the marginal guarantee holds ...
    assert cap_bad > tol  # ... but the group cap check FAILS for the ungrouped calibration
    assert grouped_bad <= tol


# --------------------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), alpha=st.floats(0.02, 0.6), per_group=st.booleans())
def test_one_group_equals_ungrouped(seed: int, alpha: float, per_group: bool) -> None:
    rng = np.random.default_rng(seed)
    y, p, e, dv, _ = _cascade(rng, 400)
    one = np.full(y.size, "all")
    pairs = [
        (calibrate_budget_only(dv, alpha=alpha), calibrate_budget_only(
            dv, alpha=alpha, groups=one, per_group=per_group)),
        (calibrate_ctd(y, p, e, dv, alpha=alpha), calibrate_ctd(
            y, p, e, dv, alpha=alpha, groups=one, per_group=per_group)),
        (calibrate_uncertainty(y, p, e, alpha=alpha), calibrate_uncertainty(
            y, p, e, alpha=alpha, groups=one, per_group=per_group)),
    ]  # fmt: skip
    for plain, grouped in pairs:
        for name in SAME:
            assert _values_equal(getattr(plain, name), getattr(grouped, name)), name
        assert grouped.threshold_for("all") == plain.threshold


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), per_group=st.booleans())
def test_relabelling_permutes(seed: int, per_group: bool) -> None:
    rng = np.random.default_rng(seed)
    y, p, e, dv, g = _cascade(rng, 900)
    names = np.array(["c", "a", "b"])  # sorted order differs from 0, 1, 2
    caps = {0: 0.3, 1: 0.2, 2: 0.25}
    a = calibrate_ctd(y, p, e, dv, alpha=0.3, groups=g, group_alpha=caps, per_group=per_group)
    b = calibrate_ctd(
        y, p, e, dv, alpha=0.3, groups=names[g], group_alpha={str(names[k]): v for k, v in
        caps.items()}, per_group=per_group,
    )  # fmt: skip
    assert a.threshold == b.threshold and _values_equal(a.certified, b.certified)
    for k in range(3):
        assert a.threshold_for(k) == b.threshold_for(str(names[k]))
    assert b.groups == ("a", "b", "c")


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shrink=st.floats(0.1, 1.0),
    per_group=st.booleans(),
    ctd=st.booleans(),
)
def test_smaller_cap_never_delegates_more(
    seed: int, shrink: float, per_group: bool, ctd: bool
) -> None:
    rng = np.random.default_rng(seed)
    y, p, e, dv, g = _cascade(rng, 900)
    caps = np.array([0.3, 0.25, 0.3])
    small = caps * np.array([shrink, 1.0, 1.0])

    def run(c: np.ndarray) -> ThresholdCalibration:
        kw: dict[str, Any] = {"alpha": 0.3, "groups": g, "group_alpha": c, "per_group": per_group}
        return calibrate_ctd(y, p, e, dv, **kw) if ctd else calibrate_budget_only(dv, **kw)

    big_cal, small_cal = run(caps), run(small)
    for k in range(3):
        assert small_cal.threshold_for(k) >= big_cal.threshold_for(k)
    assert small_cal.delegate(dv, groups=g).sum() <= big_cal.delegate(dv, groups=g).sum()


def test_per_group_thresholds_and_guarantee_text() -> None:
    rng = np.random.default_rng(0)
    y, p, e, dv, g = _cascade(rng, 3000)
    c = calibrate_ctd(y, p, e, dv, alpha=0.2, groups=g, group_alpha=[0.1, 0.2, 0.2], per_group=True)
    assert c.group_mode == "per_group" and c.group_delta == pytest.approx(DELTA / 3)
    assert c.group_thresholds is not None and c.threshold == c.group_thresholds.max()
    assert [c.threshold_for(k) for k in range(3)] == c.group_thresholds.tolist()
    d = c.delegate(dv, groups=g)
    assert np.array_equal(d, dv > c.group_thresholds[g])
    assert "Bonferroni" in json.loads(c.to_json())["guarantee"]
    shared = calibrate_ctd(y, p, e, dv, alpha=0.2, groups=g, group_alpha=[0.1, 0.2, 0.2])
    assert shared.group_mode == "shared" and shared.group_delta == DELTA
    assert np.array_equal(shared.delegate(dv), shared.delegate(dv, groups=g))
    assert "intersection-union" in json.loads(shared.to_json())["guarantee"]
    r = repr(c)
    assert "groups: 3 per_group" in r and len(r.splitlines()) < 14


def test_too_small_group_is_refused_with_its_reason() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(size=1030)
    g = np.r_[np.zeros(1000, int), np.ones(30, int)]
    c = calibrate_budget_only(s, alpha=0.3, groups=g, group_alpha=0.05, per_group=True)
    assert c.group_found is not None and c.group_found.tolist() == [True, False]
    assert c.group_reasons is not None and "too few" in str(c.group_reasons[1])
    assert c.threshold_for(1) == np.inf and not c.found
    assert c.min_n == 59  # (1 − 0.05)^n ≤ δ/2 = 0.05: the group's own size that would work
    shared = calibrate_budget_only(s, alpha=0.3, groups=g, group_alpha=0.05)
    assert not shared.found and shared.min_n == 45 and "too small" in str(shared.reason)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({"group_alpha": {0: 0.2, 1: 0.2, 2: 0.2, 9: 0.2}}, "group_alpha: group 9 has no"),
        ({"group_alpha": {0: 0.2, 1: 0.2}}, "group_alpha: no cap for group 2"),
        ({"group_alpha": [0.2, 0.2]}, "group_alpha: got 2 caps"),
        ({"group_alpha": 1.0}, "group_alpha:"),
        ({"group_alpha": 0.0}, "group_alpha:"),
        ({"group_alpha": -0.1}, "group_alpha:"),
        ({"group_alpha": float("nan")}, "group_alpha:"),
        ({"group_alpha": [0.1, 0.5, 0.1], "per_group": True}, "group_alpha: with per_group"),
        ({"groups": "short"}, "groups:"),
        ({"groups": np.zeros(10, int)}, "groups: length 10"),
        ({"groups": np.r_[np.nan, np.zeros(599)]}, "groups: contains NaN"),
        ({"groups": np.r_[[""], np.full(599, "a")]}, "groups: contains an empty label"),
        ({"groups": []}, "groups: must not be empty"),
        ({"groups": None, "group_alpha": 0.1}, "group_alpha: only used with groups"),
        ({"groups": None, "per_group": True}, "per_group: only used with groups"),
    ],
)
def test_bad_input(kwargs: dict[str, Any], start: str) -> None:
    rng = np.random.default_rng(2)
    y, p, e, dv, g = _cascade(rng, 600)
    kw: dict[str, Any] = {"groups": g, **kwargs}
    for call in (
        lambda: calibrate_budget_only(dv, alpha=0.3, **kw),
        lambda: calibrate_ctd(y, p, e, dv, alpha=0.3, **kw),
        lambda: calibrate_uncertainty(y, p, e, alpha=0.3, **kw),
    ):
        with pytest.raises(ValueError, match=r"^" + start.replace("(", r"\(")):
            call()


def test_bad_input_per_group_and_splits() -> None:
    rng = np.random.default_rng(3)
    y, p, e, dv, g = _cascade(rng, 600)
    with pytest.raises(TypeError, match=r"^per_group:"):
        calibrate_budget_only(dv, alpha=0.3, groups=g, per_group=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^group_alpha: required when alpha = 1"):
        calibrate_budget_only(dv, alpha=1.0, groups=g)
    lonely = g.copy()
    lonely[0] = 7  # one row: in only one of the opt / ht splits
    with pytest.raises(ValueError, match=r"^groups: group 7 has no rows in the"):
        calibrate_ctd(y, p, e, dv, alpha=0.3, groups=lonely)
    c = calibrate_ctd(y, p, e, dv, alpha=0.3, groups=g, per_group=True)
    with pytest.raises(ValueError, match=r"^groups: required by a per-group"):
        c.delegate(dv)
    with pytest.raises(ValueError, match=r"^group: 5 is not"):
        c.threshold_for(5)
    with pytest.raises(ValueError, match=r"^group: 5 is not"):
        c.delegate(dv[:2], groups=[0, 5])
    with pytest.raises(ValueError, match=r"^groups: length 3"):
        c.delegate(dv[:2], groups=[0, 1, 2])
    plain = calibrate_ctd(y, p, e, dv, alpha=0.3)
    assert plain.threshold_for("anything") == plain.threshold


# --------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("per_group", [False, True])
@pytest.mark.parametrize("labels", ["int", "str"])
def test_json_round_trip_exact(per_group: bool, labels: str) -> None:
    rng = np.random.default_rng(4)
    y, p, e, dv, g = _cascade(rng, 1500)
    groups = g if labels == "int" else np.array(["x", "y", "z"])[g]
    for c in (
        calibrate_ctd(y, p, e, dv, alpha=0.3, groups=groups, per_group=per_group),
        calibrate_uncertainty(y, p, e, alpha=0.3, groups=groups, per_group=per_group),
        calibrate_budget_only(dv, alpha=0.3, groups=groups, per_group=per_group),
    ):
        back = ThresholdCalibration.from_json(c.to_json())
        assert back == c and back.to_json() == c.to_json()
        assert back.groups == c.groups and type(back.groups[0]) is type(c.groups[0])  # type: ignore[index]


def test_ungrouped_payload_has_no_group_fields() -> None:
    rng = np.random.default_rng(5)
    y, p, e, dv, _ = _cascade(rng, 400)
    fields = json.loads(calibrate_ctd(y, p, e, dv, alpha=0.3).to_json())["fields"]
    assert not any(k.startswith("group") for k in fields)


# --------------------------------------------------------------------------- Delegator
@pytest.mark.parametrize("per_group", [False, True])
def test_delegator_with_groups_stream_equals_updates(per_group: bool) -> None:
    rng = np.random.default_rng(6)
    y, p, e, dv, g = _cascade(rng, 3000)
    c = calibrate_ctd(y, p, e, dv, alpha=0.2, groups=g, group_alpha=[0.1, 0.2, 0.2],
                      per_group=per_group)  # fmt: skip
    d = Delegator(c, level=0.05)
    assert isinstance(d.monitor, object) and d._group_monitors is not None
    assert all(m.level == pytest.approx(0.05 / 4) for m in d._group_monitors)
    shifted, groups = dv[:400] + 1.0, g[:400]
    trace = d.decide_stream(shifted, groups=groups)
    state = d.init()
    for i, (x, k) in enumerate(zip(shifted.tolist(), groups.tolist(), strict=True)):
        state, step = d.update(state, x, group=k)
        assert step.delegated == trace.delegated[i]  # type: ignore[index]
        assert step.statistic == trace.statistic[i]
    assert state == trace.state and isinstance(state, GroupedDelegatorState)
    assert trace.alarm_step is not None and state.alarm_source is not None  # shifted: alarms
    assert np.array_equal(trace.delegated, c.delegate(shifted, groups=groups))  # type: ignore[arg-type]
    assert GroupedDelegatorState.from_json(state.to_json()) == state
    session = DelegationSession(d)
    session.decide_stream(shifted[:100], groups=groups[:100])
    for x, k in zip(shifted[100:].tolist(), groups[100:].tolist(), strict=True):
        session.decide(x, group=k)
    restored = DelegationSession.restore(d, session.checkpoint())
    assert restored.state == state == session.state and restored.needs_recalibration
    half = d.decide_stream(shifted[:150], groups=groups[:150])
    rest = d.decide_stream(shifted[150:], groups=groups[150:], state=half.state)
    assert rest.state == trace.state


def test_delegator_group_errors_and_shared_without_group() -> None:
    rng = np.random.default_rng(7)
    y, p, e, dv, g = _cascade(rng, 2000)
    per = Delegator(calibrate_ctd(y, p, e, dv, alpha=0.2, groups=g, per_group=True))
    with pytest.raises(ValueError, match=r"^group: required"):
        per.update(per.init(), 0.1)
    with pytest.raises(ValueError, match=r"^groups: required"):
        per.decide_stream(dv[:3])
    with pytest.raises(ValueError, match=r"^group: 9 is not"):
        per.update(per.init(), 0.1, group=9)
    with pytest.raises(TypeError, match=r"^state:"):
        per.update(DelegatorState(t=0, monitor=None), 0.1, group=0)
    shared = Delegator(calibrate_ctd(y, p, e, dv, alpha=0.2, groups=g))
    tr = shared.decide_stream(dv[:50])  # no group: the overall monitor only
    assert isinstance(tr.state, GroupedDelegatorState)
    assert all(m.t == 0 for m in tr.state.group_monitors)
    assert tr.state.monitor.t == 50
    assert "groups: 3 shared" in repr(shared)
    plain = Delegator(calibrate_ctd(y, p, e, dv, alpha=0.2))
    s1, st1 = plain.update(plain.init(), 0.3, group="ignored")
    s2, st2 = plain.update(plain.init(), 0.3)
    assert s1 == s2 and type(s1) is DelegatorState and st1 == st2


# --------------------------------------------------------------------------- sweep
def test_sweep_offers_grouped_methods() -> None:
    rng = np.random.default_rng(8)
    y, p, e, dv, g = _cascade(rng, 3000, n_groups=2)
    table = CascadeTable.from_arrays(probe=p, expert=e, dv=dv, labels=y, groups=g)
    plain = sweep(table)
    res = sweep(table, group_alpha="alpha")
    methods = [m for m, _ in res.methods]
    assert "ctd_grouped" in methods and "budget_only_grouped" in methods
    assert {f.method for f in res.faic} >= {"ctd_grouped", "budget_only_grouped"}
    for a in (0.1, 0.3):
        grouped, marginal = res.calibration("ctd_grouped", a), res.calibration("ctd", a)
        assert grouped.threshold >= marginal.threshold
    ungrouped_points = [p for p in res.points if not p.method.endswith("_grouped")]
    as_tuples = [dataclasses.astuple(p) for p in ungrouped_points]
    assert _values_equal(as_tuples, [dataclasses.astuple(p) for p in plain.points])
    assert _values_equal(res.faic[: len(plain.faic)], plain.faic)
