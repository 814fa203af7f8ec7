"""Grouped Learn-then-Test: exact equalities, properties and bad input."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctd_stats import learn_then_test
from ctd_stats.fwer import Procedure
from ctd_stats.grouped import (
    Correction,
    GroupedLTTResult,
    GroupMode,
    group_counts_above,
    learn_then_test_grouped,
)
from ctd_stats.ltt import LTTResult

GRID = np.linspace(0.0, 1.0, 41)


def _data(seed: int, n: int = 600, n_groups: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    scores = rng.uniform(size=n) ** (1.0 + groups)  # group g delegates less as g grows
    return scores, groups


def _same_as_ltt(res: GroupedLTTResult, g: int, ref: LTTResult) -> None:
    """Group g of a grouped result equals an ungrouped LTT result, bit for bit."""
    assert bool(res.found[g]) == ref.found
    np.testing.assert_array_equal(res.certified[g], ref.certified)
    np.testing.assert_array_equal(res.indices[g], ref.indices)
    assert res.pvalues[g].tobytes() == ref.pvalues.tobytes()
    assert (res.reason[g] is None) == (ref.reason is None)
    if not ref.found:
        assert ref.min_n is None or int(res.min_n[g]) == ref.min_n


# --------------------------------------------------------------------------- exact
@pytest.mark.parametrize("mode", ["per_group", "simultaneous", "shared"])
@pytest.mark.parametrize(
    ("method", "procedure"),
    [
        ("binomial", "fixed_sequence"),
        ("hb", "holm"),
        ("wsr", "fallback"),
        ("binomial", "bonferroni"),
    ],
)
@pytest.mark.parametrize("n", [20, 500])
def test_one_group_equals_ungrouped(
    mode: GroupMode, method: str, procedure: Procedure, n: int
) -> None:
    scores, _ = _data(1, n=n)
    losses = scores[:, None] > GRID[None, :]
    if method != "binomial":
        losses = losses.astype(np.float64)
    kw: dict[str, Any] = {"alpha": 0.2, "delta": 0.1, "order": "descending", "method": method}
    ref = learn_then_test(losses, procedure=procedure, **kw)
    res = learn_then_test_grouped(
        losses,
        groups=np.zeros(n, dtype=int),
        mode=mode,
        procedure=procedure,
        **kw,
    )
    _same_as_ltt(res, 0, ref)
    assert res.group_delta == 0.1
    assert res.select(GRID, group=0) == ref.select(GRID)


@pytest.mark.parametrize("seed", range(5))
def test_per_group_equals_ltt_on_each_group(seed: int) -> None:
    scores, groups = _data(seed)
    caps: dict[Any, float] = {0: 0.3, 1: 0.2, 2: 0.1}
    res = learn_then_test_grouped(
        scores[:, None] > GRID, groups=groups, alpha=caps, delta=0.1, order="descending"
    )
    counts = group_counts_above(scores, groups=groups, grid=GRID)
    from_counts = learn_then_test_grouped(
        counts=counts.counts,
        n=counts.n,
        groups=counts.groups,
        alpha=caps,
        delta=0.1,
        order="descending",
    )
    assert from_counts == res
    for g, label in enumerate(res.groups):
        mine = scores[groups == label]
        ref = learn_then_test(
            mine[:, None] > GRID, alpha=caps[label], delta=0.1, order="descending"
        )
        _same_as_ltt(res, g, ref)
        assert res.thresholds(GRID)[label] == ref.select(GRID)


@pytest.mark.parametrize("correction", ["bonferroni", "sidak"])
def test_simultaneous_is_per_group_at_corrected_delta(correction: Correction) -> None:
    scores, groups = _data(7)
    res = learn_then_test_grouped(
        scores[:, None] > GRID,
        groups=groups,
        alpha=0.15,
        delta=0.1,
        order="descending",
        mode="simultaneous",
        correction=correction,
    )
    level = 0.1 / 3 if correction == "bonferroni" else 1 - 0.9 ** (1 / 3)
    assert res.group_delta == pytest.approx(level, rel=1e-14)
    for g in range(3):
        mine = scores[groups == g]
        ref = learn_then_test(
            mine[:, None] > GRID, alpha=0.15, delta=res.group_delta, order="descending"
        )
        _same_as_ltt(res, g, ref)


def test_shared_is_intersection_union_ltt() -> None:
    """Shared mode = LTT with the overall budget and every cap as risks (max p-value)."""
    scores, groups = _data(3)
    counts = group_counts_above(scores, groups=groups, grid=GRID)
    caps = np.array([0.35, 0.25, 0.15])
    res = learn_then_test_grouped(
        counts=counts.counts,
        n=counts.n,
        alpha=caps,
        delta=0.1,
        order="descending",
        mode="shared",
        overall_alpha=0.3,
    )
    k = np.vstack([counts.counts.sum(axis=0), counts.counts])
    sizes = np.concatenate([[counts.n.sum()], counts.n])[:, None] * np.ones_like(k)
    ref = learn_then_test(counts=k, n=sizes, alpha=np.r_[0.3, caps], delta=0.1, order="descending")
    assert res.shared_pvalues is not None
    assert res.shared_pvalues.tobytes() == ref.pvalues.tobytes()
    for g in range(3):
        np.testing.assert_array_equal(res.certified[g], ref.certified)
    assert res.select(GRID) == ref.select(GRID)
    assert res.select(GRID, group=1) == ref.select(GRID)


def test_per_grid_point_sizes_match_ltt() -> None:
    rng = np.random.default_rng(4)
    sizes = rng.integers(50, 200, size=(2, GRID.size))
    k = rng.binomial(sizes, 0.05)
    res = learn_then_test_grouped(counts=k, n=sizes, alpha=0.2, delta=0.1, procedure="holm")
    for g in range(2):
        ref = learn_then_test(counts=k[g], n=sizes[g], alpha=0.2, delta=0.1, procedure="holm")
        _same_as_ltt(res, g, ref)
    np.testing.assert_array_equal(res.sample_sizes, sizes)


def test_small_group_refused_with_min_n() -> None:
    """n_g below ln(δ)/ln(1 − α) certifies nothing, says so, and names the size needed."""
    alpha, delta = 0.05, 0.1
    need = math.ceil(math.log(delta) / math.log(1 - alpha))  # 45
    k = np.zeros((2, 5), dtype=int)
    res = learn_then_test_grouped(
        counts=k,
        n=[need - 1, need],
        groups=["small", "ok"],
        alpha=alpha,
        delta=delta,
        order="descending",
    )
    assert list(res.found) == [False, True]
    assert list(res.min_n) == [need, need]
    assert (
        res.reason[0] is not None and "too few" in res.reason[0] and f">= {need}" in res.reason[0]
    )
    assert res.reason[1] is None
    assert res.select(np.arange(5.0), group="small") is None
    shared = learn_then_test_grouped(
        counts=k,
        n=[need - 1, need],
        groups=["small", "ok"],
        alpha=alpha,
        delta=delta,
        order="descending",
        mode="shared",
    )
    assert not shared.found.any()
    assert shared.reason[1] is not None and "'small'" in shared.reason[1]


def test_json_round_trip_and_repr() -> None:
    scores, groups = _data(2)
    labels = np.array(["a", "b", "c"])[groups]
    for mode in ("per_group", "simultaneous", "shared"):
        res = learn_then_test_grouped(
            scores[:, None] > GRID,
            groups=labels,
            alpha={"a": 0.3, "b": 0.2, "c": 0.05},
            delta=0.1,
            order="descending",
            mode=mode,
        )
        text = res.to_json()
        assert GroupedLTTResult.from_json(text) == res
        assert '"kind": "GroupedLTTResult"' in text
        assert repr(res).startswith(f"GroupedLTTResult(mode={mode!r}")


def test_group_and_select_errors() -> None:
    scores, groups = _data(2)
    res = learn_then_test_grouped(
        scores[:, None] > GRID, groups=groups, alpha=0.2, delta=0.1, order="descending"
    )
    with pytest.raises(ValueError, match=r"^group: 7 is not"):
        res.select(GRID, group=7)
    with pytest.raises(ValueError, match=r"^group: required"):
        res.select(GRID)
    with pytest.raises(ValueError, match=r"^grid:"):
        res.select(GRID[:-1], group=0)
    assert res.group_index(np.int64(2)) == 2


def test_group_counts_above() -> None:
    scores, groups = _data(5)
    c = group_counts_above(scores, groups=groups, grid=GRID)
    for g in range(3):
        np.testing.assert_array_equal(
            c.counts[g], (scores[groups == g][:, None] > GRID).sum(axis=0)
        )
    assert c.n.tolist() == np.bincount(groups).tolist()


# --------------------------------------------------------------------------- properties
@given(
    seed=st.integers(0, 2**32 - 1),
    n_groups=st.integers(1, 5),
    mode=st.sampled_from(["per_group", "simultaneous", "shared"]),
)
def test_relabelling_permutes_result(seed: int, n_groups: int, mode: str) -> None:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, 300)
    losses = rng.uniform(size=300)[:, None] > GRID
    caps = rng.uniform(0.05, 0.5, n_groups)
    perm = rng.permutation(n_groups)  # label g becomes perm[g]
    kw: dict[str, Any] = {"delta": 0.1, "order": "descending", "mode": mode}
    present = np.unique(groups)
    a = learn_then_test_grouped(
        losses, groups=groups, alpha={int(g): caps[g] for g in present}, **kw
    )
    b = learn_then_test_grouped(
        losses,
        groups=perm[groups],
        alpha={int(perm[g]): caps[g] for g in present},
        **kw,
    )
    for g in present:
        i, j = a.group_index(int(g)), b.group_index(int(perm[g]))
        assert a.certified[i].tobytes() == b.certified[j].tobytes()
        assert a.pvalues[i].tobytes() == b.pvalues[j].tobytes()
        assert a.min_n[i] == b.min_n[j] and a.n[i] == b.n[j]


@given(
    seed=st.integers(0, 2**32 - 1),
    small=st.floats(0.01, 0.5),
    shrink=st.floats(0.1, 1.0),
    mode=st.sampled_from(["per_group", "simultaneous", "shared"]),
    procedure=st.sampled_from(["fixed_sequence", "holm"]),
)
def test_smaller_cap_never_certifies_more(
    seed: int, small: float, shrink: float, mode: str, procedure: str
) -> None:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, 200)
    losses = rng.uniform(size=200)[:, None] > GRID
    caps = np.full(3, small)
    smaller = caps.copy()
    smaller[rng.integers(0, 3)] *= shrink
    kw: dict[str, Any] = {
        "groups": groups,
        "delta": 0.1,
        "order": "descending",
        "mode": mode,
        "procedure": procedure,
    }
    big = learn_then_test_grouped(losses, alpha=caps, **kw)
    less = learn_then_test_grouped(losses, alpha=smaller, **kw)
    assert not (less.certified & ~big.certified).any()


@given(n_g=st.integers(1, 200), alpha=st.floats(0.01, 0.5), delta=st.floats(0.01, 0.5))
def test_zero_losses_certify_iff_min_n(n_g: int, alpha: float, delta: float) -> None:
    res = learn_then_test_grouped(
        counts=np.zeros((1, 3), dtype=int), n=[n_g], alpha=alpha, delta=delta, order="descending"
    )
    assert bool(res.found[0]) == (n_g >= res.min_n[0])
    assert res.min_n[0] >= math.log(delta) / math.log(1 - alpha) - 1e-9


# --------------------------------------------------------------------------- bad input
BASE = np.zeros((4, 3), dtype=bool)


@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({"groups": [0, 0, 1, 1], "alpha": {0: 0.1, 1: 0.1, 2: 0.1}}, "alpha: group 2 has no"),
        ({"groups": [0, 0, 1, 1], "alpha": {0: 0.1}}, "alpha: no cap for group 1"),
        ({"groups": [0, 0, 1], "alpha": 0.1}, "groups: length 3"),
        ({"groups": [0.0, np.nan, 1.0, 1.0], "alpha": 0.1}, "groups: contains NaN"),
        ({"groups": [], "alpha": 0.1}, "groups: must not be empty"),
        ({"groups": ["a", "", "b", "b"], "alpha": 0.1}, "groups: contains an empty label"),
        ({"groups": [0.5, 1.5, 0.5, 0.5], "alpha": 0.1}, "groups: expected integer or string"),
        ({"groups": [[0, 1], [1, 0]], "alpha": 0.1}, "groups: expected one label per row"),
        ({"groups": [0, 0, 1, 1], "alpha": 1.0}, "alpha: must lie in"),
        ({"groups": [0, 0, 1, 1], "alpha": {0: 0.1, 1: 0.0}}, "alpha: must lie in"),
        ({"groups": [0, 0, 1, 1], "alpha": [0.1, 0.2, 0.3]}, "alpha: got 3 caps for 2"),
        ({"groups": None, "alpha": 0.1}, "groups: required"),
        ({"groups": [0, 0, 1, 1], "alpha": 0.1, "overall_alpha": 0.2}, "overall_alpha: only"),
        ({"groups": [0, 0, 1, 1], "alpha": 0.1, "mode": "x"}, "mode: must be one of"),
        ({"groups": [0, 0, 1, 1], "alpha": 0.1, "correction": "x"}, "correction: must be"),
        ({"groups": [0, 0, 1, 1], "alpha": 0.1, "n": 4}, "n: only used with counts"),
    ],
)
def test_bad_input_losses(kwargs: dict[str, Any], start: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(start)):
        learn_then_test_grouped(BASE, delta=0.1, order="descending", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "start"),
    [
        ({"counts": [[0, 1], [0, 0]], "n": [5, 0]}, "n: group 1 of counts has no rows"),
        ({"counts": [[0, 6], [0, 0]], "n": 5}, "counts: 6 losses at grid point 1 of group 0"),
        ({"counts": [[0, 1], [0, 0]], "n": [5, 5, 5]}, "n: got 3 sizes for 2 groups"),
        ({"counts": [[0, 1], [0, 0]], "n": [[5, 5]]}, "n: expected shape"),
        ({"counts": [[0, 1], [0, 0]], "n": 5, "groups": ["a", "a"]}, "groups: labels of the rows"),
        ({"counts": [[0, 1], [0, 0]], "n": 5, "groups": ["a"]}, "groups: length 1"),
        ({"counts": [[0, 1], [0, 0]]}, "n: required with counts"),
        ({"counts": [[0, 1], [0, 0]], "n": 5, "method": "wsr"}, "method: 'wsr'"),
        ({"counts": [[-1, 1], [0, 0]], "n": 5}, "counts:"),
        ({"counts": [[0, 1], [0, 0]], "n": 5, "losses": BASE}, "losses: give exactly one"),
    ],
)
def test_bad_input_counts(kwargs: dict[str, Any], start: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(start)):
        learn_then_test_grouped(alpha=0.1, delta=0.1, order="descending", **kwargs)


def test_bad_delta_and_order() -> None:
    with pytest.raises(ValueError, match=r"^delta:"):
        learn_then_test_grouped(BASE, groups=[0, 0, 1, 1], alpha=0.1, delta=1.5, order="descending")
    with pytest.raises(ValueError, match=r"^order: required"):
        learn_then_test_grouped(BASE, groups=[0, 0, 1, 1], alpha=0.1, delta=0.1)
    with pytest.raises(ValueError, match=r"^losses: the binomial p-value needs binary"):
        learn_then_test_grouped(
            BASE + 0.5, groups=[0, 0, 1, 1], alpha=0.1, delta=0.1, order="descending"
        )
