"""Learn-then-Test: structure of the result, multi-risk, agreement with its parts, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from ctd_stats import LTTResult, fixed_sequence, holm, learn_then_test, split_indices
from ctd_stats._serialize import array_sha256
from ctd_stats.fwer import Order, Procedure
from ctd_stats.ltt import LTTProcedure
from ctd_stats.pvalues import PValueMethod, binomial_pvalue

GRID = np.linspace(0.0, 1.0, 51)


def _delegation_losses(n: int, seed: int) -> np.ndarray:
    scores = np.random.default_rng(seed).uniform(size=n)
    return (scores[:, None] > GRID[None, :]).astype(float)


def test_certified_set_is_a_suffix_of_the_grid_for_a_monotone_risk() -> None:
    res = learn_then_test(_delegation_losses(1000, 0), alpha=0.25, delta=0.1, order="descending")
    certified = np.flatnonzero(res.certified)
    assert certified.size > 0
    np.testing.assert_array_equal(certified, np.arange(certified[0], GRID.size))
    # True risk 1 − λ ≤ 0.25 needs λ ≥ 0.75; a good calibration gets close to it.
    assert 0.75 <= GRID[certified[0]] <= 0.85
    assert res.alpha.tolist() == [0.25] and res.n == 1000 and res.procedure == "fixed_sequence"


def test_counts_and_losses_give_the_same_result() -> None:
    losses = _delegation_losses(300, 1)
    a = learn_then_test(losses, alpha=0.3, delta=0.1, procedure="holm")
    b = learn_then_test(
        counts=losses.sum(axis=0).astype(int), n=300, alpha=0.3, delta=0.1, procedure="holm"
    )
    np.testing.assert_array_equal(a.certified, b.certified)
    np.testing.assert_allclose(a.pvalues, b.pvalues)


def test_result_matches_pvalues_then_fwer() -> None:
    losses = _delegation_losses(200, 2)
    res = learn_then_test(losses, alpha=0.3, delta=0.05, order="descending")
    p = binomial_pvalue(losses.sum(axis=0).astype(int), 200, alpha=0.3)
    np.testing.assert_allclose(res.pvalues, p)
    np.testing.assert_array_equal(
        res.certified, fixed_sequence(p, delta=0.05, order="descending").rejected
    )
    res_h = learn_then_test(losses, alpha=0.3, delta=0.05, procedure="holm")
    np.testing.assert_array_equal(res_h.certified, holm(p, delta=0.05).rejected)


def test_multi_risk_uses_the_max_pvalue() -> None:
    losses = _delegation_losses(500, 3)
    other = 1.0 - losses  # the complementary risk grows with λ
    both = np.stack([losses, other])
    res = learn_then_test(both, alpha=[0.3, 0.9], delta=0.1, procedure="bonferroni")
    np.testing.assert_allclose(res.pvalues, res.risk_pvalues.max(axis=0))
    single = learn_then_test(losses, alpha=0.3, delta=0.1, procedure="bonferroni")
    assert np.all(single.certified[res.certified])  # adding a risk can only shrink the set
    assert res.certified.sum() < single.certified.sum()


@given(st.integers(20, 400), st.floats(0.05, 0.9), st.floats(0.01, 0.3))
def test_certified_set_shrinks_as_alpha_or_delta_shrink(n: int, alpha: float, delta: float) -> None:
    losses = _delegation_losses(n, n)
    base = learn_then_test(losses, alpha=alpha, delta=delta, order="descending").certified
    tighter_alpha = learn_then_test(losses, alpha=alpha * 0.8, delta=delta, order="descending")
    tighter_delta = learn_then_test(losses, alpha=alpha, delta=delta * 0.5, order="descending")
    assert np.all(base[tighter_alpha.certified])
    assert np.all(base[tighter_delta.certified])


@given(st.integers(0, 10_000))
def test_permutation_invariance_of_exchangeable_methods(seed: int) -> None:
    losses = _delegation_losses(100, 4)
    perm = np.random.default_rng(seed).permutation(100)
    for method in ("binomial", "hb"):
        a = learn_then_test(losses, alpha=0.4, delta=0.1, method=method, order="descending")
        b = learn_then_test(losses[perm], alpha=0.4, delta=0.1, method=method, order="descending")
        np.testing.assert_array_equal(a.certified, b.certified)


def test_nothing_certified_is_a_result_not_an_error() -> None:
    res = learn_then_test(np.ones((50, 5)), alpha=0.1, delta=0.1, order="ascending")
    assert not res.found and res.indices.size == 0 and res.select(GRID[:5]) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.1, "delta": 0.1}, "losses: give exactly one"),
        (
            {"losses": np.zeros((5, 3)), "counts": [0, 0, 0], "alpha": 0.1, "delta": 0.1},
            "losses: give exactly one",
        ),
        ({"counts": [0, 1], "alpha": 0.1, "delta": 0.1}, "n: required"),
        ({"losses": np.zeros((5, 3)), "n": 5, "alpha": 0.1, "delta": 0.1}, "n: only used"),
        (
            {"losses": np.zeros((5, 3)), "alpha": [0.1, 0.2], "delta": 0.1, "procedure": "holm"},
            "alpha: got 2 level",
        ),
        (
            {"losses": np.zeros((5, 3)), "alpha": 0.1, "delta": 0.0, "procedure": "holm"},
            "delta: must lie in",
        ),
        (
            {"losses": np.zeros((5, 3)), "alpha": 1.0, "delta": 0.1, "procedure": "holm"},
            "alpha: must lie in",
        ),
        (
            {"losses": np.zeros(5), "alpha": 0.1, "delta": 0.1, "procedure": "holm"},
            "losses: expected 2 or 3",
        ),
        (
            {"losses": np.zeros((0, 3)), "alpha": 0.1, "delta": 0.1, "procedure": "holm"},
            "losses: must not be empty",
        ),
        (
            {"losses": np.full((5, 3), np.inf), "alpha": 0.1, "delta": 0.1, "procedure": "holm"},
            "losses: contains infinite",
        ),
        ({"losses": np.zeros((5, 3)), "alpha": 0.1, "delta": 0.1}, "order: required"),
        (
            {
                "counts": [0, 1],
                "n": 5,
                "alpha": 0.1,
                "delta": 0.1,
                "method": "wsr",
                "procedure": "holm",
            },
            "method: 'wsr'",
        ),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        learn_then_test(**kwargs)  # type: ignore[call-overload]


def test_boolean_losses_take_the_count_path_with_identical_results() -> None:
    rng = np.random.default_rng(5)
    delegated = rng.uniform(size=(400, 1))[:, :] > GRID[None, :]
    for method in ("binomial", "hb", "wsr"):
        a = learn_then_test(delegated, alpha=0.3, delta=0.1, method=method, order="descending")
        b = learn_then_test(
            delegated.astype(float), alpha=0.3, delta=0.1, method=method, order="descending"
        )
        np.testing.assert_array_equal(a.certified, b.certified)
        np.testing.assert_allclose(a.pvalues, b.pvalues)
    with pytest.raises(ValueError, match="losses: expected a non-empty"):
        learn_then_test(np.zeros((0, 3), dtype=bool), alpha=0.3, delta=0.1, order="descending")


# --------------------------------------------------------------------------- select / reason
def test_select_follows_the_testing_order() -> None:
    losses = _delegation_losses(1000, 7)
    res = learn_then_test(losses, alpha=0.3, delta=0.1, order="descending")
    certified = np.flatnonzero(res.certified)
    assert res.found and res.order is not None and res.order[0] == GRID.size - 1
    # Descending order: the last one rejected is the smallest certified λ (most delegation).
    assert res.select_index(rule="most_aggressive") == certified.min() == res.indices[-1]
    assert res.select_index(rule="least_aggressive") == certified.max() == res.indices[0]
    assert res.select(GRID, rule="most_aggressive") == GRID[certified.min()]
    asc = learn_then_test(1.0 - losses, alpha=0.3, delta=0.1, order="ascending")
    assert asc.select_index(rule="most_aggressive") == np.flatnonzero(asc.certified).max()


def test_select_for_holm_and_bonferroni_uses_the_given_order() -> None:
    losses = _delegation_losses(1000, 8)
    for procedure in ("holm", "bonferroni"):
        res = learn_then_test(losses, alpha=0.3, delta=0.1, procedure=procedure, order="descending")
        certified = np.flatnonzero(res.certified)
        assert res.select_index(rule="most_aggressive") == certified.min()
        assert res.select_index(rule="least_aggressive") == certified.max()
        unordered = learn_then_test(losses, alpha=0.3, delta=0.1, procedure=procedure)
        assert unordered.order is None
        np.testing.assert_array_equal(unordered.certified, res.certified)
        with pytest.raises(ValueError, match="rule: procedure="):
            unordered.select(GRID)
    with pytest.raises(ValueError, match="order: must list every grid index"):
        learn_then_test(losses, alpha=0.3, delta=0.1, procedure="holm", order=[0, 1])
    res = learn_then_test(losses, alpha=0.3, delta=0.1, order="descending")
    with pytest.raises(ValueError, match="rule: must be one of"):
        res.select(GRID, rule="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grid: expected 51 values"):
        res.select(GRID[:-1])


def test_readme_snippet() -> None:
    scores = np.random.default_rng(0).uniform(size=2000)
    losses = scores[:, None] > GRID[None, :]
    res = learn_then_test(losses, alpha=0.2, delta=0.1, order="descending")
    tau = res.select(GRID, rule="most_aggressive")
    if tau is None:
        raise AssertionError(res.reason)
    assert 0.78 <= tau <= 0.86


@pytest.mark.parametrize(
    ("procedure", "order", "level_div"),
    [
        ("fixed_sequence", "descending", 1),
        ("holm", None, 5),
        ("bonferroni", None, 5),
        ("fallback", "descending", 5),
    ],
)
@pytest.mark.parametrize("strict", [False, True])
def test_min_n_is_the_smallest_n_that_could_have_worked(
    procedure: Procedure, order: Order | None, level_div: int, strict: bool
) -> None:
    alpha, delta = 0.1, 0.1
    res = learn_then_test(
        counts=[0] * 5,
        n=3,
        alpha=alpha,
        delta=delta,
        procedure=procedure,
        order=order,
        strict=strict,
    )
    assert not res.found and res.min_n is not None and res.reason is not None
    assert res.reason.startswith("too few calibration points")
    assert repr(res).startswith("LTTResult(found=False") and "reason:" in repr(res).split("\n")[1]
    n0 = res.min_n
    kwargs = dict(alpha=alpha, delta=delta, procedure=procedure, order=order, strict=strict)
    assert learn_then_test(counts=[0] * 5, n=n0, **kwargs).found  # type: ignore[call-overload]
    assert not learn_then_test(counts=[0] * 5, n=n0 - 1, **kwargs).found  # type: ignore[call-overload]
    # Closed form (1 − α)^n ≤ δ/m, up to the exact binomial cdf's rounding.
    expected = np.log(delta / level_div) / np.log1p(-alpha)
    assert abs(n0 - np.ceil(expected)) <= 1


def test_reason_when_n_is_large_enough_but_the_risk_is_not_low() -> None:
    res = learn_then_test(np.ones((200, 4)), alpha=0.1, delta=0.1, order="ascending")
    assert not res.found and res.min_n is not None and res.min_n <= 200
    assert res.reason is not None and res.reason.startswith("the first grid point tested")
    multi = learn_then_test(
        counts=[[0, 0], [0, 0]], n=5, alpha=[0.1, 0.4], delta=0.1, order="ascending"
    )
    assert (
        multi.min_n
        == learn_then_test(counts=[0, 0], n=5, alpha=0.1, delta=0.1, order="ascending").min_n
    )
    wsr = learn_then_test(np.ones((20, 4)), alpha=0.1, delta=0.1, method="wsr", order="ascending")
    assert not wsr.found and wsr.min_n is None and wsr.reason is not None


def test_repr_is_compact() -> None:
    scores = np.random.default_rng(1).uniform(size=500)
    grid = np.linspace(0, 1, 1000)
    res = learn_then_test(scores[:, None] > grid[None, :], alpha=0.2, delta=0.1, order="descending")
    text = repr(res)
    assert len(text) < 1500 and text.count("\n") <= 12
    assert text.startswith("LTTResult(found=True")


def test_repr_lines_fit_a_page_even_with_a_long_reason() -> None:
    scores = np.random.default_rng(0).uniform(size=20)
    grid = np.linspace(0, 1, 101)
    res = learn_then_test(scores[:, None] > grid, alpha=0.01, delta=0.1, order="descending")
    assert res.reason is not None and len(res.reason) > 100
    lines = repr(res).splitlines()
    assert lines[1].startswith("  reason: too few calibration points")
    assert max(len(line) for line in lines) <= 100


# --------------------------------------------------------------------------- JSON
def _assert_same(a: object, b: object) -> None:
    import dataclasses

    assert type(a) is type(b)
    for f in dataclasses.fields(a):  # type: ignore[arg-type]
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)
        else:
            assert x == y and type(x) is type(y), f.name


@given(
    st.integers(1, 60),
    st.integers(1, 12),
    st.floats(0.01, 0.9),
    st.floats(0.01, 0.5),
    st.sampled_from(["fixed_sequence", "holm", "bonferroni", "fallback"]),
    st.sampled_from(["binomial", "hb", "wsr"]),
    st.booleans(),
)
def test_json_round_trip_is_exact(
    n: int,
    m: int,
    alpha: float,
    delta: float,
    procedure: Procedure,
    method: PValueMethod,
    strict: bool,
) -> None:

    rng = np.random.default_rng(n * 100 + m)
    losses = rng.uniform(size=(n, m)) < np.linspace(0.0, 0.6, m)
    order: Order | None = None if procedure in ("holm", "bonferroni") and n % 2 else "ascending"
    res = learn_then_test(
        losses.astype(float),
        alpha=alpha,
        delta=delta,
        method=method,
        procedure=procedure,
        order=order,
        strict=strict,
    )
    back = LTTResult.from_json(res.to_json())
    _assert_same(res, back)
    if res.order is not None:
        assert back.select_index() == res.select_index()


def test_json_header_states_the_guarantee_and_refuses_tampering() -> None:
    import json

    k = np.array([40, 20, 5, 0])
    res = learn_then_test(counts=k, n=100, alpha=0.2, delta=0.1, order="descending")
    payload = json.loads(res.to_json())
    assert payload["n"] == 100 and payload["calibration_sha256"] == array_sha256(k)
    assert "1 - 0.1" in payload["guarantee"] and "alpha = [0.2]" in payload["guarantee"]
    assert payload["settings"]["procedure"] == "fixed_sequence"
    losses = np.zeros((30, 3))
    assert learn_then_test(losses, alpha=0.2, delta=0.1, order="descending").calibration_sha256 == (
        array_sha256(losses)
    )
    payload["fields"]["delta"] = 0.5
    with pytest.raises(ValueError, match="text: checksum mismatch"):
        LTTResult.from_json(json.dumps(payload))


def test_calibration_sha256_is_of_the_data_at_call_time() -> None:
    # The hash is computed when first read (serialisation), yet it identifies the data the
    # calibration saw: changing the caller's arrays afterwards does not change it.
    k = np.array([40, 20, 5, 0])
    losses = np.zeros((30, 3))
    expected_k, expected_losses = array_sha256(k), array_sha256(losses)
    res_k = learn_then_test(counts=k, n=100, alpha=0.2, delta=0.1, order="descending")
    res_l = learn_then_test(losses, alpha=0.2, delta=0.1, order="descending", method="hb")
    k[0], losses[0, 0] = 41, 1.0
    assert res_k.calibration_sha256 == expected_k
    assert res_l.calibration_sha256 == expected_losses
    back = LTTResult.from_json(res_k.to_json())
    assert back == res_k and back.calibration_sha256 == expected_k


# --------------------------------------------------------------------------- per-threshold n
def test_per_threshold_n_gives_exact_binomials_per_grid_point_and_risk() -> None:
    rng = np.random.default_rng(23)
    n = rng.integers(0, 80, size=(2, 40))
    k = (rng.uniform(size=n.shape) * (n + 1)).astype(np.int64)
    res = learn_then_test(counts=k, n=n, alpha=[0.2, 0.35], delta=0.1, procedure="holm")
    want = np.asarray(stats.binom.cdf(k, n, np.array([[0.2], [0.35]])))
    assert np.array_equal(res.risk_pvalues, want)  # element-wise, bit for bit (n = 0: p = 1)
    assert np.array_equal(res.pvalues, want.max(axis=0))
    assert res.sample_sizes is not None and np.array_equal(res.sample_sizes, n)
    col = np.array([[80], [90]])
    one = learn_then_test(counts=k, n=col, alpha=[0.2, 0.35], delta=0.1, procedure="holm")
    assert np.array_equal(one.risk_pvalues, stats.binom.cdf(k, [[80], [90]], [[0.2], [0.35]]))


@pytest.mark.parametrize("method", ["binomial", "hoeffding", "hoeffding_kl", "bentkus", "hb"])
@pytest.mark.parametrize("procedure", ["holm", "fixed_sequence", "bonferroni", "fallback"])
def test_scalar_n_as_an_array_and_an_all_true_mask_are_ordinary_ltt(
    method: PValueMethod, procedure: LTTProcedure
) -> None:
    rng = np.random.default_rng(5)
    losses = rng.uniform(size=(300, 30)) < np.linspace(0.05, 0.5, 30)
    plain = learn_then_test(
        losses,
        alpha=0.25,
        delta=0.1,
        method=method,
        procedure=procedure,
        order="ascending",
    )
    full = learn_then_test(
        losses.astype(float),
        where=np.ones_like(losses),
        alpha=0.25,
        delta=0.1,
        method=method,
        procedure=procedure,
        order="ascending",
    )
    arr = learn_then_test(
        counts=losses.sum(0),
        n=np.full(30, 300),
        alpha=0.25,
        delta=0.1,
        method=method,
        procedure=procedure,
        order="ascending",
    )
    for other in (full, arr):
        assert np.array_equal(plain.pvalues, other.pvalues)
        assert np.array_equal(plain.indices, other.indices)


@pytest.mark.parametrize("method", ["binomial", "hoeffding", "hoeffding_kl", "bentkus", "hb"])
def test_where_equals_counts_bit_for_bit(method: PValueMethod) -> None:
    rng = np.random.default_rng(9)
    losses = rng.uniform(size=(2, 200, 25)) < 0.2
    where = rng.uniform(size=losses.shape) < 0.5
    a = learn_then_test(
        losses,
        where=where,
        alpha=[0.3, 0.4],
        delta=0.1,
        method=method,
        procedure="holm",
    )
    b = learn_then_test(
        losses.astype(float),
        where=where,
        alpha=[0.3, 0.4],
        delta=0.1,
        method=method,
        procedure="holm",
    )
    c = learn_then_test(
        counts=(losses * where).sum(axis=-2),
        n=where.sum(axis=-2),
        alpha=[0.3, 0.4],
        delta=0.1,
        method=method,
        procedure="holm",
    )
    assert np.array_equal(a.risk_pvalues, c.risk_pvalues)
    assert np.array_equal(b.risk_pvalues, c.risk_pvalues)


def test_wsr_with_where_bets_on_the_selected_rows_in_order() -> None:
    from ctd_stats.pvalues import wsr_pvalue

    rng = np.random.default_rng(3)
    x = rng.uniform(size=(120, 6)) * 0.6
    where = rng.uniform(size=x.shape) < 0.6
    where[:, 5] = False
    res = learn_then_test(x, where=where, alpha=0.4, delta=0.1, method="wsr", procedure="holm")
    for j in range(5):
        assert res.pvalues[j] == float(wsr_pvalue(x[where[:, j], j], alpha=0.4, delta=0.1))
    assert res.pvalues[5] == 1.0


def test_a_threshold_with_too_few_rows_blocking_the_sequence_is_named() -> None:
    res = learn_then_test(counts=[0, 0, 3], n=[0, 4, 500], alpha=0.2, delta=0.1, order="ascending")
    assert not res.found and res.min_n == 11
    assert res.reason is not None and res.reason.startswith("grid point 0, tested first, has n = 0")
    assert "at least 11 are needed at alpha = 0.2, delta = 0.1" in res.reason
    holm = learn_then_test(counts=[0, 0, 3], n=[0, 4, 500], alpha=0.2, delta=0.1, procedure="holm")
    assert holm.certified.tolist() == [False, False, True]  # Holm does not stop there
    small = learn_then_test(counts=[0, 0], n=[2, 4], alpha=0.2, delta=0.1, procedure="holm")
    assert small.reason is not None and small.reason.startswith("too few calibration points")


def test_split_fixed_sequence_learns_the_order_on_the_other_rows() -> None:
    rng = np.random.default_rng(1)
    unsafe = rng.uniform(size=2000) < 0.3
    score = np.where(unsafe, rng.beta(4, 2, 2000), rng.beta(2, 4, 2000))
    grid = np.linspace(0, 1, 101)
    flagged = score[:, None] > grid[None, :]
    losses = flagged & ~unsafe[:, None]
    res = learn_then_test(
        losses, where=flagged, alpha=0.2, delta=0.1, procedure="split_fixed_sequence", seed=7
    )
    assert res.found and (res.n_opt, res.n) == (600, 1400)
    assert res.order is not None and np.array_equal(np.sort(res.order), np.arange(101))
    first = split_indices(2000, first_fraction=0.3, seed=7)
    opt = learn_then_test(
        losses[first.first], where=flagged[first.first], alpha=0.2, delta=0.1, procedure="holm"
    )
    assert np.array_equal(res.order, np.argsort(opt.pvalues, kind="stable"))
    test = learn_then_test(
        losses[first.second],
        where=flagged[first.second],
        alpha=0.2,
        delta=0.1,
        procedure="fixed_sequence",
        order=res.order,
    )
    assert np.array_equal(res.indices, test.indices)
    fixed = learn_then_test(losses, where=flagged, alpha=0.2, delta=0.1, order="descending")
    assert not fixed.found  # the natural order starts where nothing is flagged


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"counts": [1, 2], "n": [3, 4, 5]}, "n"),
        ({"counts": [1, 6], "n": [3, 4]}, "counts"),
        ({"counts": [1, 2], "n": [-1, 4]}, "n"),
        ({"counts": [1, 2], "n": [3.5, 4]}, "n"),
        ({"losses": np.zeros((3, 2)), "where": np.ones((3, 3), dtype=bool)}, "where"),
        ({"losses": np.zeros((3, 2)), "where": np.ones((3, 2))}, "where"),
        ({"counts": [1, 2], "n": 4, "where": np.ones((3, 2), dtype=bool)}, "where"),
        ({"counts": [1, 2], "n": 4, "procedure": "split_fixed_sequence"}, "procedure"),
        (
            {"losses": np.zeros((3, 2)), "procedure": "split_fixed_sequence", "opt_fraction": 1.5},
            "opt_fraction",
        ),
    ],
)
def test_bad_conditional_input_names_the_argument(kwargs: dict[str, Any], name: str) -> None:
    args: dict[str, Any] = {"alpha": 0.2, "delta": 0.1, "procedure": "holm", **kwargs}
    with pytest.raises(ValueError, match=f"^{name}"):
        learn_then_test(**args)


# --------------------------------------------------------------------------- groups= dispatch
@pytest.mark.parametrize("mode", ["per_group", "simultaneous", "shared"])
@pytest.mark.parametrize(
    ("method", "procedure"),
    [("binomial", "fixed_sequence"), ("hb", "holm"), ("binomial", "bonferroni")],
)
@pytest.mark.parametrize("n", [15, 400])
def test_one_group_through_groups_equals_ungrouped_bit_for_bit(
    mode: Any, method: PValueMethod, procedure: Procedure, n: int
) -> None:
    losses = _delegation_losses(n, 7) > 0.5  # boolean losses
    kw: dict[str, Any] = {"alpha": 0.2, "delta": 0.1, "order": "descending", "method": method}
    ref = learn_then_test(losses, procedure=procedure, **kw)
    res = learn_then_test(
        losses, groups=np.zeros(n, dtype=int), mode=mode, procedure=procedure, **kw
    )
    assert res.groups == (0,) and res.group_delta == 0.1
    assert bool(res.found[0]) == ref.found
    assert res.certified[0].tobytes() == ref.certified.tobytes()
    assert res.indices[0].tobytes() == ref.indices.tobytes()
    assert res.pvalues[0].tobytes() == ref.pvalues.tobytes()
    assert (res.reason[0] is None) == (ref.reason is None)
    if not ref.found and ref.min_n is not None:
        assert int(res.min_n[0]) == ref.min_n
    assert res.select(GRID, group=0) == ref.select(GRID)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"mode": "simultaneous"},
        {"mode": "simultaneous", "correction": "sidak"},
        {"mode": "shared"},
        {"mode": "shared", "overall_alpha": 0.4},
    ],
)
def test_groups_dispatch_equals_learn_then_test_grouped(options: dict[str, Any]) -> None:
    from ctd_stats.grouped import learn_then_test_grouped

    rng = np.random.default_rng(3)
    groups = rng.integers(0, 3, 900)
    losses = rng.uniform(size=900)[:, None] ** (1.0 + groups[:, None]) > GRID[None, :]
    caps = {0: 0.4, 1: 0.3, 2: 0.2}
    kw: dict[str, Any] = {"alpha": caps, "delta": 0.1, "order": "descending", **options}
    direct = learn_then_test_grouped(losses, groups=groups, **kw)
    assert learn_then_test(losses, groups=groups, **kw) == direct
    # The counts form too: per-group counts (G, m) with per-group sizes.
    counts = np.stack([losses[groups == g].sum(axis=0) for g in range(3)])
    sizes = np.bincount(groups)
    assert learn_then_test(counts=counts, n=sizes, groups=[0, 1, 2], **kw) == (
        learn_then_test_grouped(counts=counts, n=sizes, groups=[0, 1, 2], **kw)
    )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"mode": "shared"}, "mode"),
        ({"correction": "sidak"}, "correction"),
        ({"overall_alpha": 0.3}, "overall_alpha"),
        ({"groups": np.zeros(20, dtype=int), "where": np.ones((20, 51), dtype=bool)}, "where"),
    ],
)
def test_group_options_without_groups_name_the_argument(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}:"):
        learn_then_test(
            _delegation_losses(20, 0) > 0.5, alpha=0.2, delta=0.1, order="descending", **kwargs
        )


@pytest.mark.parametrize("sizes", [None, "per_point"])
def test_result_is_the_one_the_dataclass_constructor_builds(sizes: str | None) -> None:
    """learn_then_test fills its result's fields directly: the same object as LTTResult(...)."""
    import dataclasses

    rng = np.random.default_rng(7)
    n_arr = rng.integers(0, 60, size=20)
    k = rng.binomial(n_arr, 0.1)
    res = learn_then_test(
        counts=k, n=50 if sizes is None else n_arr, alpha=0.2, delta=0.1, procedure="holm"
    )
    fields = {f.name: getattr(res, f.name) for f in dataclasses.fields(LTTResult)}
    built = LTTResult(**fields)
    assert built == res
    assert vars(built).keys() == vars(res).keys()
    assert built.calibration_sha256 == res.calibration_sha256
    assert dataclasses.replace(res, reason="x").reason == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.found = False  # type: ignore[misc]
