"""Tests of ctd_stats.cascade.delegation: signals, policies, top-k baselines, sweep, FAIC."""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctd_stats.cascade import (
    SETTINGS,
    CTDSettings,
    budget_grid,
    calibrate_budget_only,
    calibrate_ctd,
    calibrate_plug_in,
    calibrate_uncertainty,
    cap_group_indices,
    faic,
    global_oracle_masks,
    group_summary,
    performance_risk,
    sweep,
    sweep_delegation_mask,
    sweep_group_summary,
    threshold_grid,
    topk_budgets,
    topk_masks,
    uncertainty_score,
)
from ctd_stats.cascade.simulation import SimulationParameters, simulate_cascade

# --------------------------------------------------------------------------------------------
# signals and settings


def test_uncertainty_score_hand_values() -> None:
    ref = [0.1, 0.2, 0.3, 0.4]
    # F̂(0.25) = 2/4 → u = 0; F̂(0.0) = 0 → −0.5; F̂(0.2) = #{< 0.2}/4 = 1/4 → −0.25
    assert np.allclose(
        uncertainty_score([0.25, 0.0, 0.2, 1.0], reference=ref), [0, -0.5, -0.25, -0.5]
    )


@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=30),
    st.lists(st.floats(0, 1), min_size=1, max_size=30),
)
def test_uncertainty_score_range(p: list[float], ref: list[float]) -> None:
    u = uncertainty_score(p, reference=ref)
    assert np.all(u <= 0) and np.all(u >= -0.5)


def test_reference_settings_follow_spec() -> None:
    s = SETTINGS["reference"]
    assert s.n_thresholds == 100 and s.threshold_margin == 0.01
    assert np.allclose(budget_grid("reference"), np.linspace(0.05, 1.0, 20))
    assert np.allclose(budget_grid("paper_text"), np.linspace(0.05, 0.95, 20))
    assert (s.delta, s.calibration_fraction, s.opt_fraction, s.seed) == (0.1, 0.5, 0.3, 42)
    assert s.batch_sizes == (32, 64, 128) and s.performance == "accuracy"
    assert SETTINGS["reference_auroc"].performance == "auroc"
    assert list(topk_budgets(128)) == sorted(set(np.linspace(0, 128, 21).astype(int).tolist()))


def test_threshold_grid_covers_scores() -> None:
    g = threshold_grid([0.5, -1.0, 2.0], size=100)
    assert g.size == 100 and g[0] == pytest.approx(-1.01) and g[-1] == pytest.approx(2.01)


# --------------------------------------------------------------------------------------------
# top-k baselines and oracle


@given(
    st.integers(1, 300),
    st.integers(1, 64),
    st.data(),
)
def test_topk_delegates_exactly_k_per_full_batch(n: int, b: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, b))
    scores = np.random.default_rng(n * 1000 + b).random(n)
    for window in ("top", "median"):
        mask = topk_masks(scores, batch_size=b, k=k, window=window)[0]
        n_full = n // b
        per_batch = mask[: n_full * b].reshape(n_full, b).sum(axis=1) if n_full else np.zeros(0)
        assert np.all(per_batch == k)
        if n % b:
            assert mask[n_full * b :].sum() == min(k, n % b)


@given(st.integers(2, 64), st.data())
def test_unc_topk_window_is_centred(b: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, b))
    rng = np.random.default_rng(b + 7 * k)
    p = rng.permutation(b) / b  # distinct scores, one full batch
    mask = topk_masks(p, batch_size=b, k=k, window="median")[0]
    start = max(0, b // 2 - k // 2)
    end = min(b, start + k)
    start = end - k
    expected = np.sort(p)[start:end]
    assert np.array_equal(np.sort(p[mask]), expected)


def test_unc_topk_window_hand_example() -> None:
    # B = 8, k = 3: start = 4 − 1 = 3, ranks 3, 4, 5 (0-based) of the ascending probe scores.
    p = np.array([0.7, 0.1, 0.5, 0.3, 0.9, 0.2, 0.6, 0.4])
    mask = topk_masks(p, batch_size=8, k=3, window="median")[0]
    assert set(p[mask].tolist()) == {0.4, 0.5, 0.6}


@given(st.integers(2, 200), st.integers(1, 40), st.data())
def test_oracle_topk_dominates_on_mean_value(n: int, b: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, b))
    rng = np.random.default_rng(n + 1000 * b)
    v = rng.uniform(-1, 1, n)
    others = [rng.normal(size=n), v + rng.normal(size=n)]
    oracle = topk_masks(v, batch_size=b, k=k)[0]
    for s in others:
        for window in ("top", "median"):
            mask = topk_masks(s, batch_size=b, k=k, window=window)[0]
            assert mask.sum() == oracle.sum()
            assert v[oracle].mean() >= v[mask].mean() - 1e-12


