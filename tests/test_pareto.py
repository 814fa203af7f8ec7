"""Pareto testing: the front, the split, the choice, and 'no threshold' as a result."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ctd_stats import fixed_sequence, pareto_front, pareto_test, split_indices
from ctd_stats.pvalues import binomial_pvalue

objective_rows = arrays(
    np.float64,
    st.tuples(st.integers(1, 30), st.just(2)),
    elements=st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.7, 1.0]),
)


def _brute_force_front(obj: np.ndarray) -> np.ndarray:
    m = obj.shape[0]
    keep = np.ones(m, dtype=bool)
    for i in range(m):
        for j in range(m):
            if np.all(obj[j] <= obj[i]) and np.any(obj[j] < obj[i]):
                keep[i] = False
    return keep


@given(objective_rows)
def test_front_matches_brute_force_and_keeps_duplicates(obj: np.ndarray) -> None:
    front = pareto_front(obj)
    np.testing.assert_array_equal(front, _brute_force_front(obj))
    assert front.any()
    doubled = pareto_front(np.vstack([obj, obj]))
    np.testing.assert_array_equal(doubled, np.concatenate([front, front]))


@given(objective_rows, st.integers(0, 1000))
def test_front_is_permutation_equivariant(obj: np.ndarray, seed: int) -> None:
    perm = np.random.default_rng(seed).permutation(obj.shape[0])
    np.testing.assert_array_equal(pareto_front(obj[perm]), pareto_front(obj)[perm])


def test_split_is_the_reference_permutation() -> None:
    split = split_indices(10, first_fraction=0.3, seed=42)
    perm = np.random.default_rng(42).permutation(10)
    np.testing.assert_array_equal(split.first, perm[:3])
    np.testing.assert_array_equal(split.second, perm[3:])
    with pytest.raises(ValueError, match="first_fraction"):
        split_indices(3, first_fraction=0.1, seed=0)


def _ctd_problem(seed: int, n_opt: int = 300, n_ht: int = 700) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, 41)
    d_opt, d_ht = rng.uniform(size=n_opt), rng.uniform(size=n_ht)
    budget_opt = (d_opt[:, None] > grid).mean(axis=0)
    # A performance risk that first falls then rises with the delegation rate.
    perf = (budget_opt - 0.35) ** 2 + 0.01 * rng.uniform(size=grid.size)
    return {"grid": grid, "budget_opt": budget_opt, "perf": perf, "ht": (d_ht[:, None] > grid)}


def test_pareto_test_follows_spec_steps() -> None:
    prob = _ctd_problem(0)
    res = pareto_test(
        opt_control=prob["budget_opt"],
        opt_performance=prob["perf"],
        ht_losses=prob["ht"],
        alpha=0.3,
        delta=0.1,
        order="descending",
    )
    assert res.found and res.index is not None
    # Front tested from the largest threshold down; certified = fixed-sequence prefix of it.
    assert np.all(np.diff(res.front) < 0)
    p = binomial_pvalue(prob["ht"].sum(axis=0), prob["ht"].shape[0], alpha=0.3)
    np.testing.assert_allclose(res.pvalues, p)
    expected = fixed_sequence(p, delta=0.1, order=res.front)
    np.testing.assert_array_equal(res.certified, expected.rejected)
    # The choice is the lowest opt performance among the certified.
    certified = np.flatnonzero(res.certified)
    assert prob["perf"][res.index] == prob["perf"][certified].min()
    # Counts give the same answer as losses.
    res_counts = pareto_test(
        opt_control=prob["budget_opt"],
        opt_performance=prob["perf"],
        ht_counts=prob["ht"].sum(axis=0),
        n_ht=prob["ht"].shape[0],
        alpha=0.3,
        delta=0.1,
        order="descending",
    )
    assert res_counts.index == res.index


def test_ties_go_to_the_least_aggressive_point() -> None:
    m = 5
    res = pareto_test(
        opt_control=np.zeros(m),
        opt_performance=np.zeros(m),
        ht_counts=np.zeros(m, dtype=int),
        n_ht=100,
        alpha=0.2,
        delta=0.1,
        order="descending",
    )
    assert res.index == m - 1  # all tied and certified: the first in testing order wins


def test_no_threshold_is_a_result() -> None:
    res = pareto_test(
        opt_control=np.full(4, 0.9),
        opt_performance=np.arange(4.0),
        ht_counts=np.full(4, 90),
        n_ht=100,
        alpha=0.1,
        delta=0.1,
        order="descending",
    )
    assert not res.found and res.index is None and not res.certified.any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"opt_performance": np.zeros(2)}, "opt_performance: length 2"),
        ({"ht_counts": np.zeros(3, dtype=int)}, "ht_losses: give exactly one"),
        ({"ht_losses": None, "ht_counts": np.zeros(3, dtype=int)}, "n_ht: required"),
        ({"ht_losses": np.zeros((5, 2))}, "ht_losses: expected 3 columns"),
        ({"order": [0, 1]}, "order: must list every grid index"),
        ({"alpha": 1.2}, "alpha: must lie in"),
        ({"opt_control": [0.1, np.nan, 0.2]}, "opt_control: contains NaN"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "opt_control": np.array([0.1, 0.2, 0.3]),
        "opt_performance": np.array([0.3, 0.2, 0.1]),
        "ht_losses": np.zeros((10, 3)),
        "alpha": 0.2,
        "delta": 0.1,
        "order": "descending",
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pareto_test(**base)  # type: ignore[arg-type]


def _prob_small() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    m = 8
    return {
        "ctrl": np.linspace(0.9, 0.0, m),
        "perf": np.linspace(0.0, 0.9, m),
        "ht": (rng.uniform(size=(400, m)) < np.linspace(0.9, 0.0, m)).astype(float),
    }


def test_nothing_certified_says_why_with_min_n() -> None:
    prob = _prob_small()
    res = pareto_test(
        opt_control=prob["ctrl"],
        opt_performance=prob["perf"],
        ht_counts=np.zeros(8, int),
        n_ht=5,
        alpha=0.1,
        delta=0.1,
        order="descending",
    )
    assert not res.found and res.index is None and res.min_n is not None
    assert res.reason is not None and res.reason.startswith("too few hypothesis-testing points")
    assert repr(res).startswith("ParetoTestResult(found=False, index=None)\n  reason: too few")
    again = pareto_test(
        opt_control=prob["ctrl"],
        opt_performance=prob["perf"],
        ht_counts=np.zeros(8, int),
        n_ht=res.min_n,
        alpha=0.1,
        delta=0.1,
        order="descending",
    )
    assert again.found and again.min_n is None and again.reason is None


def test_pareto_json_round_trip_and_tamper() -> None:
    import dataclasses
    import json

    from ctd_stats import ParetoTestResult
    from ctd_stats._serialize import array_sha256

    prob = _prob_small()
    for strict in (False, True):
        res = pareto_test(
            opt_control=prob["ctrl"],
            opt_performance=prob["perf"],
            ht_losses=prob["ht"],
            alpha=0.4,
            delta=0.1,
            order="descending",
            strict=strict,
        )
        back = ParetoTestResult.from_json(res.to_json())
        for f in dataclasses.fields(res):
            x, y = getattr(res, f.name), getattr(back, f.name)
            assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
        assert res.calibration_sha256 == array_sha256(prob["ht"])
        assert len(repr(res).splitlines()) <= 12
    payload = json.loads(res.to_json())
    payload["fields"]["index"] = 0
    with pytest.raises(ValueError, match="text: checksum"):
        ParetoTestResult.from_json(json.dumps(payload))
