"""Monte Carlo validity of conditional risks: one sample size per threshold (SPEC §8, §10.3).

Model: 30 % of inputs are unsafe (label 1) with scores ~ Beta(4, 2), the others ~ Beta(2, 4).
"Flag iff score > λ" has the analytic alarm-precision risk
R(λ) = P(safe | flagged) = 0.7 S₂₄(λ) / (0.7 S₂₄(λ) + 0.3 S₄₂(λ)), S the Beta survival functions;
it decreases in λ. Selective error: scores U(0, 1), the weak verdict is wrong with probability
0.4·score, so the error among kept inputs (score ≤ τ) is 0.2·τ and the delegation rate 1 − τ.

A run fails when some certified threshold has true risk > α; the guarantee says P(fail) ≤ δ, and
over R runs we accept V ≤ binom.ppf(1 − 1e−4, R, δ). Each invalid twin (the total n in place of
the selected count; an order chosen from the tested data) must FAIL the same check.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import optimize, stats

from ctd_stats import learn_then_test
from ctd_stats.cascade.selective import SelectiveProcedure, calibrate_selective
from ctd_stats.ltt import LTTProcedure

pytestmark = pytest.mark.validity

ALPHA, DELTA = 0.2, 0.1
P_UNSAFE = 0.3


def _bound(runs: int, delta: float = DELTA) -> float:
    return float(stats.binom.ppf(1 - 1e-4, runs, delta))


def _precision_risk(lam: NDArray[np.float64] | float) -> NDArray[np.float64]:
    safe = (1 - P_UNSAFE) * stats.beta.sf(lam, 2, 4)
    unsafe = P_UNSAFE * stats.beta.sf(lam, 4, 2)
    return np.asarray(safe / (safe + unsafe), dtype=np.float64)


LAM_STAR = float(optimize.brentq(lambda x: float(_precision_risk(x)) - ALPHA, 0.05, 0.95))


def _draw(
    rng: np.random.Generator, runs: int, n: int
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """(unsafe, scores), each of shape (runs, n)."""
    unsafe = rng.uniform(size=(runs, n)) < P_UNSAFE
    scores = np.where(unsafe, rng.beta(4, 2, (runs, n)), rng.beta(2, 4, (runs, n)))
    return unsafe, scores


def _grid_counts(
    unsafe: NDArray[np.bool_], scores: NDArray[np.float64], grid: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per run and threshold: false alarms among flagged, and the flagged count."""
    flagged = scores[:, :, None] > grid[None, None, :]
    k = (flagged & ~unsafe[:, :, None]).sum(axis=1)
    return k.astype(np.int64), flagged.sum(axis=1).astype(np.int64)


# --------------------------------------------------------------------------- one boundary threshold
def test_precision_at_the_boundary_threshold_certifies_at_most_delta() -> None:
    """At λ* the precision risk is exactly α: certifying it is a false certification."""
    runs, n = 4000, 200
    rng = np.random.default_rng(2301)
    unsafe, scores = _draw(rng, runs, n)
    k, n_flagged = _grid_counts(unsafe, scores, np.array([LAM_STAR]))
    valid = twin = 0
    for r in range(runs):
        res = learn_then_test(
            counts=k[r], n=n_flagged[r], alpha=ALPHA, delta=DELTA, procedure="holm"
        )
        valid += res.found
        # Invalid twin: the flagged count replaced by the total number of inputs.
        wrong = learn_then_test(counts=k[r], n=n, alpha=ALPHA, delta=DELTA, procedure="holm")
        twin += wrong.found
    assert valid <= _bound(runs), (valid, _bound(runs))
    assert twin > _bound(runs), (twin, _bound(runs))  # the twin certifies almost always
    assert twin / runs > 0.9


# --------------------------------------------------------------------------- a grid of thresholds
GRID = np.linspace(0.3, 0.8, 26)  # the top threshold still flags ~4 % of the inputs
TRUE = _precision_risk(GRID)


def _grid_violations(procedure: LTTProcedure, runs: int, n: int, seed: int) -> tuple[int, int]:
    """(runs with a certified threshold of true risk > α, runs that certified something)."""
    rng = np.random.default_rng(seed)
    unsafe, scores = _draw(rng, runs, n)
    k, size = _grid_counts(unsafe, scores, GRID)
    bad = found = 0
    for r in range(runs):
        res = learn_then_test(
            counts=k[r],
            n=size[r],
            alpha=ALPHA,
            delta=DELTA,
            procedure=procedure,
            order="descending",
        )
        bad += bool(np.any(TRUE[res.certified] > ALPHA))
        found += res.found
    return bad, found


@pytest.mark.parametrize("procedure", ["holm", "fixed_sequence", "bonferroni", "fallback"])
def test_precision_grid_controls_simultaneous_violations(procedure: LTTProcedure) -> None:
    runs = 600
    bad, found = _grid_violations(procedure, runs, n=1000, seed=2302)
    assert bad <= _bound(runs), (procedure, bad, _bound(runs))
    assert found > runs // 2  # the guarantee is not bought by certifying nothing