def test_global_oracle() -> None:
    v = np.array([0.5, -0.2, 0.9, 0.0, 0.1, 0.3])
    masks = global_oracle_masks(v, alpha=[0.3, 1.0])
    # ⌈0.3·6⌉ = 2 → the two largest v; at α = 1 only the 4 inputs with v > 0
    assert set(np.flatnonzero(masks[0])) == {0, 2}
    assert set(np.flatnonzero(masks[1])) == {0, 2, 4, 5}
    # ⌈0.3 · 100⌉ must be 30 despite 0.3·100 = 30.000000000000004
    assert global_oracle_masks(np.ones(100), alpha=0.3).sum() == 30


def test_oracle_of_same_size_dominates_calibrated_policies() -> None:
    t = simulate_cascade(1200, seed=5)
    res = sweep(t)
    ev = t.take(res.eval_index)
    v = ev.values()
    v_sorted = np.sort(v)[::-1]
    checked = 0
    for cal in res.calibrations:
        raw = ev.probe if cal.signal == "uncertainty" else ev.dv
        mask = cal.delegate(raw)
        k = int(mask.sum())
        if k == 0:
            continue
        assert v_sorted[:k].mean() >= v[mask].mean() - 1e-12
        checked += 1
    assert checked > 20


# --------------------------------------------------------------------------------------------
# calibrated policies


def _cal(n: int = 800, seed: int = 0, params: SimulationParameters | None = None):
    return simulate_cascade(n, seed=seed, params=params)


def test_budget_only_certifies_a_top_prefix_and_returns_its_smallest() -> None:
    t = _cal()
    c = calibrate_budget_only(scores=t.dv, alpha=0.2)
    assert c.found and c.index is not None
    cert = np.flatnonzero(c.certified)
    assert cert.max() == c.grid.size - 1 and np.array_equal(
        cert, np.arange(cert.min(), c.grid.size)
    )
    assert c.index == cert.min() and c.threshold == c.grid[c.index]
    # empirical calibration budget of the chosen threshold is below α (binomial test at δ)
    assert np.mean(t.dv > c.threshold) <= 0.2


def test_ctd_never_worse_than_probe_only_on_its_opt_risk() -> None:
    params = SimulationParameters.weak_expert()
    for seed in range(40):
        t = _cal(400, seed, params)
        for alpha in (0.1, 0.3, 0.6, 1.0):
            for perf in ("accuracy", "auroc"):
                c = calibrate_ctd(
                    dv=t.dv,
                    probe=t.probe,
                    expert=t.expert,
                    labels=t.labels,
                    alpha=alpha,
                    performance=perf,
                    seed=seed,
                )
                assert c.found and c.index is not None
                # the largest threshold delegates nothing: the probe-only cascade
                assert c.opt_budget[-1] == 0.0
                assert c.opt_performance[c.index] <= c.opt_performance[-1]
                # chosen = lowest opt risk among the certified, ties to the largest τ
                cert = np.flatnonzero(c.certified)
                best = c.opt_performance[cert].min()
                assert c.index == cert[c.opt_performance[cert] == best].max()


