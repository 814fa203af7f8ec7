"""A ragged container for monitored trajectories (step scores, token weights, labels).

A trajectory i has verifier step scores s_{i,1..T_i} (higher = safer), optional per-step token
counts w_{i,t} ≥ 0, and a label y_i (1 = correct / safe = the null hypothesis, 0 = incorrect /
unsafe). :class:`Trajectories` stores all steps CONCATENATED in one float array plus an
``offsets`` array (trajectory i owns ``scores[offsets[i]:offsets[i + 1]]``), so every per-step
computation is one vectorised numpy call and nothing is padded unless asked for.

Constructors validate: no NaN or infinite score, no empty trajectory, a constant label within a
trajectory (long format), contiguous steps (long format), nonnegative token counts with a
positive total per trajectory (the detection delay divides by it).
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._repr import result_repr
from .._validation import as_binary_array, as_float_array, as_int_array, check_same_length, plain
from ..datasets import data_path
from ..typing import BoolArray, FloatArray, IntArray

__all__ = [
    "VERIFIER_SCORE_FILES",
    "Trajectories",
    "load_verifier_scores",
]

#: Short names of the verifier-score reference files (see ``ctd_stats.datasets``).
VERIFIER_SCORE_FILES: dict[str, str] = {
    "math": "verifier_scores/math_w_scores_compressed.csv.gz",
    "gsm8k": "verifier_scores/gsm8k_w_scores_compressed.csv.gz",
    "hotpotqa": "verifier_scores/hotpotqa_w_scores_compressed.csv.gz",
    "mmlupro": "verifier_scores/mmlupro_w_scores_compressed.csv.gz",
    "chessgames": "verifier_scores/chessgames_w_scores_compressed.csv.gz",
}


@dataclass(frozen=True, eq=False)
class Trajectories:
    """Ragged trajectories: concatenated step scores plus offsets.

    Build with :meth:`from_arrays`, :meth:`from_long` or :func:`load_verifier_scores`; the
    direct constructor validates too.

    Attributes
    ----------
    scores
        (N,) float64, all steps of all trajectories concatenated in trajectory order.
    offsets
        (n + 1,) int64, ``offsets[0] == 0``, strictly increasing, ``offsets[-1] == N``.
    labels
        (n,) int64 in {0, 1} (1 = correct = null) or ``None`` when unlabelled (deployment).
    tokens
        (N,) float64 token weights per step, or ``None`` (unit weights).
    ids
        (n,) trajectory identifiers (strings) or ``None``.
    """

    scores: FloatArray
    offsets: IntArray
    labels: IntArray | None = None
    tokens: FloatArray | None = None
    ids: NDArray[np.str_] | None = None

    def __repr__(self) -> str:
        labels = self.labels
        lab = "unlabelled" if labels is None else f"{int(labels.sum())} correct, "
        lab += "" if labels is None else f"{len(labels) - int(labels.sum())} incorrect"
        return result_repr(
            "Trajectories",
            f"n={self.n_trajectories}, steps={self.n_steps}",
            [
                ("labels", lab),
                ("lengths", self.lengths),
                ("scores", self.scores),
                ("tokens", None if self.tokens is None else "per-step token weights"),
            ],
        )

    def __post_init__(self) -> None:
        scores = as_float_array(self.scores, "scores", ndim=1)
        offsets = as_int_array(self.offsets, "offsets", ndim=1)
        if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(scores):
            raise ValueError(
                "offsets: must start at 0, end at len(scores) and hold at least one trajectory"
            )
        if np.any(np.diff(offsets) <= 0):
            raise ValueError("offsets: every trajectory must have at least one step (no empty)")
        n = len(offsets) - 1
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "offsets", offsets)
        if self.labels is not None:
            labels = as_binary_array(self.labels, "labels")
            if len(labels) != n:
                raise ValueError(f"labels: length {len(labels)} does not match {n} trajectories")
            object.__setattr__(self, "labels", labels)
        if self.tokens is not None:
            tokens = as_float_array(self.tokens, "tokens", ndim=1, low=0.0)
            check_same_length("scores", scores, "tokens", tokens)
            totals = np.add.reduceat(tokens, offsets[:-1])
            if np.any(totals <= 0):
                bad = int(np.flatnonzero(totals <= 0)[0])
                raise ValueError(f"tokens: trajectory {bad} has a total token count of 0")
            object.__setattr__(self, "tokens", tokens)
        if self.ids is not None:
            ids = np.asarray(self.ids).astype(str)
            if ids.ndim != 1 or len(ids) != n:
                raise ValueError(f"ids: expected {n} identifiers, got shape {ids.shape}")
            object.__setattr__(self, "ids", ids)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        scores: Sequence[ArrayLike],
        labels: ArrayLike | None = None,
        *,
        tokens: Sequence[ArrayLike] | None = None,
        ids: Sequence[str] | None = None,
    ) -> Trajectories:
        """Build from a list of per-trajectory score arrays (and optional token arrays)."""
        if isinstance(scores, np.ndarray) and scores.ndim == 2:
            parts = [np.asarray(row, dtype=np.float64) for row in scores]
        else:
            if len(scores) == 0:
                raise ValueError("scores: must hold at least one trajectory")
            parts = [as_float_array(s, f"scores[{i}]", ndim=1) for i, s in enumerate(scores)]
        lengths = np.array([len(p) for p in parts], dtype=np.int64)
        if len(lengths) == 0:
            raise ValueError("scores: must hold at least one trajectory")
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat_tokens: FloatArray | None = None
        if tokens is not None:
            if len(tokens) != len(parts):
                raise ValueError(f"tokens: {len(tokens)} arrays for {len(parts)} trajectories")
            tparts = [as_float_array(t, f"tokens[{i}]", ndim=1) for i, t in enumerate(tokens)]
            for i, (t, s) in enumerate(zip(tparts, parts, strict=True)):
                if len(t) != len(s):
                    raise ValueError(f"tokens[{i}]: length {len(t)} does not match {len(s)} steps")
            flat_tokens = np.concatenate(tparts)
        return cls(
            scores=np.concatenate(parts),
            offsets=offsets,
            labels=None if labels is None else np.asarray(labels),
            tokens=flat_tokens,
            ids=None if ids is None else np.asarray(ids).astype(str),
        )

    @classmethod
    def from_long(
        cls,
        trajectory_ids: ArrayLike,
        steps: ArrayLike,
        scores: ArrayLike,
        labels: ArrayLike | None = None,
        *,
        tokens: ArrayLike | None = None,
    ) -> Trajectories:
        """Build from long-format columns, one row per (trajectory, step).

        Rows may come in any order. Trajectories keep the order of their first appearance
        (so a seeded split by trajectory reproduces a split of ``df[id].unique()``); steps are
        sorted within a trajectory and must be contiguous integers (no gap, no duplicate).
        ``labels`` (per row) must be constant within a trajectory.
        """
        tid = np.asarray(trajectory_ids)
        if tid.ndim != 1 or len(tid) == 0:
            raise ValueError("trajectory_ids: expected a non-empty 1-d array")
        step = as_int_array(steps, "steps", ndim=1)
        score = as_float_array(scores, "scores", ndim=1)
        check_same_length("trajectory_ids", tid, "steps", step)
        check_same_length("trajectory_ids", tid, "scores", score)
        uniq, first, inverse = np.unique(tid, return_index=True, return_inverse=True)
        appearance = np.argsort(first, kind="stable")  # unique index -> appearance order
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[appearance] = np.arange(len(uniq))
        traj = rank[inverse.reshape(-1)]
        order = np.lexsort((step, traj))
        traj_sorted, step_sorted = traj[order], step[order]
        same = traj_sorted[1:] == traj_sorted[:-1]
        if np.any(step_sorted[1:][same] != step_sorted[:-1][same] + 1):
            pos = int(np.flatnonzero(step_sorted[1:][same] != step_sorted[:-1][same] + 1)[0])
            bad = uniq[appearance][traj_sorted[1:][same][pos]]
            raise ValueError(
                f"steps: trajectory {plain(bad)} has non-contiguous or duplicate steps"
            )
        counts = np.bincount(traj_sorted, minlength=len(uniq))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        traj_labels: IntArray | None = None
        if labels is not None:
            lab = as_binary_array(labels, "labels")
            check_same_length("trajectory_ids", tid, "labels", lab)
            lab_sorted = lab[order]
            lo = np.minimum.reduceat(lab_sorted, offsets[:-1])
            hi = np.maximum.reduceat(lab_sorted, offsets[:-1])
            if np.any(lo != hi):
                bad = uniq[appearance][int(np.flatnonzero(lo != hi)[0])]
                raise ValueError(f"labels: trajectory {plain(bad)} has more than one label")
            traj_labels = lo
        flat_tokens: FloatArray | None = None
        if tokens is not None:
            tok = as_float_array(tokens, "tokens", ndim=1, low=0.0)
            check_same_length("trajectory_ids", tid, "tokens", tok)
            flat_tokens = tok[order]
        return cls(
            scores=score[order],
            offsets=offsets,
            labels=traj_labels,
            tokens=flat_tokens,
            ids=uniq[appearance].astype(str),
        )

    # ------------------------------------------------------------------ shape
    @property
    def n_trajectories(self) -> int:
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return self.n_trajectories

    @property
    def n_steps(self) -> int:
        """Total number of steps N (all trajectories)."""
        return len(self.scores)

    @cached_property
    def lengths(self) -> IntArray:
        """(n,) number of steps T_i of each trajectory."""
        return np.diff(self.offsets)

    @cached_property
    def trajectory_index(self) -> IntArray:
        """(N,) index of the trajectory each step belongs to."""
        return np.repeat(np.arange(self.n_trajectories, dtype=np.int64), self.lengths)

    @cached_property
    def step_index(self) -> IntArray:
        """(N,) 0-based position of each step within its trajectory."""
        return np.arange(self.n_steps, dtype=np.int64) - np.repeat(self.offsets[:-1], self.lengths)

    @cached_property
    def is_last_step(self) -> BoolArray:
        """(N,) True at the final step of each trajectory."""
        last = np.zeros(self.n_steps, dtype=bool)
        last[self.offsets[1:] - 1] = True
        return last

    @cached_property
    def minima(self) -> FloatArray:
        """(n,) minimum step score m_i = min_t s_{i,t}: a threshold monitor alarms iff m_i < λ."""
        return np.minimum.reduceat(self.scores, self.offsets[:-1])

    @cached_property
    def weights(self) -> FloatArray:
        """(N,) token weights (ones when no tokens were given)."""
        if self.tokens is not None:
            return self.tokens
        return np.ones(self.n_steps, dtype=np.float64)

    @cached_property
    def cumulative_weight_fraction(self) -> FloatArray:
        """(N,) fraction of the trajectory's tokens up to and including each step."""
        w = self.weights
        csum = np.cumsum(w)
        start = np.concatenate([[0.0], csum[self.offsets[1:-1] - 1]])
        within = csum - np.repeat(start, self.lengths)
        totals: FloatArray = np.add.reduceat(w, self.offsets[:-1])
        out: FloatArray = within / np.repeat(totals, self.lengths)
        return out

    def padded(self, fill: float = np.inf) -> FloatArray:
        """(n, max T) score matrix, positions past T_i filled with ``fill``."""
        out = np.full((self.n_trajectories, int(self.lengths.max())), fill, dtype=np.float64)
        out[self.trajectory_index, self.step_index] = self.scores
        return out

    def prefixes(self, t: int) -> tuple[IntArray, FloatArray]:
        """Trajectories that reach step ``t`` (1-based) and their first ``t`` scores.

        Returns ``(rows, X)`` with ``rows`` the trajectory indices and ``X`` of shape
        (len(rows), t).
        """
        if t < 1:
            raise ValueError(f"t: must be >= 1, got {t}")
        rows = np.flatnonzero(self.lengths >= t)
        cols = self.offsets[rows][:, None] + np.arange(t)[None, :]
        return rows, self.scores[cols]

    def require_labels(self, name: str = "trajectories") -> IntArray:
        """The labels, or a ``ValueError`` naming ``name`` when there are none."""
        if self.labels is None:
            raise ValueError(f"{name}: labels are required (1 = correct, 0 = incorrect)")
        return self.labels

    # ------------------------------------------------------------------ selection
    def subset(self, indices: ArrayLike) -> Trajectories:
        """The trajectories at ``indices`` (integer indices or a boolean mask), in that order."""
        idx = np.asarray(indices)
        if idx.dtype == np.bool_:
            if idx.shape != (self.n_trajectories,):
                raise ValueError(f"indices: boolean mask must have shape ({self.n_trajectories},)")
            idx = np.flatnonzero(idx)
        idx = as_int_array(idx, "indices", ndim=1, low=0, high=self.n_trajectories - 1)
        if len(idx) == 0:
            raise ValueError("indices: must select at least one trajectory")
        lengths = self.lengths[idx]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        steps = np.repeat(self.offsets[idx], lengths) + (
            np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], lengths)
        )
        return Trajectories(
            scores=self.scores[steps],
            offsets=offsets,
            labels=None if self.labels is None else self.labels[idx],
            tokens=None if self.tokens is None else self.tokens[steps],
            ids=None if self.ids is None else self.ids[idx],
        )

    def with_label(self, label: int) -> Trajectories:
        """Only the trajectories with this label (1 = correct, 0 = incorrect)."""
        labels = self.require_labels()
        mask = labels == label
        if not mask.any():
            raise ValueError(f"trajectories: no trajectory has label {label}")
        return self.subset(mask)


