"""Per-group alarm thresholds: CRC per group (Mondrian), UCB for all groups at once.

Properties: one group is the ungrouped calibration bit for bit, each group equals the ungrouped
calibration on its own rows (UCB at δ/G, or 1 − (1 − δ)^{1/G} with Šidák, under its own cap),
relabelling the groups permutes the result. Monte Carlo validity with analytic risks: group g's
minima are U^{b_g}, so its false-alarm risk is R_g(λ) = P(m < λ) = λ^{1/b_g} and its
missed-detection risk 1 − λ^{1/b_g} (λ in [0, 1]).
Expectations: mean ≤ α + 4·sd/√R; high probability: V ≤ binom.ppf(1 − 1e−4, R, δ); each check
has an invalid twin that fails it.
"""

from __future__ import annotations

import decimal
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ctd_stats.grouped import Correction, learn_then_test_grouped
from ctd_stats.online.alarm_calibration import (
    CRCThreshold,
    GroupedCRCThreshold,
    GroupedUCBThreshold,
    Risk,
    UCBThreshold,
    crc_threshold,
    crc_thresholds,
    ucb_threshold,
    ucb_thresholds,
)
from ctd_stats.online.trajectories import Trajectories

minima_st = st.lists(st.integers(0, 400).map(lambda k: k / 400), min_size=1, max_size=50)
alpha_st = st.floats(0.02, 0.9)
risk_st = st.sampled_from(["false_alarm", "missed_detection"])
grid_st = st.sampled_from([None, "paper", np.linspace(-0.5, 1.5, 37)])
bound_st = st.sampled_from(["binomial", "hb", "wsr"])


