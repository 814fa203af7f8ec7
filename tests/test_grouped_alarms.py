"""Per-group alarm thresholds: CRC per group (Mondrian), UCB for all groups at once (δ/G).

Properties: one group is the ungrouped calibration bit for bit, each group equals the ungrouped
calibration on its own rows (UCB at δ/G), relabelling the groups permutes the result. Monte
Carlo validity with analytic risks: group g's minima are U^{b_g}, so its false-alarm risk is
R_g(λ) = P(m < λ) = λ^{1/b_g} and its missed-detection risk 1 − λ^{1/b_g} (λ in [0, 1]).
Expectations: mean ≤ α + 4·sd/√R; high probability: V ≤ binom.ppf(1 − 1e−4, R, δ); each check
has an invalid twin that fails it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

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
    cdf = np.clip(lam, 0.0, 1.0) ** (1.0 / shape)
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


def _ucb_violations(seed: int, *, simultaneous: bool) -> np.ndarray:
    """Per run and group: the group's threshold has true false-alarm risk above α."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), UCB_N)
    bad = np.empty((UCB_RUNS, 10), dtype=np.bool_)
    for r in range(UCB_RUNS):
        m = _draw(rng, UCB_SHAPES, UCB_N)
        if simultaneous:
            lam = ucb_threshold(m, alpha=ALPHA, delta=DELTA, groups=labels).threshold_array
        else:  # invalid twin: each group at δ, read as if simultaneous
            lam = np.array(
                [
                    ucb_threshold(m[labels == g], alpha=ALPHA, delta=DELTA).threshold
                    for g in range(10)
                ]
            )
        bad[r] = _risk(lam, UCB_SHAPES, "false_alarm") > ALPHA
    return bad


@pytest.mark.validity
def test_ucb_all_groups_at_once_within_delta() -> None:
    bad = _ucb_violations(1807, simultaneous=True)
    v_any = int(bad.any(axis=1).sum())
    assert v_any <= UCB_TOLERANCE, (v_any, UCB_TOLERANCE)
    per_group_tol = stats.binom.ppf(1 - 1e-4, UCB_RUNS, DELTA / 10)
    assert np.all(bad.sum(axis=0) <= per_group_tol), (bad.sum(axis=0), per_group_tol)


@pytest.mark.validity
def test_invalid_twin_per_group_delta_claimed_simultaneous_fails() -> None:
    """Per-group thresholds at δ each, read as simultaneous: ≈ 1 − (1 − δ_eff)^10 violate."""
    bad = _ucb_violations(1807, simultaneous=False)
    v_any = int(bad.any(axis=1).sum())
    assert v_any > UCB_TOLERANCE, (v_any, UCB_TOLERANCE)  # the simultaneous check FAILS
    per_group = bad.mean(axis=0)
    assert np.all(per_group <= stats.binom.ppf(1 - 1e-4, UCB_RUNS, DELTA) / UCB_RUNS)
    expected = 1 - np.prod(1 - per_group)  # independent groups
    assert abs(v_any / UCB_RUNS - expected) < 4 * math.sqrt(expected * (1 - expected) / UCB_RUNS)
