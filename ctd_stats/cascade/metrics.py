"""Probe–expert cascades: delegation values, score combination and cascade metrics (CTD §3, §5).

A cascade scores every input with a cheap probe p(x) ∈ [0, 1] and, for the inputs a delegation
policy routes to it, with an expensive expert e(x) ∈ [0, 1]. Labels are y ∈ {0, 1} (1 = unsafe /
high-stakes). This module holds the pieces that do not depend on *how* delegation is decided:

* the delegation value v(x, y) = P_e(y | x) − P_p(y | x) = (2y − 1)(e − p) (continuous, the
  paper's main target) or 1[probe wrong ∧ expert right] (binary variant, paper App. A), and the
  effective delegation capacity mean(v > 0);
* the cascade output s = e where delegated, p elsewhere (``"replace"``) or (p + e)/2 where delegated
  (``"average"``), its AUROC (ties count ½, as in the Mann–Whitney / rank formula), its accuracy
  at the 0.5 cut (prediction = s ≥ 0.5) and the realised budget = mean(delegated);
* :class:`CascadeTable`, a validated table of (probe, expert, DV score, label, group) rows that
  the sweep (:mod:`ctd_stats.cascade.sweeps`), the budget validation and the simulator exchange.

Everything is vectorised: a delegation mask may be one row (n,) or many rows (m, n) — one per
candidate threshold — and the metrics are then computed for every row at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .._repr import result_repr
from .._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
)

__all__ = [
    "MERGES",
    "VALUE_KINDS",
    "CascadeCurves",
    "CascadeMetrics",
    "CascadeTable",
    "Merge",
    "ValueKind",
    "accuracy",
    "auroc",
    "combine_scores",
    "delegation_capacity",
    "delegation_value",
    "evaluate_cascade",
    "evaluate_cascades",
    "realised_budget",
]

Merge = Literal["replace", "average"]
MERGES: Final[tuple[str, ...]] = ("replace", "average")
ValueKind = Literal["continuous", "binary"]
VALUE_KINDS: Final[tuple[str, ...]] = ("continuous", "binary")


def as_probabilities(value: ArrayLike, name: str, *, ndim: int | tuple[int, ...] = 1) -> FloatArray:
    """Scores that must be probabilities: finite, in [0, 1]."""
    return as_float_array(value, name, ndim=ndim, low=0.0, high=1.0)


def _mask(value: ArrayLike, name: str) -> BoolArray:
    """A delegation mask, shape (n,) or (m, n), of booleans or 0/1 numbers."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from None
    if arr.dtype == np.bool_:
        if arr.ndim not in (1, 2):
            raise ValueError(f"{name}: expected 1 or 2 dimension(s), got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"{name}: must not be empty")
        return arr
    return as_binary_array(value, name, ndim=(1, 2)).astype(bool)


def delegation_value(
    labels: ArrayLike, probe: ArrayLike, expert: ArrayLike, *, kind: ValueKind = "continuous"
) -> FloatArray:
    """Delegation value of each input: how much calling the expert helps (CTD paper §3).

    ``kind="continuous"`` (CTD paper Eq. 6): v = P_e(y|x) − P_p(y|x) = (2y − 1)(e − p) ∈ [−1, 1];
    v > 0 exactly when the expert's score is closer to the label than the probe's.
    ``kind="binary"`` (CTD paper App. A): v = 1[probe wrong ∧ expert right], with "right" meaning
    (score ≥ 0.5) == y.

    Raises ``ValueError`` for scores outside [0, 1], labels not in {0, 1} or length mismatches.
    """
    check_choice(kind, "kind", VALUE_KINDS)
    y = as_binary_array(labels, "labels")
    p = as_probabilities(probe, "probe")
    e = as_probabilities(expert, "expert")
    check_cascade_lengths(p, e, y)
    return delegation_value_unchecked(y, p, e, kind)


def delegation_value_unchecked(
    y: IntArray, p: FloatArray, e: FloatArray, kind: str = "continuous"
) -> FloatArray:
    """Kernel of :func:`delegation_value` (validated inputs)."""
    if kind == "continuous":
        out: FloatArray = (2.0 * y - 1.0) * (e - p)
        return out
    probe_right = (p >= 0.5).astype(np.int64) == y
    expert_right = (e >= 0.5).astype(np.int64) == y
    binary: FloatArray = (~probe_right & expert_right).astype(np.float64)
    return binary


def check_cascade_lengths(probe: FloatArray, expert: FloatArray, labels: IntArray) -> None:
    if expert.shape[-1] != probe.shape[-1]:
        raise ValueError(
            f"expert: length {expert.shape[-1]} does not match probe (length {probe.shape[-1]})"
        )
    if labels.shape[-1] != probe.shape[-1]:
        raise ValueError(
            f"labels: length {labels.shape[-1]} does not match probe (length {probe.shape[-1]})"
        )


def delegation_capacity(values: ArrayLike) -> float:
    """Effective delegation capacity: the fraction of inputs with positive delegation value.

    A budget beyond it necessarily delegates inputs on which the expert does not help.
    """
    v = as_float_array(values, "values", ndim=1)
    return float(np.mean(v > 0))


def combine_scores(
    probe: ArrayLike, expert: ArrayLike, delegated: ArrayLike, *, merge: Merge = "replace"
) -> FloatArray:
    """Cascade output: the expert's score where delegated, the probe's elsewhere.

    ``merge="average"`` uses (p + e)/2 on delegated inputs instead. ``delegated`` may be one mask
    (n,) or a stack of masks (m, n); the result has the mask's shape.
    """
    check_choice(merge, "merge", MERGES)
    p = as_probabilities(probe, "probe")
    e = as_probabilities(expert, "expert")
    d = _mask(delegated, "delegated")
    if e.size != p.size:
        raise ValueError(f"expert: length {e.size} does not match probe (length {p.size})")
    if d.shape[-1] != p.size:
        raise ValueError(f"delegated: length {d.shape[-1]} does not match probe (length {p.size})")
    other = e if merge == "replace" else 0.5 * (p + e)
    return np.where(d, other, p)


def _auroc_unchecked(y: IntArray, scores: FloatArray) -> FloatArray:
    """Rank-formula AUROC along the last axis (average ranks for ties); y (n,), scores (..., n)."""
    pos = y.astype(bool)
    n1 = int(pos.sum())
    n0 = y.size - n1
    ranks = stats.rankdata(scores, axis=-1, method="average")
    rank_sum = ranks[..., pos].sum(axis=-1)
    return np.asarray((rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0), dtype=np.float64)


def auroc(labels: ArrayLike, scores: ArrayLike) -> FloatArray:
    """Area under the ROC curve of ``scores`` for ``labels`` (rank / Mann–Whitney formula).

    AUROC = P(score of a random positive > score of a random negative) + ½ P(tie), computed from
    average ranks. ``scores`` may be (n,) (a 0-d array is returned) or (..., n) for many score
    vectors at once. Both classes must be present. Scores need not be probabilities.
    """
    y = as_binary_array(labels, "labels")
    s = as_float_array(scores, "scores", ndim=(1, 2, 3))
    if s.shape[-1] != y.size:
        raise ValueError(f"scores: length {s.shape[-1]} does not match labels (length {y.size})")
    n1 = int(y.sum())
    if n1 == 0 or n1 == y.size:
        raise ValueError("labels: AUROC needs both classes (0 and 1) to be present")
    return _auroc_unchecked(y, s)


def accuracy(labels: ArrayLike, scores: ArrayLike, *, threshold: float = 0.5) -> FloatArray:
    """Fraction of inputs with (score ≥ threshold) == label, along the last axis."""
    if isinstance(threshold, bool) or not isinstance(
        threshold, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"threshold: expected a number, got {type(threshold).__name__}")
    if threshold != threshold:
        raise ValueError("threshold: must not be NaN")
    y = as_binary_array(labels, "labels")
    s = as_float_array(scores, "scores", ndim=(1, 2, 3))
    if s.shape[-1] != y.size:
        raise ValueError(f"scores: length {s.shape[-1]} does not match labels (length {y.size})")
    return np.asarray(np.mean((s >= threshold) == y.astype(bool), axis=-1), dtype=np.float64)


def realised_budget(delegated: ArrayLike) -> FloatArray:
    """Fraction of inputs delegated, along the last axis (the empirical budget risk R_B)."""
    d = _mask(delegated, "delegated")
    return np.asarray(d.mean(axis=-1), dtype=np.float64)


@dataclass(frozen=True)
class CascadeMetrics:
    """Metrics of one cascade on one evaluation set.

    Attributes
    ----------
    auroc
        AUROC of the cascade output (ties count ½).
    accuracy
        Accuracy of the prediction s ≥ 0.5.
    budget
        Realised budget: fraction of inputs delegated.
    mean_value
        Mean delegation value v of the delegated inputs (NaN if none is delegated).
    """

    auroc: float
    accuracy: float
    budget: float
    mean_value: float

    def __repr__(self) -> str:
        head = f"auroc={self.auroc:.4f}, accuracy={self.accuracy:.4f}, budget={self.budget:.4f}"
        return result_repr(self, head, ["mean_value"])


@dataclass(frozen=True)
class CascadeCurves:
    """Metrics of m cascades (one per delegation mask) on the same evaluation set, shape (m,)."""

    auroc: FloatArray
    accuracy: FloatArray
    budget: FloatArray
    mean_value: FloatArray

    def __repr__(self) -> str:
        fields = ["budget", "auroc", "accuracy", "mean_value"]
        return result_repr(self, f"n_cascades={self.auroc.size}", fields)


def evaluate_cascades(
    labels: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    delegated: ArrayLike,
    *,
    merge: Merge = "replace",
) -> CascadeCurves:
    """AUROC, accuracy, budget and mean delegated v for a stack of masks (m, n) at once."""
    check_choice(merge, "merge", MERGES)
    y = as_binary_array(labels, "labels")
    p = as_probabilities(probe, "probe")
    e = as_probabilities(expert, "expert")
    check_cascade_lengths(p, e, y)
    d = _mask(delegated, "delegated")
    if d.shape[-1] != p.size:
        raise ValueError(f"delegated: length {d.shape[-1]} does not match probe (length {p.size})")
    check_both_classes(y)
    return evaluate_unchecked(y, p, e, d[None, :] if d.ndim == 1 else d, merge)


def check_both_classes(y: IntArray) -> None:
    n1 = int(y.sum())
    if n1 == 0 or n1 == y.size:
        raise ValueError("labels: AUROC needs both classes (0 and 1) to be present")


def evaluate_unchecked(
    y: IntArray, p: FloatArray, e: FloatArray, d2: BoolArray, merge: str
) -> CascadeCurves:
    """Kernel of :func:`evaluate_cascades`: validated inputs, masks (m, n), both classes."""
    other = e if merge == "replace" else 0.5 * (p + e)
    s = np.where(d2, other, p)
    v = (2.0 * y - 1.0) * (e - p)
    k = d2.sum(axis=-1)
    vsum = (d2 * v).sum(axis=-1)
    mean_v = np.full(k.shape, np.nan)
    np.divide(vsum, k, out=mean_v, where=k > 0)
    return CascadeCurves(
        auroc=_auroc_unchecked(y, s),
        accuracy=np.asarray(np.mean((s >= 0.5) == y.astype(bool), axis=-1), dtype=np.float64),
        budget=np.asarray(d2.mean(axis=-1), dtype=np.float64),
        mean_value=mean_v,
    )


def metrics_at(curves: CascadeCurves, i: int = 0) -> CascadeMetrics:
    return CascadeMetrics(
        auroc=float(curves.auroc[i]),
        accuracy=float(curves.accuracy[i]),
        budget=float(curves.budget[i]),
        mean_value=float(curves.mean_value[i]),
    )


def evaluate_cascade(
    labels: ArrayLike,
    probe: ArrayLike,
    expert: ArrayLike,
    delegated: ArrayLike,
    *,
    merge: Merge = "replace",
) -> CascadeMetrics:
    """AUROC, accuracy, realised budget and mean delegated v of one cascade (mask shape (n,))."""
    d = _mask(delegated, "delegated")
    if d.ndim != 1:
        raise ValueError(f"delegated: expected one mask of shape (n,), got shape {d.shape}")
    return metrics_at(evaluate_cascades(labels, probe, expert, d, merge=merge))


@dataclass(frozen=True)
class CascadeTable:
    """A validated table of cascade scores, one row per input.

    Build it with :meth:`from_arrays` (which checks everything); the fields are then trusted.

    Attributes
    ----------
    probe, expert
        Probe and expert scores P(y = 1 | x) in [0, 1].
    dv
        Delegation-value score d(x) (any real number; higher = delegate first).
    labels
        0/1 labels.
    groups
        Group label of each row (strings); all rows share one group ``"all"`` if none is given.
    """

    probe: FloatArray
    expert: FloatArray
    dv: FloatArray
    labels: IntArray
    groups: np.ndarray

    @classmethod
    def from_arrays(
        cls,
        *,
        probe: ArrayLike,
        expert: ArrayLike,
        dv: ArrayLike,
        labels: ArrayLike,
        groups: ArrayLike | None = None,
    ) -> CascadeTable:
        """Check and store the columns (equal lengths, probabilities in [0, 1], 0/1 labels)."""
        p = as_probabilities(probe, "probe")
        e = as_probabilities(expert, "expert")
        d = as_float_array(dv, "dv", ndim=1)
        y = as_binary_array(labels, "labels")
        check_cascade_lengths(p, e, y)
        if d.size != p.size:
            raise ValueError(f"dv: length {d.size} does not match probe (length {p.size})")
        if groups is None:
            g = np.full(p.size, "all", dtype=object)
        else:
            g = np.asarray(groups).astype(str).astype(object)
            if g.ndim != 1 or g.size != p.size:
                raise ValueError(
                    f"groups: expected shape ({p.size},) matching probe, got {np.shape(groups)}"
                )
        return cls(probe=p, expert=e, dv=d, labels=y, groups=g)

    @property
    def n(self) -> int:
        return int(self.probe.size)

    def __repr__(self) -> str:
        groups = sorted(set(self.groups.tolist()))
        shown = ", ".join(groups[:6]) + (", ..." if len(groups) > 6 else "")
        head = f"n={self.n}, n_positive={int(self.labels.sum())}, n_groups={len(groups)}"
        return result_repr(self, head, [("groups", shown), "probe", "expert", "dv"])

    def values(self, *, kind: ValueKind = "continuous") -> FloatArray:
        """The true delegation values v of every row (see :func:`delegation_value`)."""
        check_choice(kind, "kind", VALUE_KINDS)
        return delegation_value_unchecked(self.labels, self.probe, self.expert, kind)

    def take(self, index: ArrayLike) -> CascadeTable:
        """The rows at ``index`` (an integer index array), as a new table."""
        idx = np.asarray(index, dtype=np.int64)
        return CascadeTable(
            probe=self.probe[idx],
            expert=self.expert[idx],
            dv=self.dv[idx],
            labels=self.labels[idx],
            groups=self.groups[idx],
        )