def test_precision_grid_twin_with_total_n_fails() -> None:
    runs, n = 600, 400
    rng = np.random.default_rng(2303)
    unsafe, scores = _draw(rng, runs, n)
    k, _ = _grid_counts(unsafe, scores, GRID)
    bad = 0
    for r in range(runs):
        res = learn_then_test(counts=k[r], n=n, alpha=ALPHA, delta=DELTA, procedure="holm")
        bad += bool(np.any(TRUE[res.certified] > ALPHA))
    assert bad > _bound(runs), (bad, _bound(runs))


# Every threshold at the boundary: labels independent of the scores with P(safe) = α, so
# P(safe | flagged at λ) = α for every λ and any certification is a false one.
NULL_GRID = np.linspace(0.0, 0.9, 20)


def _null_data(runs: int, n: int, seed: int) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(losses, where) of shape (runs, n, m): false alarms, and the flagged rows."""
    rng = np.random.default_rng(seed)
    safe = rng.uniform(size=(runs, n)) < ALPHA
    flagged = rng.uniform(size=(runs, n))[:, :, None] > NULL_GRID[None, None, :]
    return flagged & safe[:, :, None], flagged


def test_split_fixed_sequence_is_valid_and_a_data_chosen_order_is_not() -> None:
    """Order learned on a seeded part and tested on the rest: valid. The same order rule
    applied to the rows it then tests (smallest p-value first, at level δ each): invalid."""
    runs, n = 400, 300
    losses, where = _null_data(runs, n, seed=2304)
    split_bad = twin_bad = 0
    for r in range(runs):
        res = learn_then_test(
            losses[r],
            where=where[r],
            alpha=ALPHA,
            delta=DELTA,
            procedure="split_fixed_sequence",
            seed=r,
        )
        split_bad += res.found
        # Twin: order the grid by the p-values of the very rows that are then tested.
        p = learn_then_test(
            losses[r], where=where[r], alpha=ALPHA, delta=DELTA, procedure="holm"
        ).pvalues
        peeked = learn_then_test(
            losses[r],
            where=where[r],
            alpha=ALPHA,
            delta=DELTA,
            procedure="fixed_sequence",
            order=np.argsort(p, kind="stable"),
        )
        twin_bad += peeked.found
    assert split_bad <= _bound(runs), (split_bad, _bound(runs))
    assert twin_bad > _bound(runs), (twin_bad, _bound(runs))


def test_wsr_with_where_is_valid_at_the_boundary() -> None:
    runs, n = 300, 200
    losses, where = _null_data(runs, n, seed=2305)
    bad = 0  # every threshold has risk exactly α
    for r in range(runs):
        res = learn_then_test(
            losses[r],
            where=where[r],
            alpha=ALPHA,
            delta=DELTA,
            method="wsr",
            procedure="holm",
        )
        bad += res.found
    assert bad <= _bound(runs), (bad, _bound(runs))


# --------------------------------------------------------------------------- calibrate_selective
SEL_ALPHA, SEL_BUDGET = 0.1, 0.8  # kept error 0.2 τ ≤ 0.1 iff τ ≤ 0.5; 1 − τ ≤ 0.8 iff τ ≥ 0.2
SEL_GRID = np.linspace(0.0, 1.0, 51)


def _selective_data(runs: int, n: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=(runs, n))
    errors = rng.uniform(size=(runs, n)) < 0.4 * scores
    return scores, errors


def _selective_fails(tau: float, budget: float | None) -> bool:
    if not np.isfinite(tau):
        return False  # nothing kept: no kept error; found=False is checked separately
    kept_error = 0.2 * min(max(tau, 0.0), 1.0)
    rate = 1.0 - min(max(tau, 0.0), 1.0)
    return kept_error > SEL_ALPHA or (budget is not None and rate > budget)


@pytest.mark.parametrize("budget", [None, SEL_BUDGET])
@pytest.mark.parametrize("procedure", ["holm", "split_fixed_sequence"])
def test_calibrate_selective_controls_both_risks(
    budget: float | None, procedure: SelectiveProcedure
) -> None:
    runs, n = 300, 3000
    scores, errors = _selective_data(runs, n, seed=2306 + (budget is None))
    bad = found = 0
    for r in range(runs):
        cal = calibrate_selective(
            scores[r],
            errors[r],
            alpha=SEL_ALPHA,
            delta=DELTA,
            budget=budget,
            grid=SEL_GRID,
            procedure=procedure,
        )
        bad += _selective_fails(cal.threshold, budget)
        found += cal.found
    assert bad <= _bound(runs), (bad, _bound(runs))
    assert found >= 0.9 * runs, found  # a threshold exists (τ ∈ [0.2, 0.5]) and is found


def test_selective_twin_with_total_n_fails() -> None:
    """Kept errors counted against all n inputs (not the kept ones) certify too much."""
    runs, n = 300, 1500
    scores, errors = _selective_data(runs, n, seed=2308)
    kept = scores[:, :, None] <= SEL_GRID[None, None, :]
    k = (kept & errors[:, :, None]).sum(axis=1)
    bad = 0
    for r in range(runs):
        res = learn_then_test(counts=k[r], n=n, alpha=SEL_ALPHA, delta=DELTA, procedure="holm")
        tau = SEL_GRID[np.flatnonzero(res.certified).max()] if res.found else -np.inf
        bad += _selective_fails(float(tau), None)
    assert bad > _bound(runs), (bad, _bound(runs))
