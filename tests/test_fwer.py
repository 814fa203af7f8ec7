"""FWER procedures: oracle agreement, nesting, prefix structure, input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from statsmodels.stats.multitest import multipletests

from ctd_stats import fwer

pvals = arrays(np.float64, st.integers(1, 40), elements=st.floats(0.0, 1.0))
deltas = st.floats(0.001, 0.5)


@given(pvals, deltas)
def test_bonferroni_and_holm_match_statsmodels(p: np.ndarray, delta: float) -> None:
    for name, method in (("bonferroni", fwer.bonferroni), ("holm", fwer.holm)):
        expected, *_ = multipletests(p, alpha=delta, method=name)
        np.testing.assert_array_equal(method(p, delta=delta).rejected, expected)


@given(pvals, deltas)
def test_holm_rejects_a_superset_of_bonferroni(p: np.ndarray, delta: float) -> None:
    bonf = fwer.bonferroni(p, delta=delta).rejected
    assert np.all(fwer.holm(p, delta=delta).rejected[bonf])


@given(pvals, deltas, st.randoms())
def test_fixed_sequence_rejects_a_prefix_of_its_order(
    p: np.ndarray, delta: float, rnd: object
) -> None:
    order = np.random.default_rng(len(p)).permutation(len(p))
    res = fwer.fixed_sequence(p, delta=delta, order=order)
    k = res.n_rejected
    np.testing.assert_array_equal(res.indices, order[:k])
    assert np.all(p[order[:k]] <= delta)
    if k < len(p):
        assert p[order[k]] > delta
    assert res.rejected.sum() == k


def test_fixed_sequence_strict_and_named_orders() -> None:
    p = np.array([0.2, 0.1, 0.05, 0.01])
    assert fwer.fixed_sequence(p, delta=0.1, order="descending").indices.tolist() == [3, 2, 1]
    assert fwer.fixed_sequence(p, delta=0.1, order="descending", strict=True).indices.tolist() == [
        3,
        2,
    ]
    assert fwer.fixed_sequence(p, delta=0.1, order="ascending").n_rejected == 0
    # A partial order tests only the listed hypotheses.
    assert fwer.fixed_sequence(p, delta=0.1, order=[2, 3]).indices.tolist() == [2, 3]


@given(pvals, deltas)
def test_graphical_special_cases(p: np.ndarray, delta: float) -> None:
    m = len(p)
    # Holm = graphical with equal weights and a complete graph of equal transitions.
    g = np.full((m, m), 1.0 / max(m - 1, 1))
    np.fill_diagonal(g, 0.0)
    holm = fwer.holm(p, delta=delta).rejected
    np.testing.assert_array_equal(
        fwer.graphical(p, delta=delta, weights=np.full(m, 1.0 / m), transitions=g).rejected, holm
    )
    # Fixed sequence = all weight on the first, a chain of transitions.
    w = np.zeros(m)
    w[0] = 1.0
    chain = np.eye(m, k=1)
    np.testing.assert_array_equal(
        fwer.graphical(p, delta=delta, weights=w, transitions=chain).rejected,
        fwer.fixed_sequence(p, delta=delta, order="ascending").rejected,
    )


@given(pvals, deltas)
def test_fallback_contains_fixed_sequence_and_bonferroni_share(p: np.ndarray, delta: float) -> None:
    m = len(p)
    # With all weight on the first hypothesis fallback is fixed-sequence.
    w = np.zeros(m)
    w[0] = 1.0
    np.testing.assert_array_equal(
        fwer.fallback(p, delta=delta, order="ascending", weights=w).rejected,
        fwer.fixed_sequence(p, delta=delta, order="ascending").rejected,
    )
    # With equal weights it rejects everything Bonferroni rejects.
    assert np.all(
        fwer.fallback(p, delta=delta, order="ascending").rejected[
            fwer.bonferroni(p, delta=delta).rejected
        ]
    )


def test_fwer_control_dispatch_and_order_required() -> None:
    p = np.array([0.001, 0.2, 0.03])
    assert fwer.fwer_control(p, delta=0.1, procedure="holm").indices.tolist() == [0, 2]
    with pytest.raises(ValueError, match="order: required"):
        fwer.fwer_control(p, delta=0.1, procedure="fixed_sequence")
    with pytest.raises(ValueError, match="procedure: must be one of"):
        fwer.fwer_control(p, delta=0.1, procedure="hochberg")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fwer.holm([0.1, np.nan], delta=0.1), "pvalues: contains NaN"),
        (lambda: fwer.bonferroni([0.1, 1.2], delta=0.1), "pvalues: values must be <= 1"),
        (lambda: fwer.bonferroni([], delta=0.1), "pvalues: must not be empty"),
        (lambda: fwer.holm([0.1], delta=1.5), "delta: must lie in"),
        (
            lambda: fwer.fixed_sequence([0.1, 0.2], delta=0.1, order=[0, 0]),
            "order: indices must be distinct",
        ),
        (
            lambda: fwer.fixed_sequence([0.1, 0.2], delta=0.1, order=[0, 2]),
            "order: values must be <= 1",
        ),
        (lambda: fwer.fixed_sequence([0.1], delta=0.1, order="sideways"), "order: must be one of"),  # type: ignore[arg-type]
        (
            lambda: fwer.fallback([0.1, 0.2], delta=0.1, order="ascending", weights=[0.9, 0.9]),
            "weights: must sum",
        ),
        (
            lambda: fwer.graphical(
                [0.1, 0.2], delta=0.1, weights=[0.5, 0.5], transitions=np.eye(2)
            ),
            "transitions: diagonal",
        ),
    ],
)
def test_bad_input_names_the_argument(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_delta_is_keyword_only() -> None:
    p = [0.01, 0.2]
    with pytest.raises(TypeError, match="positional argument"):
        fwer.bonferroni(p, 0.1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional argument"):
        fwer.holm(p, 0.1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional argument"):
        fwer.fwer_control(p, 0.1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional argument"):
        fwer.fixed_sequence(p, 0.1, order="ascending")  # type: ignore[call-arg]


def _rounded_up_level(delta: float) -> int:
    """An m where the float δ/m lies above the exact rational δ/m."""
    from fractions import Fraction

    return next(m for m in range(2, 1000) if Fraction(delta / m) > Fraction(delta) / m)


@pytest.mark.parametrize("delta", [0.1, 0.05, 0.2])
def test_one_comparison_rule_at_the_boundary_never_above_the_level(delta: float) -> None:
    """Bonferroni, Holm, fallback and graphical reject p ≤ δw with δw exact: at p = fl(δ/m)
    rounded above δ/m none rejects, one ulp below all do (no tolerance above the level)."""
    m = _rounded_up_level(delta)
    w, g = np.full(m, 1.0 / m), np.zeros((m, m))
    for p0, want in [(delta / m, 0), (np.nextafter(delta / m, 0.0), 1)]:
        p = np.ones(m)
        p[0] = p0
        got = [
            fwer.bonferroni(p, delta=delta).n_rejected,
            fwer.holm(p, delta=delta).n_rejected,
            fwer.fallback(p, delta=delta, order="ascending").n_rejected,
            fwer.graphical(p, delta=delta, weights=w, transitions=g).n_rejected,
        ]
        assert got == [want] * 4, (p0, got)


def test_graphical_holm_weights_are_exact_after_rerouting() -> None:
    """With Holm's graph the rerouted weights are exactly 1/(m − r): graphical equals holm
    even for p-values on the float level δ/(m − r) of later steps."""
    m, delta = 7, 0.1
    g = np.full((m, m), 1.0 / (m - 1))
    np.fill_diagonal(g, 0.0)
    p = np.array([delta / (m - r) for r in range(m)])
    got = fwer.graphical(p, delta=delta, weights=np.full(m, 1.0 / m), transitions=g)
    assert np.array_equal(got.rejected, fwer.holm(p, delta=delta).rejected)


def _graphical_in_fractions(p: np.ndarray, delta: float, w: np.ndarray, g: np.ndarray) -> list[int]:
    """Bretz et al. (2009), Alg. 1, entirely in exact fractions (the reference)."""
    from fractions import Fraction

    m = p.size
    wf = [fwer._fraction(float(v)) for v in w]
    gf = [[fwer._fraction(float(v)) for v in row] for row in g]
    d, active = Fraction(delta), [True] * m
    rejected: list[int] = []
    while True:
        j = next(
            (i for i in range(m) if active[i] and wf[i] > 0 and Fraction(p[i]) <= wf[i] * d), -1
        )
        if j < 0:
            return rejected
        rejected.append(j)
        active[j] = False
        live = [i for i in range(m) if active[i]]
        for i in live:
            wf[i] += wf[j] * gf[j][i]
        wf[j] = Fraction(0)
        new = [[Fraction(0)] * m for _ in range(m)]
        for i in live:
            den = 1 - gf[i][j] * gf[j][i]
            for k in live:
                if i != k and den > 0:
                    new[i][k] = (gf[i][k] + gf[i][j] * gf[j][k]) / den
        gf = new


@pytest.mark.parametrize("seed", range(12))
def test_graphical_float_path_equals_exact_fractions_on_the_levels(seed: int) -> None:
    """The float graph with exact checks near a level rejects exactly what the all-fraction
    algorithm rejects, with p-values placed on (and one ulp around) the rerouted levels and
    with loops g_ij = g_ji = 1 that the float update cannot divide by."""
    rng = np.random.default_rng(seed)
    m, delta = int(rng.integers(2, 9)), 0.1
    g = rng.uniform(size=(m, m)) * (rng.uniform(size=(m, m)) < 0.6)
    np.fill_diagonal(g, 0.0)
    g = 0.999 * g / np.maximum(g.sum(axis=1, keepdims=True), 1e-300)  # row sums < 1
    if seed % 3 == 0:  # a closed loop between nodes 0 and 1
        g[0], g[1] = 0.0, 0.0
        g[0, 1] = g[1, 0] = 1.0
    w = np.full(m, 1.0 / m)
    p = delta * rng.integers(1, 4, size=m) / rng.integers(1, m + 2, size=m)
    p = np.minimum(1.0, np.nextafter(p, rng.choice([0.0, 1.0], size=m)) if seed % 2 else p)
    got = fwer.graphical(p, delta=delta, weights=w, transitions=g)
    assert got.indices.tolist() == _graphical_in_fractions(p, delta, w, g)


def test_fallback_with_weights_exact_at_the_boundary() -> None:
    """Fallback levels δ·(w_s + … + w_j) are exact: p on the carried float level of 1/3 + 1/3
    is rejected iff it is at most the rational 2δ/3."""
    from fractions import Fraction

    delta = 0.1
    level = delta * (1 / 3 + 1 / 3)
    for p1 in (level, np.nextafter(level, 0.0), np.nextafter(level, 1.0)):
        got = fwer.fallback([0.0, p1, 1.0], delta=delta, order="ascending", weights=[1 / 3] * 3)
        want = Fraction(float(p1)) <= Fraction(delta) * Fraction(2, 3)
        assert got.rejected[1] == want


def test_results_are_the_ones_the_dataclass_constructor_builds() -> None:
    """The kernels fill FWERResult's fields directly: equal to FWERResult(...)."""
    import dataclasses

    p = np.random.default_rng(5).uniform(size=30) * 0.05
    for res in (fwer.holm(p, delta=0.1), fwer.bonferroni(p, delta=0.1)):
        built = fwer.FWERResult(
            rejected=res.rejected, indices=res.indices, procedure=res.procedure, delta=res.delta
        )
        assert list(vars(built)) == list(vars(res)) and repr(built) == repr(res)
        with pytest.raises(dataclasses.FrozenInstanceError):
            res.delta = 0.5  # type: ignore[misc]
