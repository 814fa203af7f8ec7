"""Tests of ctd_stats.cascade.selective.calibrate_selective (error of the kept verdicts)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from ctd_stats.cascade import Delegator, ThresholdCalibration
from ctd_stats.cascade.selective import calibrate_selective

GRID = np.linspace(0.0, 1.0, 51)


def _data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=n)
    return scores, rng.uniform(size=n) < 0.4 * scores  # kept error 0.2 τ, delegation 1 − τ


@pytest.mark.parametrize("budget", [None, 0.7])
def test_pvalues_are_exact_binomials_and_the_least_delegating_threshold_is_chosen(
    budget: float | None,
) -> None:
    s, e = _data()
    cal = calibrate_selective(s, e, alpha=0.1, delta=0.1, budget=budget, grid=GRID)
    kept = s[:, None] <= GRID[None, :]
    n_kept, wrong = kept.sum(0), (kept & e[:, None]).sum(0)
    p = stats.binom.cdf(wrong, n_kept, 0.1)
    if budget is not None:
        p = np.maximum(p, stats.binom.cdf((~kept).sum(0), s.size, budget))
    assert np.array_equal(cal.pvalues, p)
    assert cal.found and cal.index == int(np.flatnonzero(cal.certified).max())
    assert cal.threshold == GRID[cal.index] and 0.3 <= cal.threshold <= 0.5
    assert cal.method == "selective" and cal.settings["error_alpha"] == 0.1
    assert cal.alpha == (1.0 if budget is None else budget)


def test_the_delegator_uses_it_as_it_is() -> None:
    s, e = _data()
    cal = calibrate_selective(s, e, alpha=0.1, delta=0.1, budget=0.7, grid=GRID)
    d = Delegator(cal)
    assert d.monitor is not None and getattr(d.monitor, "alpha", None) == 0.7  # the budget
    new = np.random.default_rng(1).uniform(size=50)
    delegated = d.decide_stream(new).delegated
    assert delegated is not None and np.array_equal(delegated, new > cal.threshold)
    assert Delegator(calibrate_selective(s, e, alpha=0.1, delta=0.1, grid=GRID)).monitor is None


def test_json_round_trip_is_exact() -> None:
    s, e = _data(500)
    cal = calibrate_selective(s, e, alpha=0.15, delta=0.1, budget=0.8, procedure="bonferroni")
    back = ThresholdCalibration.from_json(cal.to_json())
    assert back.threshold == cal.threshold and np.array_equal(back.pvalues, cal.pvalues)
    assert back.settings == cal.settings


def test_split_fixed_sequence_is_reproducible_and_records_the_split() -> None:
    s, e = _data()
    a = calibrate_selective(s, e, alpha=0.1, delta=0.1, procedure="split_fixed_sequence")
    b = calibrate_selective(s, e, alpha=0.1, delta=0.1, procedure="split_fixed_sequence")
    assert a.threshold == b.threshold and (a.n_opt, a.n_test) == (600, 1400)
    assert a.found and a.front.size == a.grid.size


def test_nothing_certified_delegates_everything_and_says_why() -> None:
    s, e = _data(10)
    cal = calibrate_selective(s, e, alpha=0.1, delta=0.1)
    assert not cal.found and cal.threshold == -np.inf and cal.min_n is not None
    assert cal.reason is not None and cal.reason.startswith("n: 10 calibration inputs")
    every = Delegator(cal).decide_stream([0.0, 0.5, 1.0]).delegated
    assert every is not None and every.all()
    s, e = _data(3000, seed=2)
    hard = calibrate_selective(s, np.ones(s.size, dtype=bool), alpha=0.1, delta=0.1)
    assert not hard.found and hard.min_n is None and "no threshold" in str(hard.reason)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": 1.5}, "alpha"),
        ({"delta": 0.0}, "delta"),
        ({"budget": 0.0}, "budget"),
        ({"errors": [0, 2, 1]}, "errors"),
        ({"errors": [0, 1]}, "errors"),
        ({"scores": [0.1, np.inf, 0.3]}, "scores"),
        ({"grid": [0.5, 0.2]}, "grid"),
        ({"procedure": "fixed_sequence"}, "procedure"),
        ({"opt_fraction": 1.0}, "opt_fraction"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, Any], name: str) -> None:
    args: dict[str, Any] = {"scores": [0.1, 0.2, 0.3], "errors": [0, 1, 0], "alpha": 0.1}
    args.update(kwargs)
    scores, errors = args.pop("scores"), args.pop("errors")
    with pytest.raises(ValueError, match=f"^{name}"):
        calibrate_selective(scores, errors, **args)
