"""Tests of ctd_stats.cascade: delegation values, score combination, AUROC, accuracy, budget."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctd_stats.cascade.metrics import (
    CascadeTable,
    accuracy,
    auroc,
    combine_scores,
    delegation_capacity,
    delegation_value,
    evaluate_cascade,
    evaluate_cascades,
    realised_budget,
)


def brute_force_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos = scores[labels == 1]
    neg = scores[labels == 0]
    wins = sum(float(p > q) + 0.5 * float(p == q) for p in pos for q in neg)
    return wins / (pos.size * neg.size)


@st.composite
def labelled_scores(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(min_value=2, max_value=40))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    labels[0], labels[1] = 0, 1  # both classes present
    # few distinct values so that ties are frequent
    scores = np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))) / 5.0
    return labels, scores


@given(labelled_scores())
def test_auroc_matches_pairwise_count(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = data
    assert float(auroc(labels, scores)) == pytest.approx(brute_force_auroc(labels, scores))


@given(labelled_scores(), st.integers(1, 4))
def test_auroc_rows_match_single_calls(data: tuple[np.ndarray, np.ndarray], m: int) -> None:
    labels, scores = data
    rng = np.random.default_rng(m)
    stack = np.stack([scores] + [rng.permutation(scores) for _ in range(m)])
    rows = auroc(labels, stack)
    assert rows.shape == (m + 1,)
    for i in range(m + 1):
        assert rows[i] == pytest.approx(brute_force_auroc(labels, stack[i]))


def test_auroc_extremes() -> None:
    y = np.array([0, 0, 1, 1])
    assert float(auroc(y, [0.1, 0.2, 0.8, 0.9])) == 1.0
    assert float(auroc(y, [0.9, 0.8, 0.2, 0.1])) == 0.0
    assert float(auroc(y, [0.5, 0.5, 0.5, 0.5])) == 0.5


probabilities = st.floats(0.0, 1.0, allow_nan=False)


@given(
    st.lists(st.tuples(probabilities, probabilities, st.integers(0, 1)), min_size=1, max_size=50)
)
def test_delegation_value_properties(rows: list[tuple[float, float, int]]) -> None:
    p, e, y = (np.array(c) for c in zip(*rows, strict=True))
    v = delegation_value(y, p, e)
    assert np.all(v >= -1.0) and np.all(v <= 1.0)
    # sign of v = who is closer to the label: positive iff the expert is strictly closer
    closer = np.abs(p - y) - np.abs(e - y)
    clear = np.abs(closer) > 1e-12  # the oracle itself rounds away subnormal differences
    assert np.array_equal(np.sign(v[clear]), np.sign(closer[clear]))
    vb = delegation_value(y, p, e, kind="binary")
    probe_wrong = (p >= 0.5) != (y == 1)
    expert_right = (e >= 0.5) == (y == 1)
    assert np.array_equal(vb == 1.0, probe_wrong & expert_right)
    assert set(np.unique(vb)) <= {0.0, 1.0}
    assert delegation_capacity(v) == pytest.approx(np.mean(v > 0))
    assert np.all((v > 0)[clear] == (closer > 0)[clear])


def test_delegation_value_hand_example() -> None:
    # label 1: expert 0.9 vs probe 0.2 → +0.7; label 0: probe 0.1 vs expert 0.8 → −0.7
    v = delegation_value([1, 0], [0.2, 0.1], [0.9, 0.8])
    assert np.allclose(v, [0.7, -0.7])
    assert delegation_capacity(v) == 0.5


def test_combine_and_metrics() -> None:
    p = np.array([0.2, 0.6, 0.4, 0.9])
    e = np.array([0.8, 0.1, 0.6, 1.0])
    y = np.array([1, 0, 1, 1])
    d = np.array([True, False, True, False])
    assert np.allclose(combine_scores(p, e, d), [0.8, 0.6, 0.6, 0.9])
    assert np.allclose(combine_scores(p, e, d, merge="average"), [0.5, 0.6, 0.5, 0.9])
    m = evaluate_cascade(y, p, e, d)
    # s = [0.8, 0.6, 0.6, 0.9]: predictions [1, 1, 1, 1] → 3 of 4 right
    assert m.accuracy == 0.75
    assert m.budget == 0.5
    # delegated v: (0.8 − 0.2) and (0.6 − 0.4)
    assert m.mean_value == pytest.approx(0.4)
    assert m.auroc == pytest.approx(brute_force_auroc(y, np.array([0.8, 0.6, 0.6, 0.9])))
    none = evaluate_cascade(y, p, e, np.zeros(4, dtype=bool))
    assert np.isnan(none.mean_value) and none.budget == 0.0
    # probe predictions [0, 1, 0, 1] vs labels [1, 0, 1, 1]: only the last is right
    assert float(accuracy(y, p)) == 0.25
    assert np.allclose(realised_budget(np.array([[1, 0, 0, 0], [1, 1, 1, 1]])), [0.25, 1.0])


def test_evaluate_cascades_stack_matches_single() -> None:
    rng = np.random.default_rng(0)
    p, e = rng.random(50), rng.random(50)
    y = (rng.random(50) < 0.5).astype(int)
    masks = rng.random((5, 50)) < 0.3
    c = evaluate_cascades(y, p, e, masks)
    for i in range(5):
        one = evaluate_cascade(y, p, e, masks[i])
        assert (c.auroc[i], c.accuracy[i], c.budget[i]) == pytest.approx(
            (one.auroc, one.accuracy, one.budget)
        )


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="expert"):
        delegation_value([0, 1], [0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match="labels"):
        delegation_value([0, 2], [0.1, 0.2], [0.3, 0.4])
    with pytest.raises(ValueError, match="probe"):
        delegation_value([0, 1], [1.2, 0.2], [0.3, 0.4])
    with pytest.raises(ValueError, match="expert"):
        delegation_value([0, 1], [0.1, 0.2], [-0.3, 0.4])
    with pytest.raises(ValueError, match="probe"):
        delegation_value([0, 1], [np.nan, 0.2], [0.3, 0.4])
    with pytest.raises(ValueError, match="kind"):
        delegation_value([1], [0.1], [0.2], kind="ternary")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        auroc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="scores"):
        auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="delegated"):
        combine_scores([0.1, 0.2], [0.3, 0.4], [True])
    with pytest.raises(ValueError, match="delegated"):
        combine_scores([0.1, 0.2], [0.3, 0.4], [0, 2])
    with pytest.raises(ValueError, match="merge"):
        combine_scores([0.1], [0.3], [True], merge="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delegated"):
        evaluate_cascade([0, 1], [0.1, 0.9], [0.3, 0.4], [[True, False]])
    with pytest.raises(ValueError, match="dv"):
        CascadeTable.from_arrays(probe=[0.1, 0.2], expert=[0.3, 0.4], dv=[1.0], labels=[0, 1])
    with pytest.raises(ValueError, match="groups"):
        CascadeTable.from_arrays(
            probe=[0.1, 0.2], expert=[0.3, 0.4], dv=[1.0, 2.0], labels=[0, 1], groups=["a"]
        )
    with pytest.raises(ValueError, match="probe"):
        CascadeTable.from_arrays(probe=[], expert=[], dv=[], labels=[])


def test_table_take_and_values() -> None:
    t = CascadeTable.from_arrays(
        probe=[0.2, 0.1, 0.7],
        expert=[0.9, 0.8, 0.7],
        dv=[1.0, -1.0, 0.0],
        labels=[1, 0, 1],
        groups=["a", "b", "a"],
    )
    sub = t.take([2, 0])
    assert sub.n == 2 and list(sub.groups) == ["a", "a"]
    assert np.allclose(t.values(), [0.7, -0.7, 0.0])


def test_ragged_masks_and_junk_thresholds_are_named() -> None:
    with pytest.raises(ValueError, match=r"^delegated: cannot be read as an array"):
        realised_budget([[0, 1, 1], [1, 1], [1]])
    with pytest.raises(ValueError, match=r"^delegated: cannot be read as an array"):
        evaluate_cascade([0, 1], [0.2, 0.8], [0.1, 0.9], [[0, 1], [1]])
    with pytest.raises(TypeError, match=r"^threshold: expected a number"):
        accuracy([0, 1], [0.2, 0.8], threshold=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^threshold: must not be NaN"):
        accuracy([0, 1], [0.2, 0.8], threshold=float("nan"))


def test_method_names_are_one_scheme_with_derived_labels() -> None:
    from ctd_stats.cascade import METHOD_NAMES
    from ctd_stats.cascade.budget_validation import VALIDATION_METHODS
    from ctd_stats.cascade.calibration import CALIBRATED_METHODS
    from ctd_stats.cascade.protocol import METHOD_LABELS

    names = set(METHOD_NAMES) | set(CALIBRATED_METHODS) | set(VALIDATION_METHODS)
    assert names == set(METHOD_LABELS)
    assert all(n.isidentifier() and n == n.lower() for n in names)  # snake_case codes
    assert METHOD_LABELS["budget_only"] == "Budget-only LTT" and METHOD_LABELS["ctd"] == "CTD"
