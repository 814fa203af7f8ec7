"""Tests for the ragged trajectory container and the verifier-score loader."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctd_stats.online.trajectories import Trajectories, load_verifier_scores

DATA_DIR = os.environ.get("CTD_STATS_DATA_DIR")
needs_data = pytest.mark.skipif(
    DATA_DIR is None, reason="CTD_STATS_DATA_DIR is not set (folder holding verifier_scores/)"
)


def _example() -> Trajectories:
    return Trajectories.from_arrays(
        [[0.9, 0.8, 0.7], [0.5], [0.6, 0.2]],
        [1, 0, 0],
        tokens=[[1, 2, 1], [4], [3, 1]],
        ids=["a", "b", "c"],
    )


def test_from_arrays_layout() -> None:
    tr = _example()
    assert tr.n_trajectories == 3 and tr.n_steps == 6
    np.testing.assert_array_equal(tr.offsets, [0, 3, 4, 6])
    np.testing.assert_array_equal(tr.lengths, [3, 1, 2])
    np.testing.assert_array_equal(tr.trajectory_index, [0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(tr.step_index, [0, 1, 2, 0, 0, 1])
    np.testing.assert_allclose(tr.minima, [0.7, 0.5, 0.2])
    np.testing.assert_allclose(tr.cumulative_weight_fraction, [0.25, 0.75, 1.0, 1.0, 0.75, 1.0])
    np.testing.assert_array_equal(tr.is_last_step, [0, 0, 1, 1, 0, 1])


def test_subset_and_prefixes() -> None:
    tr = _example()
    sub = tr.subset([2, 0])
    np.testing.assert_allclose(sub.scores, [0.6, 0.2, 0.9, 0.8, 0.7])
    np.testing.assert_array_equal(sub.labels, [0, 1])
    np.testing.assert_array_equal(sub.ids, ["c", "a"])
    np.testing.assert_allclose(sub.tokens, [3, 1, 1, 2, 1])  # type: ignore[arg-type]
    rows, x = tr.prefixes(2)
    np.testing.assert_array_equal(rows, [0, 2])
    np.testing.assert_allclose(x, [[0.9, 0.8], [0.6, 0.2]])
    assert tr.with_label(0).n_trajectories == 2
    np.testing.assert_allclose(tr.padded(-1.0)[1], [0.5, -1.0, -1.0])


def test_from_long_matches_from_arrays_with_shuffled_rows() -> None:
    ids = np.array(["x", "x", "y", "x", "z", "z"])
    steps = np.array([1, 2, 1, 3, 1, 2])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    labels = np.array([1, 1, 0, 1, 0, 0])
    perm = np.array([5, 3, 0, 2, 4, 1])
    tr = Trajectories.from_long(ids[perm], steps[perm], scores[perm], labels[perm])
    # order of first appearance in the shuffled rows: z, x, y
    np.testing.assert_array_equal(tr.ids, ["z", "x", "y"])
    np.testing.assert_allclose(tr.scores, [0.5, 0.6, 0.1, 0.2, 0.4, 0.3])
    np.testing.assert_array_equal(tr.labels, [0, 1, 0])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=6), min_size=1, max_size=8),
    st.integers(0, 2**31),
)
def test_long_format_row_order_does_not_matter(parts: list[list[float]], seed: int) -> None:
    ids = np.concatenate([[f"t{i}"] * len(p) for i, p in enumerate(parts)])
    steps = np.concatenate([np.arange(1, len(p) + 1) for p in parts])
    scores = np.concatenate([np.asarray(p, dtype=float) for p in parts])
    perm = np.random.default_rng(seed).permutation(len(scores))
    a = Trajectories.from_long(ids, steps, scores)
    b = Trajectories.from_long(ids[perm], steps[perm], scores[perm])
    assert a.ids is not None and b.ids is not None
    order = {k: i for i, k in enumerate(b.ids)}
    b_sorted = b.subset([order[k] for k in a.ids])
    np.testing.assert_array_equal(a.scores, b_sorted.scores)
    np.testing.assert_array_equal(a.offsets, b_sorted.offsets)
    ref = Trajectories.from_arrays(parts)
    np.testing.assert_array_equal(a.scores, ref.scores)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": [[0.1, np.nan]]}, "NaN"),
        ({"scores": [[0.1], []]}, "scores\\[1\\]"),
        ({"scores": [[0.1], [0.2]], "labels": [1]}, "labels"),
        ({"scores": [[0.1], [0.2]], "labels": [1, 2]}, "labels"),
        ({"scores": [[0.1], [0.2]], "tokens": [[1], [-1]]}, "tokens"),
        ({"scores": [[0.1], [0.2]], "tokens": [[1], [0]]}, "tokens"),
        ({"scores": [[0.1], [0.2]], "tokens": [[1, 2], [1]]}, "tokens"),
        ({"scores": []}, "scores"),
    ],
)
def test_from_arrays_rejects_bad_input(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Trajectories.from_arrays(**kwargs)  # type: ignore[arg-type]


def test_from_long_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        Trajectories.from_long(["a", "a"], [1, 2], [0.1, 0.2], [1, 0])
    with pytest.raises(ValueError, match="steps"):
        Trajectories.from_long(["a", "a"], [1, 3], [0.1, 0.2])
    with pytest.raises(ValueError, match="steps"):
        Trajectories.from_long(["a", "a"], [1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="scores"):
        Trajectories.from_long(["a", "a"], [1, 2], [0.1, np.nan])
    with pytest.raises(ValueError, match="scores"):
        Trajectories.from_long(["a", "a"], [1, 2], [0.1])
    with pytest.raises(ValueError, match="offsets"):
        Trajectories(scores=np.array([0.1, 0.2]), offsets=np.array([0, 0, 2]))
    with pytest.raises(ValueError, match="indices"):
        _example().subset([5])
    with pytest.raises(ValueError, match="labels are required"):
        Trajectories.from_arrays([[0.1]]).require_labels()


def test_load_refuses_junk_before_any_lookup() -> None:
    with pytest.raises(TypeError, match=r"^name: expected a str, got ndarray"):
        load_verifier_scores(np.array([]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^score_column: expected a str"):
        load_verifier_scores("math", score_column=["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^use_tokens: expected a bool"):
        load_verifier_scores("math", use_tokens=np.array([1, 2]))  # type: ignore[arg-type]


@needs_data
def test_load_math_file() -> None:
    tr = load_verifier_scores("math")
    # Sizes and solved rate from the data README.
    assert tr.n_trajectories == 5000
    assert tr.n_steps == 40190
    assert tr.labels is not None and abs(tr.labels.mean() - 0.572) < 0.001
    assert tr.tokens is not None and tr.ids is not None
    assert tr.ids[0] == "algebra_0"


@needs_data
def test_load_file_without_tokens() -> None:
    tr = load_verifier_scores("hotpotqa")
    assert tr.n_trajectories == 16110 and tr.n_steps == 75880
    assert tr.tokens is None
    np.testing.assert_array_equal(tr.weights[:3], [1.0, 1.0, 1.0])


def test_repr_is_compact() -> None:
    tr = Trajectories.from_arrays([[0.1 * (i % 9)] * (1 + i % 5) for i in range(500)], [1, 0] * 250)
    lines = repr(tr).splitlines()
    assert lines[0] == f"Trajectories(n=500, steps={tr.n_steps})" and len(lines) <= 6
    assert "250 correct, 250 incorrect" in lines[1]