def test_ctd_opt_risk_matches_direct_computation() -> None:
    t = _cal(300, 3)
    c = calibrate_ctd(dv=t.dv, probe=t.probe, expert=t.expert, labels=t.labels, alpha=0.3)
    from ctd_stats.splits import split_indices

    opt = split_indices(t.n, first_fraction=0.3, seed=42).first
    for j in (0, 17, 50, 99):
        d = t.dv[opt] > c.grid[j]
        s = np.where(d, t.expert[opt], t.probe[opt])
        acc = np.mean((s >= 0.5) == (t.labels[opt] == 1))
        assert c.opt_performance[j] == pytest.approx(1 - acc)
        assert c.opt_budget[j] == pytest.approx(d.mean())
    direct = performance_risk(
        signal=t.dv[opt],
        probe=t.probe[opt],
        expert=t.expert[opt],
        labels=t.labels[opt],
        grid=c.grid,
    )
    assert np.allclose(direct, c.opt_performance)


def test_unc_calibrated_uses_calibration_reference() -> None:
    t = _cal(600, 4)
    c = calibrate_uncertainty(probe=t.probe, expert=t.expert, labels=t.labels, alpha=0.3)
    assert c.signal == "uncertainty" and c.reference is not None
    new = np.array([0.0, float(np.median(t.probe)), 1.0])
    u = uncertainty_score(new, reference=t.probe)
    assert np.allclose(c.signal_scores(new), u)
    assert np.array_equal(c.delegate(new), u > c.threshold)


def test_no_certified_threshold_never_delegates() -> None:
    t = _cal(30, 1)
    # 30 points cannot certify a budget of 1 %: even zero delegations give p = 0.99^30 > δ
    c = calibrate_budget_only(scores=t.dv, alpha=0.01)
    # nothing certified: the safe threshold +inf, the reason and the sample size that would work
    assert not c.found and c.threshold == float("inf") and c.index is None
    assert c.reason is not None and c.reason.startswith("n: 30 test points")
    assert c.min_n == 230  # smallest n with 0.99^n <= 0.1
    assert 0.99**230 <= 0.1 < 0.99**229
    headline = "ThresholdCalibration(method=budget_only, found=False, threshold=inf)"
    assert repr(c).startswith(headline)
    assert not c.delegate(t.dv).any()


def test_plug_in_matches_definition() -> None:
    t = _cal(500, 2)
    c = calibrate_plug_in(scores=t.dv, alpha=0.3)
    assert c.index is not None
    emp = np.array([np.mean(t.dv > g) for g in c.grid])
    assert c.index == np.flatnonzero(emp <= 0.3).min()


# --------------------------------------------------------------------------------------------
# sweep, FAIC, group summaries


def test_sweep_is_complete_and_tidy() -> None:
    t = simulate_cascade(1000, seed=11)
    res = sweep(t)
    s = res.settings
    n_budgets = len(s.budgets)
    for method in ("ctd", "unc_calibrated", "budget_only", "global_oracle"):
        c = res.curve(method)
        assert c.alpha.size == n_budgets
        assert np.all(c.budget >= 0) and np.all(c.budget <= 1)
    for b in s.batch_sizes:
        for method in ("unc_topk", "dv_topk", "oracle_topk"):
            c = res.curve(method, batch_size=b)
            assert np.array_equal(c.alpha, topk_budgets(b) / b)
    assert res.probe_only.budget == 0.0 and res.expert_only.budget == 1.0
    assert res.calib_index.size + res.eval_index.size == t.n
    assert np.intersect1d(res.calib_index, res.eval_index).size == 0
    assert {f.method for f in res.faic} >= {"ctd", "unc_calibrated", "dv_topk", "oracle_topk"}
    with pytest.raises(ValueError, match="method"):
        res.curve("Random")


def test_faic_of_oracle_is_one_and_of_probe_is_zero() -> None:
    a = np.linspace(0.05, 1.0, 20)
    oracle = 0.7 + 0.2 * np.minimum(a, 0.5)
    budgets = np.minimum(a, 0.6)
    kw: dict[str, Any] = {
        "oracle_alphas": a,
        "oracle_values": oracle,
        "oracle_budgets": budgets,
        "probe_value": 0.7,
    }
    assert faic(a, oracle, **kw) == pytest.approx(1.0)
    assert faic(a, np.full(20, 0.7), **kw) == 0.0
    assert faic(a, np.full(20, 0.6), **kw) == 0.0  # clipped at 0
    half = 0.7 + 0.1 * np.minimum(a, 0.5)
    assert faic(a, half, **kw) == pytest.approx(0.5)