def check_trajectories(value: object, name: str = "trajectories") -> Trajectories:
    """``value`` itself if it is a :class:`Trajectories`, else a ``TypeError`` naming ``name``."""
    if not isinstance(value, Trajectories):
        raise TypeError(f"{name}: expected a Trajectories, got {type(value).__name__}")
    return value


def _parse_bool_column(values: list[str], name: str) -> IntArray:
    mapping = {"1": 1, "0": 0, "true": 1, "false": 0, "1.0": 1, "0.0": 0}
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        key = v.strip().lower()
        if key not in mapping:
            raise ValueError(f"{name}: cannot read {plain(v)} as a 0/1 label")
        out[i] = mapping[key]
    return out


def load_verifier_scores(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    score_column: str = "judge_probability",
    use_tokens: bool = True,
) -> Trajectories:
    """Load a ``verifier_scores/*`` reference file as :class:`Trajectories`.

    ``name`` is a short name (``"math"``, ``"gsm8k"``, ``"hotpotqa"``, ``"mmlupro"``,
    ``"chessgames"``) or a registry key. The file is located (and its sha256 checked) by
    :func:`ctd_stats.datasets.data_path`; set ``CTD_STATS_DATA_DIR`` or pass ``data_dir`` to read a
    local copy. Columns: ``uq_problem_idx`` (trajectory), ``num_steps`` (1-based step),
    ``score_column`` (verifier score), ``solved`` (label, 1 = correct) and, when present and
    ``use_tokens``, ``generated_tokens`` (token weights). Trajectories keep file order.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    if not isinstance(score_column, str):
        raise TypeError(f"score_column: expected a str, got {type(score_column).__name__}")
    if not isinstance(use_tokens, (bool, np.bool_)):
        raise TypeError(f"use_tokens: expected a bool, got {type(use_tokens).__name__}")
    key = VERIFIER_SCORE_FILES.get(name, name)
    path = data_path(key, data_dir=data_dir)
    with gzip.open(path, "rt", newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    col = {c: i for i, c in enumerate(header)}
    for needed in ("uq_problem_idx", "num_steps", score_column, "solved"):
        if needed not in col:
            raise ValueError(f"name: file {key} has no column {plain(needed)} (columns: {header})")

    def column(c: str) -> list[str]:
        j = col[c]
        return [r[j] for r in rows]

    tokens: Any = None
    if use_tokens and "generated_tokens" in col:
        tokens = np.array(column("generated_tokens"), dtype=np.float64)
    try:
        raw_scores = np.array(column(score_column), dtype=np.float64)
    except ValueError:
        raise ValueError(f"score_column: column {score_column!r} of {key} is not numeric") from None
    scores = as_float_array(raw_scores, "score_column", ndim=1)  # no NaN or infinite score
    return Trajectories.from_long(
        np.array(column("uq_problem_idx")),
        np.array(column("num_steps"), dtype=np.float64),
        scores,
        _parse_bool_column(column("solved"), "solved"),
        tokens=tokens,
    )
