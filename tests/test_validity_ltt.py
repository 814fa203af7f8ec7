"""Monte Carlo validity of LTT and Pareto testing (SPEC §8), with analytic true risks.

Problem: scores X ~ U(0, 1); "delegate iff X > λ" has true risk R(λ) = 1 − λ (binary losses);
the continuous loss L = X·1[X > λ] has R(λ) = (1 − λ²)/2. A run fails when some certified λ has
R(λ) > α. The guarantee says P(fail) ≤ δ; over R runs we accept V ≤ binom.ppf(1 − 1e−4, R, δ).
A plug-in threshold (no correction) must FAIL the same check.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy import stats

from ctd_stats import learn_then_test, pareto_test, split_indices
from ctd_stats.fwer import Procedure
from ctd_stats.pvalues import PValueMethod

pytestmark = pytest.mark.validity

GRID = np.linspace(0.0, 1.0, 101)
ALPHA, DELTA = 0.3, 0.1
TRUE_BINARY = 1.0 - GRID
TRUE_CONTINUOUS = (1.0 - GRID**2) / 2.0
ALPHA_CONTINUOUS = 0.2


def _bound(runs: int) -> float:
    return float(stats.binom.ppf(1 - 1e-4, runs, DELTA))


def _violations(method: PValueMethod, procedure: Procedure, runs: int, *, continuous: bool) -> int:
    rng = np.random.default_rng(zlib.crc32(f"{method}/{procedure}/{continuous}".encode()))
    true = TRUE_CONTINUOUS if continuous else TRUE_BINARY
    alpha = ALPHA_CONTINUOUS if continuous else ALPHA
    bad = 0
    for _ in range(runs):
        x = rng.uniform(size=150)
        above = x[:, None] > GRID[None, :]
        losses = above * x[:, None] if continuous else above.astype(float)
        res = learn_then_test(
            losses,
            alpha=alpha,
            delta=DELTA,
            method=method,
            procedure=procedure,
            order="descending",
        )
        bad += bool(np.any(true[res.certified] > alpha))
    return bad


@pytest.mark.parametrize("procedure", ["fixed_sequence", "holm", "bonferroni", "fallback"])
@pytest.mark.parametrize(
    "method", ["binomial", "hoeffding", "hoeffding_kl", "bentkus", "hb", "wsr"]
)
def test_ltt_controls_the_family_wise_error(method: PValueMethod, procedure: Procedure) -> None:
    runs = 400
    v = _violations(method, procedure, runs, continuous=False)
    assert v <= _bound(runs), f"{method}/{procedure}: {v}/{runs} runs certified a risky λ"


@pytest.mark.parametrize("method", ["hoeffding", "hoeffding_kl", "bentkus", "hb", "wsr"])
def test_ltt_controls_continuous_losses(method: PValueMethod) -> None:
    runs = 400
    v = _violations(method, "fixed_sequence", runs, continuous=True)
    assert v <= _bound(runs)


def test_binomial_fixed_sequence_is_tight_not_just_conservative() -> None:
    # Near the boundary the exact test uses most of its δ: the check has power to fail.
    runs = 2000
    v = _violations("binomial", "fixed_sequence", runs, continuous=False)
    assert 0.5 * DELTA * runs < v <= _bound(runs)


def test_plug_in_threshold_fails_the_same_check() -> None:
    rng = np.random.default_rng(7)
    runs, bad = 400, 0
    for _ in range(runs):
        x = rng.uniform(size=150)
        empirical = (x[:, None] > GRID[None, :]).mean(axis=0)
        chosen = np.flatnonzero(empirical <= ALPHA)[0]  # smallest λ with empirical risk ≤ α
        bad += bool(TRUE_BINARY[chosen] > ALPHA)
    assert bad > _bound(runs), "the invalid plug-in rule should violate the guarantee"


def test_pareto_testing_controls_the_budget() -> None:
    rng = np.random.default_rng(11)
    runs, bad = 1000, 0
    for _ in range(runs):
        d = rng.uniform(size=400)
        y = rng.uniform(size=400) < 0.5
        split = split_indices(400, first_fraction=0.3, seed=int(rng.integers(2**31)))
        opt, ht = d[split.first], d[split.second]
        budget_opt = (opt[:, None] > GRID).mean(axis=0)
        # Any performance risk computed on opt only; here a noisy function of the budget.
        perf = np.abs(budget_opt - 0.5) + 0.05 * y[split.first].mean() * rng.uniform(size=GRID.size)
        res = pareto_test(
            opt_control=budget_opt,
            opt_performance=perf,
            ht_counts=(ht[:, None] > GRID).sum(axis=0),
            n_ht=ht.size,
            alpha=ALPHA,
            delta=DELTA,
            order="descending",
        )
        if res.found:
            assert res.index is not None
            bad += bool(TRUE_BINARY[res.index] > ALPHA)
    assert bad <= _bound(runs)