def test_group_summary_hand_example_and_errors() -> None:
    v = np.array([0.5, -0.5, 0.2, 0.4])
    d = np.array([True, True, False, True])
    g = np.array(["x", "x", "y", "y"])
    s = group_summary(v, d, g)
    assert s.groups == ("x", "y")
    assert np.allclose(s.mean_value, [0.0, 0.3])
    assert np.allclose(s.mean_value_delegated, [0.0, 0.4])
    assert np.allclose(s.delegation_rate, [1.0, 0.5])
    s2 = group_summary(v, np.zeros(4, dtype=bool), g)
    assert np.all(np.isnan(s2.mean_value_delegated))
    with pytest.raises(ValueError, match="groups"):
        group_summary(v, d, g, names=["x", "y", "z"])
    with pytest.raises(ValueError, match="groups"):
        group_summary(v, d, g[:3])
    with pytest.raises(ValueError, match="delegated"):
        group_summary(v, d[:2], g)


def test_cap_group_indices() -> None:
    g = np.array(["a"] * 700 + ["b"] * 100)
    idx = cap_group_indices(g, cap=500, seed=42)
    assert idx.size == 600 and np.unique(idx).size == 600
    assert np.sum(g[idx] == "a") == 500 and np.sum(g[idx] == "b") == 100
    random.seed(42)
    assert np.array_equal(idx[:500], np.asarray(random.sample(range(700), 500)))


