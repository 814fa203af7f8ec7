"""p-values: agreement with scipy, exact super-uniformity, monotonicity, input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import ctd_stats.pvalues as pv

levels = st.floats(min_value=0.01, max_value=0.99)


@st.composite
def count_and_n(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=2000))
    return draw(st.integers(min_value=0, max_value=n)), n


@given(count_and_n(), levels)
def test_binomial_equals_scipy_binomtest(kn: tuple[int, int], alpha: float) -> None:
    k, n = kn
    expected = stats.binomtest(k, n, alpha, alternative="less").pvalue
    assert pv.binomial_pvalue(k, n, alpha=alpha) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("n", [1, 7, 50, 333])
@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.77])
def test_binomial_super_uniform_exactly_at_null_boundary(n: int, alpha: float) -> None:
    # Under R = α the count is Bin(n, α): P(p ≤ t) = Σ_{k: p(k) ≤ t} pmf(k) must be ≤ t for every
    # t, and it suffices to check t at the attainable p-values.
    k = np.arange(n + 1)
    p = pv.binomial_pvalue(k, n, alpha=alpha)
    pmf = stats.binom.pmf(k, n, alpha)
    for t in p:
        assert pmf[p <= t].sum() <= t * (1 + 1e-12)


@pytest.mark.parametrize("method", ["hoeffding", "hoeffding_kl", "bentkus", "hb"])
@pytest.mark.parametrize("n", [10, 100])
def test_count_methods_super_uniform_exactly_for_binary_losses(method: str, n: int) -> None:
    alpha = 0.2
    k = np.arange(n + 1)
    p = pv.pvalues_from_counts(k, n, alpha=alpha, method=method)  # type: ignore[arg-type]
    pmf = stats.binom.pmf(k, n, alpha)
    for t in np.unique(p):
        assert pmf[p <= t].sum() <= t * (1 + 1e-12)


def test_an_anticonservative_pvalue_fails_the_exact_check() -> None:
    # The same check must be able to fail: the plug-in "p-value" P(Bin(n, α) < k) is too small.
    n, alpha = 50, 0.2
    k = np.arange(n + 1)
    bad = stats.binom.cdf(k - 1, n, alpha)
    pmf = stats.binom.pmf(k, n, alpha)
    assert any(pmf[bad <= t].sum() > t for t in bad if t > 0)


@given(count_and_n(), levels)
def test_binomial_monotone_in_count_and_level(kn: tuple[int, int], alpha: float) -> None:
    k, n = kn
    ks = np.arange(n + 1)
    p = pv.binomial_pvalue(ks, n, alpha=alpha)
    assert np.all(np.diff(p) >= -1e-15)
    assert pv.binomial_pvalue(k, n, alpha=min(alpha + 0.01, 0.999)) <= pv.binomial_pvalue(
        k, n, alpha=alpha
    )


@given(count_and_n(), levels)
def test_hb_is_min_of_its_parts_and_at_least_binomial(kn: tuple[int, int], alpha: float) -> None:
    k, n = kn
    r = k / n
    hb = pv.hb_pvalue(r, n, alpha=alpha)
    assert hb == pytest.approx(
        min(pv.hoeffding_kl_pvalue(r, n, alpha=alpha), pv.bentkus_pvalue(r, n, alpha=alpha)),
        rel=1e-12,
    )
    # Chernoff and Bentkus both upper-bound the exact binomial tail.
    assert hb >= pv.binomial_pvalue(k, n, alpha=alpha) * (1 - 1e-9)
    assert pv.hoeffding_pvalue(r, n, alpha=alpha) >= pv.hoeffding_kl_pvalue(r, n, alpha=alpha) * (
        1 - 1e-9
    )


def test_reference_values_from_spec() -> None:
    # SPEC §1: textbook HB at n = 100, r̂ = 0.05, α = 0.1 is 0.157.
    assert float(pv.hb_pvalue(0.05, 100, alpha=0.1)) == pytest.approx(0.1565, abs=5e-4)
    assert float(pv.hoeffding_pvalue(0.05, 100, alpha=0.1)) == pytest.approx(math.exp(-0.5))


def test_counts_are_integers_not_recovered_from_floats() -> None:
    # 0.29 * 100 = 28.999999999999996 in floating point: the loss-matrix path must count 29.
    n = 100
    losses = np.zeros((n, 1))
    losses[:29] = 1
    assert pv.pvalues(losses, alpha=0.4)[0] == pv.binomial_pvalue(29, n, alpha=0.4)
    assert pv.bentkus_pvalue(29 / 100, n, alpha=0.4) == pytest.approx(
        min(1.0, math.e * stats.binom.cdf(29, n, 0.4))
    )


def test_loss_matrix_matches_counts_for_every_count_method() -> None:
    rng = np.random.default_rng(1)
    losses = (rng.uniform(size=(300, 25)) < np.linspace(0.05, 0.6, 25)).astype(float)
    counts = losses.sum(axis=0).astype(int)
    for method in pv.COUNT_METHODS:
        np.testing.assert_allclose(
            pv.pvalues(losses, alpha=0.3, method=method),  # type: ignore[arg-type]
            pv.pvalues_from_counts(counts, 300, alpha=0.3, method=method),  # type: ignore[arg-type]
        )


def test_wsr_valid_and_order_dependent() -> None:
    rng = np.random.default_rng(2)
    losses = rng.uniform(size=(400, 3)) * np.array([0.2, 0.5, 1.0])  # means 0.1, 0.25, 0.5
    p = pv.wsr_pvalue(losses, alpha=0.3)
    assert p.shape == (3,)
    assert p[0] < 0.01 and p[2] == 1.0
    shuffled = pv.wsr_pvalue(losses[::-1], alpha=0.3)
    assert not np.allclose(p[:2], shuffled[:2])
    assert np.ndim(pv.wsr_pvalue(losses[:, 0], alpha=0.3)) == 0


def test_binomial_needs_binary_losses() -> None:
    with pytest.raises(ValueError, match="losses: the binomial p-value needs binary"):
        pv.pvalues(np.full((10, 2), 0.5), alpha=0.1)


@given(count_and_n(), st.floats(min_value=0.01, max_value=0.5))
def test_clopper_pearson_is_dual_of_binomial_pvalue(kn: tuple[int, int], delta: float) -> None:
    k, n = kn
    upper = float(pv.binomial_upper_bound(k, n, delta=delta))
    if k < n:
        assert pv.binomial_pvalue(k, n, alpha=min(upper * (1 + 1e-7), 0.9999999)) <= delta * (
            1 + 1e-6
        )
        if upper * (1 - 1e-6) > 0:
            assert pv.binomial_pvalue(k, n, alpha=upper * (1 - 1e-6)) > delta * (1 - 1e-6)
    else:
        assert upper == 1.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pv.binomial_pvalue(3, 10, alpha=1.0), "alpha: must lie in"),
        (lambda: pv.binomial_pvalue(3, 10, alpha=0.0), "alpha: must lie in"),
        (lambda: pv.binomial_pvalue(11, 10, alpha=0.1), "counts: values must be <= 10"),
        (lambda: pv.binomial_pvalue(2.5, 10, alpha=0.1), "counts: expected integer"),
        (lambda: pv.binomial_pvalue(3, 0, alpha=0.1), "n: must be >= 1"),
        (lambda: pv.hoeffding_pvalue(float("nan"), 10, alpha=0.1), "risk: contains NaN"),
        (lambda: pv.hb_pvalue(1.5, 10, alpha=0.1), "risk: values must be <= 1"),
        (lambda: pv.pvalues(np.zeros((0, 3)), alpha=0.1), "losses: must not be empty"),
        (lambda: pv.pvalues(np.zeros((4, 3)), alpha=0.1, method="magic"), "method: must be one of"),  # type: ignore[arg-type]
        (lambda: pv.pvalues_from_counts([1], 4, alpha=0.1, method="wsr"), "method: must be one of"),
        (lambda: pv.wsr_pvalue(np.zeros((3, 2, 2)), alpha=0.1), "losses: expected 1 or 2"),
        (lambda: pv.wsr_pvalue(np.zeros(5), alpha=0.1, delta=2.0), "delta: must lie in"),
    ],
)
def test_bad_input_names_the_argument(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    "call",
    [
        lambda: pv.binomial_pvalue(3, 10, 0.1),  # type: ignore[call-arg]
        lambda: pv.hoeffding_pvalue(0.3, 10, 0.1),  # type: ignore[call-arg]
        lambda: pv.hoeffding_kl_pvalue(0.3, 10, 0.1),  # type: ignore[call-arg]
        lambda: pv.bentkus_pvalue(0.3, 10, 0.1),  # type: ignore[call-arg]
        lambda: pv.hb_pvalue(0.3, 10, 0.1),  # type: ignore[call-arg]
        lambda: pv.pvalues_from_counts([3], 10, 0.1),  # type: ignore[call-arg]
        lambda: pv.pvalues(np.zeros((4, 2)), 0.1),  # type: ignore[call-arg]
        lambda: pv.wsr_pvalue(np.zeros(4), 0.1),  # type: ignore[call-arg]
        lambda: pv.binomial_upper_bound([3], 10, 0.1),  # type: ignore[call-arg]
    ],
)
def test_levels_are_keyword_only(call: object) -> None:
    # alpha (the risk level) and delta must be named: a positional level is an error, so a
    # call cannot silently swap them.
    with pytest.raises(TypeError, match="positional argument"):
        call()  # type: ignore[operator]


def test_count_kernel_with_one_size_per_grid_point_is_scipy_bit_for_bit() -> None:
    from ctd_stats.pvalues import from_counts as _from_counts

    rng = np.random.default_rng(11)
    n = rng.integers(0, 300, size=200)
    k = (rng.uniform(size=200) * (n + 1)).astype(np.int64)
    assert np.array_equal(_from_counts(k, n, 0.15, "binomial"), stats.binom.cdf(k, n, 0.15))
    for method in ("hoeffding", "hoeffding_kl", "bentkus", "hb"):
        p = _from_counts(k, n, 0.15, method)
        assert np.all(p[n == 0] == 1.0)
        pos = np.flatnonzero(n)[:20]
        for j in pos:  # equals the scalar-n kernel at each grid point
            assert p[j] == _from_counts(k[j : j + 1], int(n[j]), 0.15, method)[0]
