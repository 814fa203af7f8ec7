"""Tests of ctd_stats.risks: conditional risks with one sample size per threshold."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctd_stats import learn_then_test
from ctd_stats.ltt import LTTProcedure
from ctd_stats.pvalues import PValueMethod
from ctd_stats.risks import CONDITIONAL_RISKS, ConditionalRiskName, conditional_risk


def brute_force(
    labels: np.ndarray, scores: np.ndarray, grid: np.ndarray, risk: str
) -> tuple[np.ndarray, np.ndarray]:
    """Row by row, from the definitions (flag iff score > λ, keep iff score ≤ λ)."""
    k, n = [], []
    for lam in grid:
        kj = nj = 0
        for y, s in zip(labels, scores, strict=True):
            flagged = s > lam
            if risk == "precision":
                counts, loss = flagged, y == 0
            elif risk in ("recall", "fnr"):
                counts, loss = y == 1, not flagged
            elif risk == "fpr":
                counts, loss = y == 0, flagged
            else:  # selective_error: the label is "the weak verdict is wrong"
                counts, loss = not flagged, y == 1
            nj += bool(counts)
            kj += bool(counts and loss)
        k.append(kj)
        n.append(nj)
    return np.array(k), np.array(n)


@st.composite
def data(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = draw(st.integers(1, 30))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=size, max_size=size)))
    scores = np.array(draw(st.lists(st.integers(0, 6), min_size=size, max_size=size))) / 6.0
    m = draw(st.integers(1, 8))
    grid = np.unique(np.array(draw(st.lists(st.integers(-1, 7), min_size=m, max_size=m))) / 6.0)
    return labels, scores, grid  # ties between scores and thresholds are frequent


@given(data(), st.sampled_from(CONDITIONAL_RISKS))
def test_counts_match_the_definitions_and_the_matrices(
    d: tuple[np.ndarray, np.ndarray, np.ndarray], risk: ConditionalRiskName
) -> None:
    labels, scores, grid = d
    r = conditional_risk(labels, scores, risk=risk, grid=grid)
    k, n = brute_force(labels, scores, grid, risk)
    assert np.array_equal(r.counts, k) and np.array_equal(r.n, n)
    assert np.array_equal(r.losses.sum(axis=0), k) and np.array_equal(r.where.sum(axis=0), n)
    assert not np.any(r.losses & ~r.where)  # a loss only where the row counts
    assert r.counts.dtype == np.int64 and r.n.dtype == np.int64


@given(data(), st.sampled_from(CONDITIONAL_RISKS), st.sampled_from(["binomial", "hb", "wsr"]))
def test_where_form_equals_counts_form(
    d: tuple[np.ndarray, np.ndarray, np.ndarray], risk: ConditionalRiskName, method: PValueMethod
) -> None:
    labels, scores, grid = d
    r = conditional_risk(labels, scores, risk=risk, grid=grid)
    a = learn_then_test(
        r.losses,
        where=r.where,
        alpha=0.3,
        delta=0.2,
        method=method,
        procedure="holm",
    )
    assert a.sample_sizes is not None and np.array_equal(a.sample_sizes[0], r.n)
    if method != "wsr":
        b = learn_then_test(
            counts=r.counts,
            n=r.n,
            alpha=0.3,
            delta=0.2,
            method=method,
            procedure="holm",
        )
        assert np.array_equal(a.pvalues, b.pvalues) and np.array_equal(a.certified, b.certified)
    assert np.all(a.pvalues[r.n == 0] == 1.0)  # nothing selected: never certified


def test_natural_orders_start_at_the_most_conservative_threshold() -> None:
    grid = np.linspace(0, 1, 5)
    y, s = np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.6, 0.3])
    desc, asc = np.arange(4, -1, -1), np.arange(5)
    cases: list[tuple[ConditionalRiskName, np.ndarray]] = [
        ("precision", desc),
        ("fpr", desc),
        ("recall", asc),
        ("fnr", asc),
        ("selective_error", asc),
    ]
    for risk, want in cases:
        r = conditional_risk(y, s, risk=risk, grid=grid)
        assert np.array_equal(r.order, want), risk


def test_precision_with_nothing_flagged_is_never_certified() -> None:
    r = conditional_risk([1, 1, 1], [0.2, 0.3, 0.4], risk="precision", grid=[0.1, 0.5])
    assert r.n.tolist() == [3, 0] and np.isnan(r.empirical[1])
    res = learn_then_test(counts=r.counts, n=r.n, alpha=0.5, delta=0.5, procedure="holm")
    assert res.pvalues[1] == 1.0 and not res.certified[1]


def test_repr_is_short() -> None:
    rng = np.random.default_rng(0)
    r = conditional_risk(
        rng.integers(0, 2, 500),
        rng.uniform(size=500),
        risk="precision",
        grid=np.linspace(0, 1, 1000),
    )
    text = repr(r)
    assert text.startswith("ConditionalRisk(risk=precision") and len(text.splitlines()) <= 12


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"labels": [0, 2], "scores": [0.1, 0.2]}, "labels"),
        ({"labels": [0, 1, 1], "scores": [0.1, 0.2]}, "scores"),
        ({"labels": [0, 1], "scores": [0.1, np.nan]}, "scores"),
        ({"labels": [0, 1], "scores": [0.1, 0.2], "grid": [0.5, 0.1]}, "grid"),
        ({"labels": [0, 1], "scores": [0.1, 0.2], "risk": "accuracy"}, "risk"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, Any], name: str) -> None:
    args: dict[str, Any] = {"labels": [0, 1], "scores": [0.1, 0.2], "grid": [0.0, 0.5]}
    args["risk"] = "precision"
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{name}"):
        conditional_risk(args["labels"], args["scores"], risk=args["risk"], grid=args["grid"])


@pytest.mark.parametrize("grid_kind", ["even", "uneven", "one"])
def test_many_rows_count_exactly_like_a_binary_search(grid_kind: str) -> None:
    """Above 2048 rows the flagged index is guessed from an even spacing, then checked."""
    rng = np.random.default_rng(11)
    grid = {
        "even": np.nextafter(np.linspace(0.0, 0.99, 100), -np.inf),
        "uneven": np.unique(rng.uniform(size=60) ** 3),
        "one": np.array([0.5]),
    }[grid_kind]
    labels = rng.integers(0, 2, 5000)
    scores = np.where(rng.uniform(size=5000) < 0.3, rng.choice(grid, 5000), rng.uniform(size=5000))
    below = grid.searchsorted(scores, side="left")  # flagged at the first `below` thresholds
    flagged = np.arange(grid.size)[None, :] < below[:, None]
    for risk in CONDITIONAL_RISKS:
        r = conditional_risk(labels, scores, risk=cast(ConditionalRiskName, risk), grid=grid)
        if risk == "precision":
            np.testing.assert_array_equal(r.where, flagged)
        np.testing.assert_array_equal(r.counts, r.losses.sum(axis=0))
        np.testing.assert_array_equal(r.n, r.where.sum(axis=0))


def test_result_is_the_one_the_dataclass_constructor_builds() -> None:
    """conditional_risk fills its result's fields directly: the same as ConditionalRisk(...)."""
    import dataclasses

    from ctd_stats.risks import ConditionalRisk

    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, 50), rng.uniform(size=50)
    for risk in CONDITIONAL_RISKS:
        r = conditional_risk(
            labels, scores, risk=cast(ConditionalRiskName, risk), grid=np.linspace(0, 1, 7)
        )
        built = ConditionalRisk(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)})
        assert list(vars(built)) == list(vars(r))
        assert repr(built) == repr(r)
        with pytest.raises(dataclasses.FrozenInstanceError):
            r.risk = "fpr"  # type: ignore[misc]