# --------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, float("nan")])
def test_budgets_outside_unit_interval_are_rejected(alpha: float) -> None:
    t = _cal(100)
    with pytest.raises(ValueError, match="alpha"):
        calibrate_ctd(dv=t.dv, probe=t.probe, expert=t.expert, labels=t.labels, alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        calibrate_budget_only(scores=t.dv, alpha=alpha)
    with pytest.raises(ValueError, match=r"^alpha"):
        global_oracle_masks(t.values(), alpha=[alpha])
    with pytest.raises(ValueError, match="budgets"):
        CTDSettings(budgets=(0.5, alpha))


def test_protocol_junk_is_refused_with_the_argument_name() -> None:
    with pytest.raises(TypeError, match=r"^budgets: expected a sequence"):
        CTDSettings(budgets=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^batch_sizes: expected a sequence"):
        CTDSettings(batch_sizes=32)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^strict: expected a bool"):
        CTDSettings(strict="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^groups: cannot be read as an array"):
        cap_group_indices([[0], []])
    with pytest.raises(TypeError, match=r"^seed: expected an integer"):
        cap_group_indices(["a", "a"], cap=1, seed=[])  # type: ignore[arg-type]
    v, d = np.zeros(2), np.array([True, False])
    with pytest.raises(ValueError, match=r"^delegated: cannot be read as an array"):
        group_summary(v, [[0, 1], [1]], ["a", "b"])
    with pytest.raises(ValueError, match=r"^groups: cannot be read as an array"):
        group_summary(v, d, [[0, 1], [1]])
    with pytest.raises(TypeError, match=r"^names: expected a sequence"):
        group_summary(v, d, ["a", "b"], names=5)  # type: ignore[arg-type]
    # the same random.sample as before for an np.int64 seed (Python's random refused it)
    g = np.array(["a"] * 7)
    assert np.array_equal(
        cap_group_indices(g, cap=3, seed=cast(int, np.int64(4))),
        cap_group_indices(g, cap=3, seed=4),
    )


def test_check_budget_is_internal() -> None:
    import ctd_stats
    from ctd_stats.cascade.signals import check_budget

    assert "check_budget" not in ctd_stats.__all__ and not hasattr(ctd_stats, "check_budget")
    assert check_budget(1.0) == 1.0


def test_budget_of_one_is_allowed_and_certifies_everything() -> None:
    t = _cal(200)
    c = calibrate_budget_only(scores=t.dv, alpha=1.0)
    assert c.found and c.index == 0
    c2 = calibrate_ctd(dv=t.dv, probe=t.probe, expert=t.expert, labels=t.labels, alpha=1.0)
    assert c2.found


def test_bad_calibration_inputs() -> None:
    t = _cal(100)
    with pytest.raises(ValueError, match="expert"):
        calibrate_ctd(dv=t.dv, probe=t.probe, expert=t.expert[:50], labels=t.labels, alpha=0.3)
    with pytest.raises(ValueError, match="labels"):
        calibrate_ctd(dv=t.dv, probe=t.probe, expert=t.expert, labels=t.labels + 1, alpha=0.3)
    with pytest.raises(ValueError, match="probe"):
        calibrate_ctd(dv=t.dv, probe=t.probe + 1, expert=t.expert, labels=t.labels, alpha=0.3)
    with pytest.raises(ValueError, match="grid"):
        calibrate_ctd(
            dv=t.dv, probe=t.probe, expert=t.expert, labels=t.labels, alpha=0.3, grid=[1.0, 0.0]
        )
    with pytest.raises(ValueError, match="performance"):
        calibrate_ctd(
            dv=t.dv,
            probe=t.probe,
            expert=t.expert,
            labels=t.labels,
            alpha=0.3,
            performance="f1",  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="delta"):
        calibrate_ctd(
            dv=t.dv, probe=t.probe, expert=t.expert, labels=t.labels, alpha=0.3, delta=0.0
        )
    with pytest.raises(ValueError, match="k"):
        topk_masks(t.dv, batch_size=8, k=9)
    with pytest.raises(ValueError, match="window"):
        topk_masks(t.dv, batch_size=8, k=2, window="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="settings"):
        sweep(t, settings="nope")
    with pytest.raises(TypeError, match="table"):
        sweep(t.dv)
    with pytest.raises(ValueError, match="probe"):
        uncertainty_score([1.5], reference=[0.2, 0.3])


def test_sweep_calibrations_equal_single_budget_calls() -> None:
    t = simulate_cascade(700, seed=12, params=SimulationParameters.weak_expert())
    res = sweep(t, settings="reference_auroc")
    cal = t.take(res.calib_index)
    grid = threshold_grid(t.dv)
    for c in res.calibrations:
        if c.method == "ctd":
            one = calibrate_ctd(
                dv=cal.dv, probe=cal.probe, expert=cal.expert, labels=cal.labels,
                alpha=c.alpha, grid=grid, performance="auroc",
            )  # fmt: skip
        elif c.method == "unc_calibrated":
            one = calibrate_uncertainty(
                probe=cal.probe, expert=cal.expert, labels=cal.labels, alpha=c.alpha,
                performance="auroc",
            )  # fmt: skip
        else:
            one = calibrate_budget_only(scores=cal.dv, alpha=c.alpha, grid=grid)
        assert (c.index, c.found) == (one.index, one.found)
        assert np.array_equal(c.certified, one.certified)


def test_sweep_group_summaries_are_consistent_with_the_curves() -> None:
    t = simulate_cascade(1586, seed=13)
    res = sweep(t)
    ev = t.take(res.eval_index)
    for method, b in (("ctd", None), ("unc_topk", 128), ("global_oracle", None)):
        s = sweep_group_summary(res, t, method, alpha=0.2, batch_size=b)
        mask = sweep_delegation_mask(res, t, method, alpha=0.2, batch_size=b)
        c = res.curve(method, batch_size=b)
        i = int(np.argmin(np.abs(c.alpha - 0.2)))
        assert mask.mean() == pytest.approx(c.budget[i])
        # group rates weighted by group sizes give back the overall rate
        assert np.dot(s.delegation_rate, s.n) / s.n.sum() == pytest.approx(c.budget[i])
        assert s.groups == tuple(sorted(set(ev.groups.tolist())))
    with pytest.raises(ValueError, match="batch_size"):
        sweep_delegation_mask(res, t, "dv_topk", alpha=0.2)
    with pytest.raises(ValueError, match="method"):
        sweep_delegation_mask(res, t, "Random", alpha=0.2, batch_size=128)
    with pytest.raises(ValueError, match="table"):
        sweep_group_summary(res, t.take(np.arange(10)), "ctd", alpha=0.2)