@st.composite
def grouped_minima(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Minima and one integer label per minimum (every label in 0..G−1 present)."""
    m = np.asarray(draw(minima_st))
    n_groups = draw(st.integers(1, min(4, len(m))))
    rest = draw(st.lists(st.integers(0, n_groups - 1), min_size=len(m), max_size=len(m)))
    labels = np.asarray(rest)
    labels[:n_groups] = np.arange(n_groups)  # every group keeps at least one row
    perm = draw(st.permutations(range(len(m))))
    return m, labels[np.asarray(perm, dtype=np.int64)]


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.float64).tobytes()


# --------------------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(minima_st, alpha_st, risk_st, grid_st, st.sampled_from([0, 7, "task"]))
def test_crc_one_group_equals_ungrouped(
    mins: list[float], alpha: float, risk: Any, grid: Any, label: int | str
) -> None:
    m = np.asarray(mins)
    plain = crc_threshold(m, alpha=alpha, risk=risk, grid=grid)
    grouped = crc_threshold(m, alpha=alpha, risk=risk, grid=grid, groups=[label] * len(m))
    assert grouped.groups == (label,)
    assert grouped.results == (plain,) and grouped.result_for(label).to_json() == plain.to_json()
    assert _bits(np.array([grouped.threshold_for(label)])) == _bits(np.array([plain.threshold]))
    alphas = np.array([alpha, min(0.95, 2 * alpha)])
    rows = crc_thresholds(m, alpha=alphas, risk=risk, grid=grid, groups=[label] * len(m))
    assert rows.shape == (1, 2)
    assert _bits(rows[0]) == _bits(crc_thresholds(m, alpha=alphas, risk=risk, grid=grid))


@settings(max_examples=40, deadline=None)
@given(minima_st, alpha_st, risk_st, bound_st, st.sampled_from([None, "paper"]))
def test_ucb_one_group_equals_ungrouped(
    mins: list[float], alpha: float, risk: Any, bound: str, grid: Any
) -> None:
    m = np.asarray(mins)
    kw: dict[str, Any] = {"alpha": alpha, "delta": 0.1, "risk": risk, "bound": bound}
    plain = ucb_threshold(m, grid=grid, **kw)
    grouped = ucb_threshold(m, grid=grid, groups=np.zeros(len(m), dtype=np.int64), **kw)
    assert grouped.group_delta == 0.1 and grouped.results == (plain,)
    assert grouped.result_for(0).to_json() == plain.to_json()
    vec = ucb_thresholds(m, groups=np.zeros(len(m), dtype=np.int64), **{**kw, "alpha": [alpha]})
    assert _bits(vec[0]) == _bits(ucb_thresholds(m, **{**kw, "alpha": [alpha]}))


@settings(max_examples=60, deadline=None)
@given(grouped_minima(), alpha_st, risk_st, grid_st)
def test_crc_each_group_is_the_ungrouped_calibration_on_its_rows(
    data: tuple[np.ndarray, np.ndarray], alpha: float, risk: Any, grid: Any
) -> None:
    m, labels = data
    res = crc_threshold(m, alpha=alpha, risk=risk, grid=grid, groups=labels)
    assert res.groups == tuple(sorted(set(labels.tolist())))
    alphas = np.array([alpha / 2, alpha])
    rows = crc_thresholds(m, alpha=alphas, risk=risk, grid=grid, groups=labels)
    for i, g in enumerate(res.groups):
        own = m[labels == g]
        assert res.result_for(g) == crc_threshold(own, alpha=alpha, risk=risk, grid=grid)
        assert res.n[i] == len(own)
        assert _bits(rows[i]) == _bits(crc_thresholds(own, alpha=alphas, risk=risk, grid=grid))


@settings(max_examples=40, deadline=None)
@given(grouped_minima(), alpha_st, risk_st, bound_st)
def test_ucb_each_group_is_the_ungrouped_calibration_at_delta_over_g(
    data: tuple[np.ndarray, np.ndarray], alpha: float, risk: Any, bound: str
) -> None:
    m, labels = data
    delta = 0.2
    res = ucb_threshold(m, alpha=alpha, delta=delta, risk=risk, bound=bound, groups=labels)
    n_groups = len(res.groups)
    assert res.group_delta == delta / n_groups and res.correction == "bonferroni"
    rows = ucb_thresholds(m, alpha=[alpha], delta=delta, risk=risk, bound=bound, groups=labels)
    for i, g in enumerate(res.groups):
        own = m[labels == g]
        kw: dict[str, Any] = {"delta": delta / n_groups, "risk": risk, "bound": bound}
        assert res.result_for(g) == ucb_threshold(own, alpha=alpha, **kw)
        assert _bits(rows[i]) == _bits(ucb_thresholds(own, alpha=[alpha], **kw))


@settings(max_examples=50, deadline=None)
@given(grouped_minima(), alpha_st, risk_st, st.permutations(["w", "x", "y", "z"]))
def test_relabelling_groups_permutes_the_result(
    data: tuple[np.ndarray, np.ndarray], alpha: float, risk: Any, names: list[str]
) -> None:
    m, labels = data  # integer labels 0..G-1: names[g] renames group g
    renamed = np.asarray(names)[labels]
    for fit in (crc_threshold, ucb_threshold):
        old = fit(m, alpha=alpha, risk=risk, groups=labels)
        new = fit(m, alpha=alpha, risk=risk, groups=renamed)
        assert new.groups == tuple(sorted(names[int(g)] for g in old.groups))
        for g in old.groups:
            assert new.result_for(names[int(g)]) == old.result_for(g)
        assert new.calibration_sha256 == old.calibration_sha256
    old_rows = crc_thresholds(m, alpha=[alpha], risk=risk, groups=labels)
    new_rows = crc_thresholds(m, alpha=[alpha], risk=risk, groups=renamed)
    order = [
        sorted(names[g] for g in range(len(old_rows))).index(names[g]) for g in range(len(old_rows))
    ]
    assert _bits(new_rows[order]) == _bits(old_rows)


def test_trajectories_groups_name_every_trajectory() -> None:
    """With Trajectories, ``groups`` labels all of them; each class is split by its labels."""
    rng = np.random.default_rng(3)
    scores = [rng.uniform(size=int(rng.integers(1, 5))) for _ in range(60)]
    labels = (rng.uniform(size=60) < 0.6).astype(np.int64)
    labels[:4] = [1, 0, 1, 0]
    tr = Trajectories.from_arrays(scores, labels)
    task = np.array(["a", "a", "b", "b", *rng.choice(["a", "b"], size=56)])
    for risk in ("false_alarm", "missed_detection"):
        res = crc_threshold(tr, alpha=0.3, risk=risk, groups=task)
        ures = ucb_threshold(tr, alpha=0.3, risk=risk, groups=task)
        for g in ("a", "b"):
            part = tr.subset(task == g)
            assert res.result_for(g) == crc_threshold(part, alpha=0.3, risk=risk)
            assert ures.result_for(g) == ucb_threshold(part, alpha=0.3, delta=0.05, risk=risk)


def test_small_group_says_so_in_its_own_result() -> None:
    m = np.concatenate([np.linspace(0.1, 0.9, 30), [0.2, 0.4, 0.6]])
    groups = ["big"] * 30 + ["small"] * 3
    res = crc_threshold(m, alpha=0.1, groups=groups)
    assert list(res.found) == [True, False]
    small = res.result_for("small")
    assert isinstance(small, CRCThreshold) and small.min_n == 9 and "n >= 9" in (small.reason or "")
    assert res.threshold_for("small") == -math.inf  # the safe threshold, never a silent number
    lines = repr(res).splitlines()
    assert lines[0] == "GroupedCRCThreshold(groups=2, found=1/2)"
    assert lines[1].startswith("  reason: group 'small': too few") and len(lines) <= 12
    u = ucb_threshold(m, alpha=0.1, delta=0.1, groups=groups)
    assert isinstance(u.result_for("small"), UCBThreshold) and not u.result_for("small").found
    # the smallest size is the one at the group's level δ/G, not at δ
    at_group_level = ucb_threshold(m[30:], alpha=0.1, delta=0.05)
    assert u.result_for("small").min_n == at_group_level.min_n
    assert at_group_level.min_n is not None and at_group_level.min_n > 22  # 22 at δ = 0.1
    assert repr(u).splitlines()[0] == "GroupedUCBThreshold(groups=2, found=1/2)"


def test_guarantees_are_stated() -> None:
    m = np.linspace(0.0, 1.0, 200)
    groups = np.arange(200) % 4
    crc = crc_threshold(m, alpha=0.1, groups=groups)
    assert "EACH group" in crc.guarantee and "Not simultaneous" in crc.guarantee
    ucb = ucb_threshold(m, alpha=0.1, delta=0.1, groups=groups)
    assert "all groups at once" in ucb.guarantee and "Bonferroni" in ucb.guarantee
    assert "0.025" in ucb.guarantee and ucb.group_delta == 0.025
    for doc in (crc_threshold.__doc__, ucb_threshold.__doc__):
        assert doc is not None and "groups" in doc
    assert "Bonferroni" in (ucb_threshold.__doc__ or "")


def test_threshold_for_and_unknown_group() -> None:
    m = np.linspace(0.0, 1.0, 100)
    res = crc_threshold(m, alpha=0.2, groups=np.arange(100) % 3)
    assert res.threshold_for(np.int64(2)) == res.results[2].threshold
    assert res.thresholds() == {
        g: r.threshold for g, r in zip(res.groups, res.results, strict=True)
    }
    assert _bits(res.threshold_array) == _bits(np.array([r.threshold for r in res.results]))
    for bad in (3, "1", 1.0, True):
        with pytest.raises(ValueError, match=r"^group:"):
            res.threshold_for(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- caps, Šidák
def _sidak(delta: float, n_groups: int) -> float:
    return float(1.0 - (1.0 - delta) ** (1.0 / n_groups))


@settings(max_examples=40, deadline=None)
@given(minima_st, alpha_st, risk_st, bound_st, st.sampled_from([0, "task"]))
def test_ucb_one_group_caps_and_sidak_equal_ungrouped(
    mins: list[float], alpha: float, risk: Any, bound: str, label: int | str
) -> None:
    m = np.asarray(mins)
    kw: dict[str, Any] = {"delta": 0.1, "risk": risk, "bound": bound}
    plain = ucb_threshold(m, alpha=alpha, **kw)
    for cap in (alpha, [alpha], {label: alpha}, np.array([alpha])):
        res = ucb_threshold(m, alpha=cap, groups=[label] * len(m), correction="sidak", **kw)
        assert res.group_delta == 0.1 and res.results == (plain,)
        assert res.result_for(label).to_json() == plain.to_json()
        assert _bits(res.caps) == _bits(np.array([alpha]))
    vec = ucb_thresholds(m, alpha=[alpha], groups=[label] * len(m), correction="sidak", **kw)
    assert _bits(vec[0]) == _bits(ucb_thresholds(m, alpha=[alpha], **kw))


@settings(max_examples=40, deadline=None)
@given(grouped_minima(), st.lists(alpha_st, min_size=4, max_size=4), risk_st, bound_st)
def test_ucb_caps_and_sidak_each_group_is_the_ungrouped_calibration(
    data: tuple[np.ndarray, np.ndarray], caps: list[float], risk: Any, bound: str
) -> None:
    m, labels = data
    delta = 0.2
    n_groups = len(set(labels.tolist()))
    mine = caps[:n_groups]
    res = ucb_threshold(
        m, alpha=mine, delta=delta, risk=risk, bound=bound, groups=labels, correction="sidak"
    )
    level = -math.expm1(math.log1p(-delta) / n_groups) if n_groups > 1 else delta
    assert res.group_delta == level and res.correction == "sidak"
    assert res.alpha == tuple(mine) and _bits(res.caps) == _bits(np.array(mine))
    rows = ucb_thresholds(
        m, alpha=[0.3], delta=delta, risk=risk, bound=bound, groups=labels, correction="sidak"
    )
    for i, g in enumerate(res.groups):
        own = m[labels == g]
        kw: dict[str, Any] = {"delta": level, "risk": risk, "bound": bound}
        assert res.result_for(g) == ucb_threshold(own, alpha=mine[i], **kw)
        assert _bits(rows[i]) == _bits(ucb_thresholds(own, alpha=[0.3], **kw))


def test_caps_mapping_sequence_and_array_agree() -> None:
    m = np.linspace(0.0, 1.0, 300)
    groups = np.array(["x", "y", "z"])[np.arange(300) % 3]
    as_map = ucb_threshold(m, alpha={"z": 0.3, "x": 0.1, "y": 0.2}, groups=groups)
    as_seq = ucb_threshold(m, alpha=[0.1, 0.2, 0.3], groups=groups)
    as_arr = ucb_threshold(m, alpha=np.array([0.1, 0.2, 0.3]), groups=groups)
    assert as_map == as_seq == as_arr and as_map.to_json() == as_seq.to_json()
    assert as_map.alpha == (0.1, 0.2, 0.3) and as_map.caps.tolist() == [0.1, 0.2, 0.3]
    assert [r.alpha for r in as_map.results] == [0.1, 0.2, 0.3]
    # equal caps per group certify what one number does; only the stated cap differs
    one = ucb_threshold(m, alpha=0.2, groups=groups)
    same = ucb_threshold(m, alpha={"x": 0.2, "y": 0.2, "z": 0.2}, groups=groups)
    assert one.results == same.results and one.alpha == 0.2 and same.alpha == (0.2, 0.2, 0.2)
    assert "> α)" in one.guarantee and "> α_g)" in same.guarantee
    # a larger cap never gives a more conservative threshold (fixed sequence, same data)
    assert np.all(np.diff(as_seq.threshold_array) >= 0)


@pytest.mark.parametrize("n_groups", [1, 2, 3, 10, 1000])
@pytest.mark.parametrize("delta", [0.5, 0.1, 1e-6])
def test_sidak_level(n_groups: int, delta: float) -> None:
    m = np.linspace(0.0, 1.0, max(2000, n_groups))
    groups = np.arange(len(m)) % n_groups
    res = ucb_threshold(m, alpha=0.2, delta=delta, groups=groups, correction="sidak")
    bonf = ucb_threshold(m, alpha=0.2, delta=delta, groups=groups)
    assert bonf.group_delta == delta / n_groups and bonf.correction == "bonferroni"
    with decimal.localcontext() as ctx:  # 1 − (1 − δ)^{1/G} to 40 digits
        ctx.prec = 40
        one = decimal.Decimal(1)
        exact = one - (one - decimal.Decimal(delta)) ** (one / n_groups)
    assert abs(decimal.Decimal(res.group_delta) / exact - 1) < 1e-14
    assert res.group_delta >= bonf.group_delta and (n_groups == 1) == (
        res.group_delta == bonf.group_delta
    )
    assert all(r.delta == res.group_delta for r in res.results)
    # one level for UCB and LTT: the same helper in both
    ltt = learn_then_test_grouped(
        counts=np.zeros((n_groups, 1), dtype=np.int64),
        n=10,
        alpha=0.2,
        delta=delta,
        mode="simultaneous",
        correction="sidak",
        order="ascending",
    )
    assert ltt.group_delta == res.group_delta
    if n_groups == 2 and delta == 0.1:
        assert res.group_delta == 0.051316701949486204  # 1 − √0.9
        assert "Šidák" in res.guarantee and "independent" in res.guarantee
        assert "1 − (1 − δ)^(1/G) = 0.051316701949486204" in res.guarantee


@settings(max_examples=40, deadline=None)
@given(grouped_minima(), alpha_st, risk_st, bound_st)
def test_sidak_is_never_more_conservative_than_bonferroni(
    data: tuple[np.ndarray, np.ndarray], alpha: float, risk: Any, bound: str
) -> None:
    m, labels = data
    kw: dict[str, Any] = {"alpha": alpha, "delta": 0.2, "risk": risk, "bound": bound}
    sidak = ucb_threshold(m, groups=labels, correction="sidak", wsr_delta=0.2, **kw)
    bonf = ucb_threshold(m, groups=labels, wsr_delta=0.2, **kw)
    if risk == "false_alarm":  # a larger λ alarms less: less conservative
        assert np.all(sidak.threshold_array >= bonf.threshold_array)
    else:
        assert np.all(sidak.threshold_array <= bonf.threshold_array)
    assert np.all(sidak.found >= bonf.found)


def test_caps_and_correction_json_round_trip() -> None:
    m = np.concatenate([np.linspace(0.05, 0.95, 80), [0.3, 0.6]])
    groups = [2] * 40 + [5] * 40 + [9] * 2  # group 9 certifies nothing: ±inf in the payload
    for risk in ("false_alarm", "missed_detection"):
        res = ucb_threshold(
            m, alpha={9: 0.3, 2: 0.1, 5: 0.2}, risk=risk, groups=groups, correction="sidak"
        )
        text = res.to_json()
        back = GroupedUCBThreshold.from_json(text)
        assert back == res and back.to_json() == text
        assert back.alpha == (0.1, 0.2, 0.3) and back.correction == "sidak"
        assert back.group_delta == res.group_delta and "Šidák" in back.guarantee
        settings_ = json.loads(text)["settings"]
        assert settings_["correction"] == "sidak"
        assert settings_["alpha"] == {"__tuple__": [0.1, 0.2, 0.3]}
        assert settings_["group_delta"] == res.group_delta
    # the default payload keeps the fields and the plain-number alpha it always had
    old = json.loads(ucb_threshold(m, alpha=0.2, groups=groups).to_json())
    assert set(old["fields"]) == {
        "groups",
        "results",
        "alpha",
        "delta",
        "group_delta",
        "correction",
        "risk",
        "bound",
        "method",
        "calibration_sha256",
        "guarantee",
    }
    assert old["fields"]["alpha"] == 0.2 and old["fields"]["correction"] == "bonferroni"


@pytest.mark.parametrize(
    ("alpha", "message"),
    [
        ({"a": 0.1, "b": 0.1, "c": 0.1}, "group 'c' has no calibration rows"),
        ({"a": 0.1}, "no cap for group 'b'"),
        ([0.1, 0.2, 0.3], "3 caps for 2 groups"),
        ([0.1, 1.0], r"must lie in \(0, 1\)"),
        ({"a": 0.0, "b": 0.1}, r"must lie in \(0, 1\)"),
        ([0.1, math.nan], "NaN|must lie in"),
        (1.5, r"must lie in \(0, 1\)"),
        (-0.1, r"must lie in \(0, 1\)"),
    ],
)
def test_bad_caps(alpha: Any, message: str) -> None:
    m = np.array([0.1, 0.4, 0.6, 0.9])
    with pytest.raises(ValueError, match=rf"^alpha:.*({message})"):
        ucb_threshold(m, alpha=alpha, groups=["a", "b", "a", "b"])


def test_caps_need_groups_and_correction_is_checked() -> None:
    m = np.array([0.1, 0.4, 0.6, 0.9])
    caps: Any = [0.1, 0.2]
    with pytest.raises(TypeError, match=r"^alpha: expected a number"):
        ucb_threshold(m, alpha=caps)  # per-group caps without groups
    bad: Any
    for bad in ("holm", "Sidak", "", None):
        with pytest.raises(ValueError, match=r"^correction: must be one of"):
            ucb_threshold(m, alpha=0.1, correction=bad)
        with pytest.raises(ValueError, match=r"^correction: must be one of"):
            ucb_threshold(m, alpha=0.1, groups=[0, 1, 0, 1], correction=bad)
        with pytest.raises(ValueError, match=r"^correction: must be one of"):
            ucb_thresholds(m, alpha=[0.1], groups=[0, 1, 0, 1], correction=bad)


@settings(max_examples=40, deadline=None)
@given(grouped_minima(), st.lists(alpha_st, min_size=4, max_size=4), risk_st)
def test_crc_caps_each_group_is_the_ungrouped_calibration_at_its_cap(
    data: tuple[np.ndarray, np.ndarray], caps: list[float], risk: Any
) -> None:
    m, labels = data
    mine = caps[: len(set(labels.tolist()))]
    res = crc_threshold(m, alpha=mine, risk=risk, groups=labels)
    assert res.alpha == tuple(mine) and _bits(res.caps) == _bits(np.array(mine))
    for i, g in enumerate(res.groups):
        assert res.result_for(g) == crc_threshold(m[labels == g], alpha=mine[i], risk=risk)
    as_map = crc_threshold(
        m, alpha=dict(zip(res.groups, mine, strict=True)), risk=risk, groups=labels
    )
    assert as_map == res and as_map.to_json() == res.to_json()
    back = GroupedCRCThreshold.from_json(res.to_json())
    assert back == res and back.alpha == tuple(mine) and "α_g" in back.guarantee


@pytest.mark.parametrize(
    ("alpha", "message"),
    [({"a": 0.1}, "no cap for group 'b'"), ([0.1, 1.0], r"must lie in \(0, 1\)")],
)
def test_crc_bad_caps(alpha: Any, message: str) -> None:
    with pytest.raises(ValueError, match=rf"^alpha:.*({message})"):
        crc_threshold(np.array([0.1, 0.4, 0.6, 0.9]), alpha=alpha, groups=["a", "b", "a", "b"])


# --------------------------------------------------------------------------- JSON
@pytest.mark.parametrize("fit", [crc_threshold, ucb_threshold])
def test_json_round_trip(fit: Any) -> None:
    m = np.concatenate([np.linspace(0.05, 0.95, 80), [0.3, 0.6]])
    groups = [2] * 40 + [5] * 40 + [9] * 2  # group 9 certifies nothing: ±inf in the payload
    for risk in ("false_alarm", "missed_detection"):
        res = fit(m, alpha=0.2, risk=risk, groups=groups)
        text = res.to_json()
        back = type(res).from_json(text)
        assert back == res and back.to_json() == text
        assert all(type(r) is type(res.results[0]) for r in back.results)
        payload = json.loads(text)
        assert payload["kind"] == type(res).__name__ and payload["n"] == 82
        assert payload["settings"]["groups"] == [2, 5, 9] and payload["guarantee"]
    names = crc_threshold(m, alpha=0.2, groups=["x"] * 41 + ["y"] * 41)
    assert GroupedCRCThreshold.from_json(names.to_json()).groups == ("x", "y")
    with pytest.raises(ValueError, match=r"^text:"):
        GroupedUCBThreshold.from_json(names.to_json())


# --------------------------------------------------------------------------- bad input
def _bad_groups_calls(m: Any, groups: Any) -> list[Any]:
    return [
        lambda: crc_threshold(m, alpha=0.2, groups=groups),
        lambda: crc_thresholds(m, alpha=[0.2], groups=groups),
        lambda: ucb_threshold(m, alpha=0.2, groups=groups),
        lambda: ucb_thresholds(m, alpha=[0.2], groups=groups),
    ]


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([0, 1, 0], "3 labels for 4"),  # wrong length
        ([0, 1, 0, 1, 1], "5 labels for 4"),
        ([0.0, 1.0, math.nan, 0.0], "NaN"),
        (["a", "", "a", "b"], "empty label"),
        ([], "empty"),
        ([[0, 1], [0, 1]], "1-d"),
        ([0.5, 1.5, 0.5, 1.5], "integer or string"),
        ([None, 1, 2, 3], "integer or string"),
    ],
)
def test_bad_groups(groups: Any, message: str) -> None:
    m = np.array([0.1, 0.4, 0.6, 0.9])
    for call in _bad_groups_calls(m, groups):
        with pytest.raises(ValueError, match=rf"^groups:.*{message}"):
            call()


def test_group_with_no_trajectory_of_the_class() -> None:
    tr = Trajectories.from_arrays([[0.9, 0.4], [0.8], [0.2, 0.1], [0.7]], [1, 1, 0, 0])
    groups = ["a", "a", "b", "b"]  # group b has no correct trajectory
    for call in _bad_groups_calls(tr, groups):
        with pytest.raises(ValueError, match=r"^groups: group 'b' has no correct"):
            call()
    with pytest.raises(ValueError, match=r"^groups: group 'a' has no incorrect"):
        crc_threshold(tr, alpha=0.5, risk="missed_detection", groups=groups)


# --------------------------------------------------------------------------- validity
ALPHA, DELTA = 0.1, 0.1


def _draw(rng: np.random.Generator, shape: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Minima of every group, concatenated in group order: U^{b_g}, n_g of them."""
    return np.concatenate([rng.uniform(size=k) ** b for b, k in zip(shape, n, strict=True)])


def _risk(lam: np.ndarray, shape: np.ndarray, risk: str) -> np.ndarray:
    """True risk of each group's threshold: R_I = λ^{1/b}, R_II = 1 − λ^{1/b} (λ clipped)."""
    cdf: np.ndarray = np.clip(lam, 0.0, 1.0) ** (1.0 / shape)
    return cdf if risk == "false_alarm" else 1.0 - cdf


# Four groups: the first too small to certify at α = 0.1 (n = 8 < 9), the third (b = 2) with far
# more false alarms at any λ than the big fourth group, which dominates a pooled calibration.
CRC_SHAPES = np.array([1.0, 0.5, 2.0, 0.5])
CRC_N = np.array([8, 15, 40, 120])
CRC_RUNS = 4000


@pytest.mark.validity
@pytest.mark.parametrize("risk", ["false_alarm", "missed_detection"])
def test_crc_expected_risk_per_group(risk: Risk) -> None:
    rng = np.random.default_rng(1804 if risk == "false_alarm" else 1805)
    labels = np.repeat(np.arange(4), CRC_N)
    risks = np.empty((CRC_RUNS, 4))
    for r in range(CRC_RUNS):
        res = crc_threshold(
            _draw(rng, CRC_SHAPES, CRC_N),
            alpha=ALPHA,
            risk=risk,
            groups=labels,
        )
        risks[r] = _risk(res.threshold_array, CRC_SHAPES, risk)
    mean, sd = risks.mean(axis=0), risks.std(axis=0, ddof=1)
    tol = 4 * sd / math.sqrt(CRC_RUNS)
    assert np.all(mean <= ALPHA + tol), (mean, tol)
    # continuous scores: E[R_g] = k_g/(n_g + 1) exactly (0 for the group that certifies nothing)
    k = np.floor(ALPHA * (CRC_N + 1))
    assert np.all(np.abs(mean - k / (CRC_N + 1)) <= tol + 1e-12), (mean, k / (CRC_N + 1))


@pytest.mark.validity
def test_crc_expected_risk_per_group_at_its_own_cap() -> None:
    """Mondrian CRC with a cap α_g per group: E[R_g] = k_g/(n_g + 1) ≤ α_g for each group."""
    caps = np.array([0.2, 0.05, 0.15, 0.1])
    rng = np.random.default_rng(1808)
    labels = np.repeat(np.arange(4), CRC_N)
    risks, twin = np.empty((CRC_RUNS, 4)), np.empty((CRC_RUNS, 4))
    for r in range(CRC_RUNS):
        m = _draw(rng, CRC_SHAPES, CRC_N)
        res = crc_threshold(m, alpha=caps, groups=labels)
        risks[r] = _risk(res.threshold_array, CRC_SHAPES, "false_alarm")
        # invalid twin: every group calibrated at the loosest cap, read against its own
        loose = crc_threshold(m, alpha=float(caps.max()), groups=labels)
        twin[r] = _risk(loose.threshold_array, CRC_SHAPES, "false_alarm")
    mean, sd = risks.mean(axis=0), risks.std(axis=0, ddof=1)
    tol = 4 * sd / math.sqrt(CRC_RUNS)
    assert np.all(mean <= caps + tol), (mean, tol)
    k = np.floor(caps * (CRC_N + 1))
    assert np.all(np.abs(mean - k / (CRC_N + 1)) <= tol + 1e-12), (mean, k / (CRC_N + 1))
    twin_mean, twin_sd = twin.mean(axis=0), twin.std(axis=0, ddof=1)
    assert twin_mean[1] > caps[1] + 4 * twin_sd[1] / math.sqrt(CRC_RUNS)  # the check FAILS


@pytest.mark.validity
def test_pooled_crc_breaks_a_group_in_expectation() -> None:
    """Invalid twin: one pooled threshold, read per group, fails group 2's expectation check."""
    rng = np.random.default_rng(1806)
    risks = np.empty((CRC_RUNS, 4))
    for r in range(CRC_RUNS):
        lam = crc_threshold(_draw(rng, CRC_SHAPES, CRC_N), alpha=ALPHA).threshold
        risks[r] = _risk(np.full(4, lam), CRC_SHAPES, "false_alarm")
    mean, sd = risks.mean(axis=0), risks.std(axis=0, ddof=1)
    assert mean[2] > ALPHA + 4 * sd[2] / math.sqrt(CRC_RUNS)  # the per-group check FAILS
    assert mean[2] > 2 * ALPHA


# Ten groups near their cap: every group's own UCB threshold sits where its risk curve crosses α.
UCB_SHAPES = np.linspace(0.6, 1.6, 10)
UCB_N = np.full(10, 150)
UCB_RUNS = 1000
UCB_TOLERANCE = int(stats.binom.ppf(1 - 1e-4, UCB_RUNS, DELTA))


def _ucb_violations(
    seed: int, *, caps: np.ndarray, runs: int, correction: Correction | None
) -> np.ndarray:
    """Per run and group: the group's threshold has true false-alarm risk above its cap.

    ``correction`` None is the invalid twin: each group at δ, read as if simultaneous.
    """
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), UCB_N)
    alpha = caps.tolist()
    bad = np.empty((runs, 10), dtype=np.bool_)
    for r in range(runs):
        m = _draw(rng, UCB_SHAPES, UCB_N)
        if correction is not None:
            res = ucb_threshold(m, alpha=alpha, delta=DELTA, groups=labels, correction=correction)
            lam = res.threshold_array
        else:
            lam = np.array(
                [
                    ucb_threshold(m[labels == g], alpha=alpha[g], delta=DELTA).threshold
                    for g in range(10)
                ]
            )
        bad[r] = _risk(lam, UCB_SHAPES, "false_alarm") > caps
    return bad


