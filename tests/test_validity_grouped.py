"""Monte Carlo validity of grouped Learn-then-Test (per group, simultaneous, shared).

Delegation-rate simulation with analytic true risks: group g's scores are U^{b_g}, so its
delegation rate at threshold λ ("delegate iff score > λ") is R_g(λ) = 1 − λ^{1/b_g}. Each run
draws every group's counts above the grid at once (multinomial over the grid's bins), calls the
public function, and records whether a certified λ breaks a cap. High-probability guarantees:
violations V ≤ binom.ppf(1 − 1e−4, R, δ); each check has an invalid twin that fails it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from ctd_stats import learn_then_test
from ctd_stats.grouped import learn_then_test_grouped

pytestmark = pytest.mark.validity

RUNS = 1000
DELTA = 0.1
GRID = np.linspace(0.0, 1.0, 401)
TOLERANCE = int(stats.binom.ppf(1 - 1e-4, RUNS, DELTA))


def _rates(shape: np.ndarray) -> np.ndarray:
    """True delegation rates R_g(λ) = 1 − λ^{1/b_g}, shape (G, m)."""
    return 1.0 - GRID[None, :] ** (1.0 / shape[:, None])


def _counts(shape: np.ndarray, n: np.ndarray, seed: int) -> np.ndarray:
    """Counts above every grid point for every run and group, shape (RUNS, G, m)."""
    rng = np.random.default_rng(seed)
    cdf = 1.0 - _rates(shape)
    probs = np.diff(np.concatenate([np.zeros((len(n), 1)), cdf, np.ones((len(n), 1))], axis=1))
    out = np.empty((RUNS, len(n), GRID.size), dtype=np.int64)
    for g in range(len(n)):
        bins = rng.multinomial(n[g], np.clip(probs[g], 0, None), size=RUNS)
        out[:, g] = n[g] - np.cumsum(bins, axis=1)[:, :-1]
    return out


def _violations(certified: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Per run and group: a certified grid point whose true risk exceeds the cap."""
    return (certified & bad[None]).any(axis=-1)


def _run(counts: np.ndarray, n: np.ndarray, caps: np.ndarray, **kw: Any) -> np.ndarray:
    """Certified masks (RUNS, G, m) of learn_then_test_grouped on every run."""
    return np.stack(
        [
            learn_then_test_grouped(
                counts=c,
                n=n,
                alpha=caps,
                delta=DELTA,
                order="descending",
                **kw,
            ).certified
            for c in counts
        ]
    )


# Ten groups whose caps bind: each sits where its own rate curve is steep and n is large, so
# every group's per-run violation probability is close to δ.
SHAPES10 = np.linspace(0.6, 1.6, 10)
N10 = np.full(10, 2000)
CAPS10 = np.linspace(0.1, 0.3, 10)


def test_per_group_each_group_within_delta() -> None:
    shape = np.array([0.5, 1.0, 2.0, 1.0])
    n = np.array([150, 600, 2000, 60])
    caps = np.array([0.1, 0.2, 0.3, 0.1])
    cert = _run(_counts(shape, n, seed=1), n, caps)
    v = _violations(cert, _rates(shape) > caps[:, None]).sum(axis=0)
    assert (v <= TOLERANCE).all(), (v, TOLERANCE)


@pytest.mark.parametrize("correction", ["bonferroni", "sidak"])
def test_simultaneous_all_groups_within_delta(correction: str) -> None:
    cert = _run(
        _counts(SHAPES10, N10, seed=2), N10, CAPS10, mode="simultaneous", correction=correction
    )
    v_any = int(_violations(cert, _rates(SHAPES10) > CAPS10[:, None]).any(axis=1).sum())
    assert v_any <= TOLERANCE, (v_any, TOLERANCE)


def test_invalid_twin_per_group_claimed_simultaneous_fails() -> None:
    """Per-group thresholds at δ each, read as simultaneous: ≈ 1 − (1 − δ)^G violate."""
    cert = _run(_counts(SHAPES10, N10, seed=2), N10, CAPS10)  # per_group at δ each
    per_run = _violations(cert, _rates(SHAPES10) > CAPS10[:, None])
    v_any = int(per_run.any(axis=1).sum())
    per_group = per_run.mean(axis=0)
    expected = 1 - np.prod(1 - per_group)  # independent groups
    assert v_any > TOLERANCE  # the simultaneous check FAILS
    assert abs(v_any / RUNS - expected) < 4 * np.sqrt(expected * (1 - expected) / RUNS)
    assert v_any / RUNS > 0.4  # near 1 − (1 − δ)^10 ≈ 0.65 (per group just under δ)


def test_shared_threshold_meets_budget_and_every_cap() -> None:
    shape = np.array([0.5, 1.0, 2.0])
    n = np.array([300, 1000, 700])
    caps = np.array([0.12, 0.3, 0.5])
    overall = 0.3
    weights = n / n.sum()
    rates = _rates(shape)
    bad = (rates > caps[:, None]).any(axis=0) | (weights @ rates > overall)
    cert = _run(_counts(shape, n, seed=3), n, caps, mode="shared", overall_alpha=overall)
    v = int((cert[:, 0] & bad).any(axis=1).sum())
    assert v <= TOLERANCE, (v, TOLERANCE)


def test_ungrouped_calibration_breaks_a_binding_cap() -> None:
    """The marginal budget holds, yet the heavy group's cap fails in most runs."""
    shape = np.array([0.4, 1.0, 2.5])  # group 0 delegates most
    n = np.array([500, 500, 500])
    caps = np.full(3, 0.2)  # every group capped at the overall budget
    rates = _rates(shape)
    counts = _counts(shape, n, seed=4)
    marginal = np.stack(
        [
            learn_then_test(
                counts=c.sum(axis=0), n=int(n.sum()), alpha=0.2, delta=DELTA, order="descending"
            ).certified
            for c in counts
        ]
    )
    breaks = int((marginal & (rates[0] > caps[0])).any(axis=1).sum())
    overall_bad = int((marginal & ((n / n.sum()) @ rates > 0.2)).any(axis=1).sum())
    assert overall_bad <= TOLERANCE  # the marginal guarantee itself holds ...
    assert breaks > TOLERANCE  # ... but group 0's cap breaks: the check fails
    shared = _run(counts, n, caps, mode="shared", overall_alpha=0.2)
    v = int((shared[:, 0] & (rates > caps[:, None]).any(axis=0)).any(axis=1).sum())
    assert v <= TOLERANCE, (v, TOLERANCE)