@given(
    data(),
    st.sampled_from(CONDITIONAL_RISKS),
    st.sampled_from(["binomial", "hb", "hoeffding", "wsr"]),
    st.sampled_from(["holm", "bonferroni", "fixed_sequence", "fallback", "split_fixed_sequence"]),
)
def test_certify_is_learn_then_test_in_the_natural_order(
    d: tuple[np.ndarray, np.ndarray, np.ndarray],
    risk: ConditionalRiskName,
    method: PValueMethod,
    procedure: LTTProcedure,
) -> None:
    """certify() = learn_then_test on the counts (or on the rows for wsr / split), bit for bit."""
    labels, scores, grid = d
    if procedure == "split_fixed_sequence" and labels.size < 2:
        return
    r = conditional_risk(labels, scores, risk=risk, grid=grid)
    got = r.certify(alpha=0.3, delta=0.2, method=method, procedure=procedure)
    if method == "wsr" or procedure == "split_fixed_sequence":
        want = learn_then_test(
            r.losses,
            where=r.where,
            alpha=0.3,
            delta=0.2,
            method=method,
            procedure=procedure,
            order=r.order,
        )
    else:
        want = learn_then_test(
            counts=r.counts,
            n=r.n,
            alpha=0.3,
            delta=0.2,
            method=method,
            procedure=procedure,
            order=r.order,
        )
    assert got == want and got.calibration_sha256 == want.calibration_sha256
    assert got.to_json() == want.to_json()


def test_certify_trusts_only_read_only_counts() -> None:
    r = conditional_risk([0, 1, 1, 0], [0.1, 0.9, 0.6, 0.3], risk="precision", grid=[0.2, 0.5])
    for arr in (r.counts, r.n, r.order):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 5


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": [0.1, 0.2]}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"delta": 0.0}, "delta"),
        ({"method": "exact"}, "method"),
        ({"procedure": "hommel"}, "procedure"),
        ({"procedure": "split_fixed_sequence", "opt_fraction": 1.0}, "opt_fraction"),
    ],
)
def test_certify_bad_input_names_the_argument(kwargs: dict[str, Any], name: str) -> None:
    r = conditional_risk([0, 1, 1, 0], [0.1, 0.9, 0.6, 0.3], risk="precision", grid=[0.2, 0.5])
    args: dict[str, Any] = {"alpha": 0.2, "delta": 0.1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{name}"):
        r.certify(**args)