@pytest.mark.validity
def test_ucb_all_groups_at_once_within_delta() -> None:
    bad = _ucb_violations(1807, caps=np.full(10, ALPHA), runs=UCB_RUNS, correction="bonferroni")
    v_any = int(bad.any(axis=1).sum())
    assert v_any <= UCB_TOLERANCE, (v_any, UCB_TOLERANCE)
    per_group_tol = stats.binom.ppf(1 - 1e-4, UCB_RUNS, DELTA / 10)
    assert np.all(bad.sum(axis=0) <= per_group_tol), (bad.sum(axis=0), per_group_tol)


@pytest.mark.validity
def test_invalid_twin_per_group_delta_claimed_simultaneous_fails() -> None:
    """Per-group thresholds at δ each, read as simultaneous: ≈ 1 − (1 − δ_eff)^10 violate."""
    bad = _ucb_violations(1807, caps=np.full(10, ALPHA), runs=UCB_RUNS, correction=None)
    v_any = int(bad.any(axis=1).sum())
    assert v_any > UCB_TOLERANCE, (v_any, UCB_TOLERANCE)  # the simultaneous check FAILS
    per_group = bad.mean(axis=0)
    assert np.all(per_group <= stats.binom.ppf(1 - 1e-4, UCB_RUNS, DELTA) / UCB_RUNS)
    expected = 1 - np.prod(1 - per_group)  # independent groups
    assert abs(v_any / UCB_RUNS - expected) < 4 * math.sqrt(expected * (1 - expected) / UCB_RUNS)


