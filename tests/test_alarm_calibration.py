"""CRC / UCB alarm-threshold calibration: closed forms, grids, monotonicity, validity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _monitor_sim import (
    correct_minima,
    false_alarm_risk,
    incorrect_minima,
    missed_detection_risk,
    simulate_trajectories,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ctd_stats import pvalues
from ctd_stats.online.alarm_calibration import (
    UCB_BOUNDS,
    crc_general,
    crc_threshold,
    crc_thresholds,
    paper_grid,
    paper_nonstandard_hb_pvalue,
    ucb_threshold,
    ucb_thresholds,
)
from ctd_stats.online.trajectories import Trajectories

EPS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]
# minima on a fine grid (ties happen), kept inside [0, 1] for the paper grid
minima_lists = st.lists(st.integers(0, 400).map(lambda k: k / 400), min_size=1, max_size=60)
eps_st = st.floats(0.01, 0.95)


# --------------------------------------------------------------------------- CRC definitions
def _nondecreasing(x: np.ndarray | list[float]) -> bool:
    a = np.asarray(x)
    return bool(np.all(a[1:] >= a[:-1]))


def _crc_fa_bruteforce(mins: np.ndarray, eps: float) -> float:
    """sup{λ : (#{m < λ} + 1)/(n + 1) ≤ ε} over λ in the data values (where sups are attained)."""
    n = len(mins)
    best = -math.inf
    for lam in np.unique(mins):
        if (np.sum(mins < lam) + 1) / (n + 1) <= eps:
            best = max(best, float(lam))
    return best


@settings(max_examples=150, deadline=None)
@given(minima_lists, eps_st)
def test_crc_false_alarm_closed_form_matches_definition(mins: list[float], eps: float) -> None:
    m = np.asarray(mins)
    res = crc_threshold(m, alpha=eps)
    assert res.threshold == _crc_fa_bruteforce(m, eps)
    n = len(m)
    # the guarantee's bound and the realised calibration loss
    assert res.risk_bound <= eps + 1e-15
    assert res.k / (n + 1) <= eps < (res.k + 1) / (n + 1) or res.k == n
    if res.threshold > -math.inf:
        assert (np.sum(m < res.threshold) + 1) / (n + 1) <= eps


@settings(max_examples=150, deadline=None)
@given(minima_lists, eps_st)
def test_crc_missed_detection_closed_form_matches_definition(mins: list[float], eps: float) -> None:
    m = np.asarray(mins)
    n = len(m)
    lam = crc_threshold(m, alpha=eps, risk="missed_detection").threshold
    feasible = lambda x: (np.sum(m >= x) + 1) / (n + 1) <= eps  # noqa: E731
    if lam == math.inf:
        assert not feasible(np.nextafter(m.max(), np.inf))
    else:
        assert feasible(lam)
        assert not feasible(np.nextafter(lam, -np.inf))  # the infimum: nothing smaller works


@settings(max_examples=100, deadline=None)
@given(minima_lists, st.sampled_from(["false_alarm", "missed_detection"]))
def test_crc_grid_is_conservative_and_close(mins: list[float], risk: str) -> None:
    m = np.asarray(mins)
    exact = crc_thresholds(m, alpha=EPS, risk=risk)  # type: ignore[arg-type]
    grid = crc_thresholds(m, alpha=EPS, risk=risk, grid="paper")  # type: ignore[arg-type]
    step = 1e-4
    for e, g in zip(exact, grid, strict=True):
        if risk == "false_alarm":
            assert g <= e  # fewer alarms
            if e > -math.inf:
                assert e - g < step + 1e-12
        else:
            assert g >= e  # more alarms
            if e < math.inf and g < math.inf:
                assert g - e < step + 1e-12


def test_crc_grid_reproduces_reference_formula() -> None:
    """The paper's grid rule: max grid λ with #{m < λ}/(n+1) + 1/(n+1) ≤ ε."""
    rng = np.random.default_rng(3)
    m = np.sort(rng.uniform(size=137))
    g = np.linspace(0.0, 1.0, 10001)
    counts = np.searchsorted(m, g, side="left")
    bound = counts / (len(m) + 1.0) + 1.0 / (len(m) + 1.0)
    for eps in EPS:
        expected = g[bound <= eps].max()
        assert crc_threshold(m, alpha=eps, grid="paper").threshold == expected


@settings(max_examples=60, deadline=None)
@given(minima_lists, st.floats(0.02, 0.9))
def test_general_crc_with_binary_losses_equals_crc(mins: list[float], eps: float) -> None:
    m = np.asarray(mins)
    g = paper_grid()[::50]
    fa = crc_general((m[:, None] < g[None, :]).astype(float), g, alpha=eps)
    assert fa.threshold == crc_threshold(m, alpha=eps, grid=g).threshold
    md = crc_general((m[:, None] >= g[None, :]).astype(float), g, alpha=eps, direction="decreasing")
    assert md.threshold == crc_threshold(m, alpha=eps, grid=g, risk="missed_detection").threshold


@settings(max_examples=60, deadline=None)
@given(minima_lists, st.integers(0, 2**31))
def test_permutation_invariance(mins: list[float], seed: int) -> None:
    m = np.asarray(mins)
    perm = np.random.default_rng(seed).permutation(len(m))
    for risk in ("false_alarm", "missed_detection"):
        np.testing.assert_array_equal(
            crc_thresholds(m, alpha=EPS, risk=risk),
            crc_thresholds(m[perm], alpha=EPS, risk=risk),
        )
        for bound in ("binomial", "hb", "hoeffding"):
            np.testing.assert_array_equal(
                ucb_thresholds(m, alpha=EPS, risk=risk, bound=bound),
                ucb_thresholds(m[perm], alpha=EPS, risk=risk, bound=bound),
            )


@settings(max_examples=40, deadline=None)
@given(minima_lists, st.sampled_from(["binomial", "hoeffding", "hb", "wsr"]))
def test_thresholds_monotone_in_eps_and_delta(mins: list[float], bound: str) -> None:
    m = np.asarray(mins)
    eps = np.linspace(0.05, 0.9, 12)
    for fn_risk, sign in (("false_alarm", 1), ("missed_detection", -1)):
        c = crc_thresholds(m, alpha=eps, risk=fn_risk)  # type: ignore[arg-type]
        assert _nondecreasing(sign * c)
        u = ucb_thresholds(m, alpha=eps, risk=fn_risk, bound=bound)  # type: ignore[arg-type]
        assert _nondecreasing(sign * u)
        # larger delta = weaker requirement = more liberal threshold
        by_delta = [
            ucb_threshold(m, alpha=0.2, delta=d, risk=fn_risk, bound=bound, wsr_delta=0.1).threshold  # type: ignore[call-overload]
            for d in (0.01, 0.05, 0.1, 0.3)
        ]
        assert _nondecreasing(sign * np.asarray(by_delta))


@settings(max_examples=60, deadline=None)
@given(minima_lists, st.sampled_from(["binomial", "hoeffding", "hoeffding_kl", "hb"]))
def test_ucb_closed_form_is_the_sup_of_valid_lambdas(mins: list[float], bound: str) -> None:
    """Count-based p-values are monotone: λ̂ = sup{λ : p(λ) ≤ δ}; the grid is conservative."""
    m = np.asarray(mins)
    n = len(m)
    for eps in (0.1, 0.3):
        res = ucb_threshold(m, alpha=eps, bound=bound)
        vals = np.unique(m)
        p = pvalues.pvalues_from_counts(
            np.array([np.sum(m < v) for v in vals]),
            n,
            alpha=eps,
            method=bound,  # type: ignore[arg-type]
        )
        ok = vals[p <= 0.1]
        assert res.threshold == (ok.max() if len(ok) else -math.inf)
        assert ucb_threshold(m, alpha=eps, bound=bound, grid="paper").threshold <= res.threshold


def test_ucb_binomial_is_clopper_pearson_dual() -> None:
    """λ̂ admits the largest count c with Clopper-Pearson upper bound U(c) ≤ ε."""
    rng = np.random.default_rng(11)
    m = rng.uniform(size=300)
    for eps in EPS:
        res = ucb_threshold(m, alpha=eps, delta=0.1)
        upper = pvalues.binomial_upper_bound(np.arange(301), 300, delta=0.1)
        c_max = int(np.flatnonzero(upper <= eps + 1e-12).max())
        assert res.count == c_max
        assert res.threshold == np.sort(m)[c_max]


def test_paper_variant_is_the_named_nonstandard_formula() -> None:
    # SPEC §1: 0.077 for the paper's formula vs 0.157 textbook HB at n=100, r=0.05, eps=0.1
    p_paper = float(paper_nonstandard_hb_pvalue(np.array([5]), 100, alpha=0.1)[0])
    p_hb = float(pvalues.hb_pvalue(0.05, 100, alpha=0.1))
    assert abs(p_paper - 0.077) < 0.001
    assert abs(p_hb - 0.157) < 0.001
    res = ucb_threshold(np.linspace(0, 1, 50), alpha=0.2, bound="paper_nonstandard_hb")
    assert res.guarantee.startswith("none")
    assert "paper" in "paper_nonstandard_hb" and "paper_nonstandard_hb" in UCB_BOUNDS


def test_results_state_guarantees() -> None:
    tr = Trajectories.from_arrays([[0.9, 0.4], [0.8], [0.2, 0.1], [0.7]], [1, 1, 0, 1])
    crc = crc_threshold(tr, alpha=0.5)
    assert crc.n == 3 and crc.risk == "false_alarm" and "E[" in crc.guarantee
    md = crc_threshold(tr, alpha=0.6, risk="missed_detection")
    assert md.n == 1 and md.threshold == np.nextafter(0.1, 1.0)
    u = ucb_threshold(tr, alpha=0.5)
    assert u.n == 3 and "≤ δ" in u.guarantee


# --------------------------------------------------------------------------- validity
@pytest.mark.validity
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_crc_false_alarm_expectation(eps: float) -> None:
    rng = np.random.default_rng(2024)
    runs, n = 3000, 40
    risks = np.array(
        [
            false_alarm_risk(crc_threshold(correct_minima(rng, n), alpha=eps).threshold)
            for _ in range(runs)
        ]
    )
    mean, sd = risks.mean(), risks.std(ddof=1)
    assert mean <= eps + 4 * sd / math.sqrt(runs)
    # continuous scores: E[R] equals k/(n+1) exactly
    k = math.floor(eps * (n + 1))
    assert abs(mean - k / (n + 1)) <= 4 * sd / math.sqrt(runs)


@pytest.mark.validity
def test_plugin_threshold_fails_the_expectation_check() -> None:
    """A test that cannot fail proves nothing: the uncorrected plug-in quantile is too liberal."""
    rng = np.random.default_rng(7)
    runs, n, eps = 3000, 20, 0.1
    risks = []
    for _ in range(runs):
        m = np.sort(correct_minima(rng, n))
        k = math.floor(eps * n) + 1  # sup{λ : #{m < λ}/n ≤ ε} = m_(⌊εn⌋+1)
        risks.append(false_alarm_risk(float(m[k - 1])))
    r = np.asarray(risks)
    assert r.mean() > eps + 4 * r.std(ddof=1) / math.sqrt(runs)


@pytest.mark.validity
@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_crc_missed_detection_expectation(eps: float) -> None:
    rng = np.random.default_rng(99)
    runs, n = 2000, 40
    risks = np.array(
        [
            missed_detection_risk(
                crc_threshold(
                    incorrect_minima(rng, n), alpha=eps, risk="missed_detection"
                ).threshold
            )
            for _ in range(runs)
        ]
    )
    assert risks.mean() <= eps + 4 * risks.std(ddof=1) / math.sqrt(runs)


@pytest.mark.validity
@pytest.mark.parametrize(
    ("bound", "risk"),
    [
        ("binomial", "false_alarm"),
        ("hb", "false_alarm"),
        ("wsr", "false_alarm"),
        ("binomial", "missed_detection"),
    ],
)
def test_ucb_high_probability(bound: str, risk: str) -> None:
    rng = np.random.default_rng(5)
    runs, n, eps, delta = 1000, 100, 0.2, 0.1
    violations = 0
    for _ in range(runs):
        if risk == "false_alarm":
            lam = ucb_threshold(
                correct_minima(rng, n), alpha=eps, delta=delta, bound=bound
            ).threshold
            violations += false_alarm_risk(lam) > eps
        else:
            m = incorrect_minima(rng, n)
            lam = ucb_threshold(
                m, alpha=eps, delta=delta, bound=bound, risk="missed_detection"
            ).threshold
            violations += missed_detection_risk(lam) > eps
    assert violations <= stats.binom.ppf(1 - 1e-4, runs, delta)


@pytest.mark.validity
def test_plugin_threshold_fails_the_high_probability_check() -> None:
    rng = np.random.default_rng(6)
    runs, n, eps, delta = 1000, 100, 0.2, 0.1
    violations = 0
    for _ in range(runs):
        m = np.sort(correct_minima(rng, n))
        lam = float(m[math.floor(eps * n)])  # plug-in: empirical risk ≤ ε, no correction
        violations += false_alarm_risk(lam) > eps
    assert violations > stats.binom.ppf(1 - 1e-4, runs, delta)


@pytest.mark.validity
def test_crc_on_full_trajectories() -> None:
    """End to end on simulated trajectories (labels select the calibration class)."""
    rng = np.random.default_rng(12)
    runs, eps = 400, 0.2
    risks = []
    for _ in range(runs):
        tr = simulate_trajectories(rng, 100)
        risks.append(false_alarm_risk(crc_threshold(tr, alpha=eps).threshold))
    r = np.asarray(risks)
    assert r.mean() <= eps + 4 * r.std(ddof=1) / math.sqrt(runs)


# --------------------------------------------------------------------------- bad input
def test_bad_input() -> None:
    m = np.array([0.1, 0.5, 0.9])
    for bad_eps in (0.0, 1.0, -0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"^alpha:"):
            crc_threshold(m, alpha=bad_eps)
        with pytest.raises(ValueError, match=r"^alpha:"):
            ucb_threshold(m, alpha=bad_eps)
    with pytest.raises(ValueError, match=r"^alpha:"):
        crc_thresholds(m, alpha=[0.1, 1.2])
    with pytest.raises(ValueError, match="delta"):
        ucb_threshold(m, alpha=0.1, delta=0.0)
    with pytest.raises(ValueError, match="calibration"):
        crc_threshold([0.1, math.nan], alpha=0.1)
    with pytest.raises(ValueError, match="bound"):
        ucb_threshold(m, alpha=0.1, bound="clopper")
    with pytest.raises(ValueError, match="risk"):
        crc_threshold(m, alpha=0.1, risk="both")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="grid"):
        crc_threshold(m, alpha=0.1, grid=[0.5, 0.1])
    with pytest.raises(ValueError, match="grid"):
        crc_threshold(m, alpha=0.1, grid="fine")
    only_correct = Trajectories.from_arrays([[0.5], [0.7]], [1, 1])
    with pytest.raises(ValueError, match="calibration: no incorrect"):
        crc_threshold(only_correct, alpha=0.1, risk="missed_detection")
    with pytest.raises(ValueError, match="labels are required"):
        crc_threshold(Trajectories.from_arrays([[0.5]]), alpha=0.1)
    with pytest.raises(ValueError, match="losses"):
        crc_general([[1.0, 0.0]], [0.1, 0.2], alpha=0.1)  # not monotone
    with pytest.raises(ValueError, match="losses"):
        crc_general([[0.0, 2.0]], [0.1, 0.2], alpha=0.1)  # above the bound
    with pytest.raises(ValueError, match="lambdas"):
        crc_general([[0.0, 1.0]], [0.2, 0.1], alpha=0.1)
    with pytest.raises(ValueError, match="bound"):
        crc_general([[0.0, 1.0]], [0.1, 0.2], alpha=0.1, bound=-1.0)