# Šidák for independent groups, each under its own cap: the ten groups' calibration samples are
# drawn separately (independent, fixed sizes), as the correction needs.
SIDAK_CAPS = np.linspace(0.05, 0.2, 10)
SIDAK_RUNS = 2000
SIDAK_TOLERANCE = int(stats.binom.ppf(1 - 1e-4, SIDAK_RUNS, DELTA))


@pytest.mark.validity
def test_ucb_sidak_independent_groups_within_delta() -> None:
    bad = _ucb_violations(1808, caps=SIDAK_CAPS, runs=SIDAK_RUNS, correction="sidak")
    v_any = int(bad.any(axis=1).sum())
    assert v_any <= SIDAK_TOLERANCE, (v_any, SIDAK_TOLERANCE)
    per_group_tol = stats.binom.ppf(1 - 1e-4, SIDAK_RUNS, _sidak(DELTA, 10))
    assert np.all(bad.sum(axis=0) <= per_group_tol), (bad.sum(axis=0), per_group_tol)


@pytest.mark.validity
def test_invalid_twin_sidak_each_group_at_delta_fails() -> None:
    """Each group at δ under its cap, read as simultaneous: the same check FAILS."""
    bad = _ucb_violations(1808, caps=SIDAK_CAPS, runs=SIDAK_RUNS, correction=None)
    v_any = int(bad.any(axis=1).sum())
    assert v_any > SIDAK_TOLERANCE, (v_any, SIDAK_TOLERANCE)
