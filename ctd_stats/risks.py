"""Conditional risks of a thresholded score, each with its own sample size per threshold.

A binary decision "flag (or delegate) iff score > λ" has risks that average over a subset of the
inputs which itself depends on λ (the effective sample of MAPIE's binary risks):

======================  ===========================================  ==========================
``risk``                loss of a row (an error event)               rows that count (``where``)
======================  ===========================================  ==========================
``"precision"``         flagged and truly negative (1 − precision)   flagged: score > λ
``"recall"``/``"fnr"``  truly positive and not flagged (1 − recall)  truly positive: label 1
``"fpr"``               truly negative and flagged                   truly negative: label 0
``"selective_error"``   the weak verdict is wrong (``labels`` = 1)   kept: score ≤ λ
======================  ===========================================  ==========================

For every grid point λ_j the risk is R(λ_j) = P(loss | row counts), estimated by k_j / n_j with
k_j the losses among the n_j rows that count. Learn-then-Test certifies it with
``learn_then_test(counts=k, n=n, ...)`` or ``learn_then_test(losses, where=where, ...)``: whether
a row counts depends on that row alone (its score and label), so given the selected rows their
losses are i.i.d. Bernoulli(R(λ_j)) and the binomial p-value P(Bin(n_j, α) ≤ k_j) is valid
conditionally on n_j, hence unconditionally (LTT paper, Angelopoulos et al. 2022, Sec. 3; the
conditional form of selective risk is Geifman & El-Yaniv 2017, Sec. 3).

The natural testing order (``order``) lists the grid from the point expected to have the lowest
risk to the highest, fixed before seeing the data: flag least first for precision and the
false-positive rate, flag most first for recall, keep least first for selective error. For
precision and selective error that first point has almost no rows (n_j ≈ 0), so a fixed sequence
in this order stops at once; use Holm/Bonferroni, fallback, or a split fixed sequence
(:func:`~ctd_stats.ltt.learn_then_test`). Never pick the order or its direction from the rows
being tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._ltt_result import LTTResult
from ._repr import result_repr
from ._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_grid,
    check_same_length,
)
from .conditional_pvalues import count_pvalues
from .ltt import LTTProcedure, decide, learn_then_test, options_iv
from .pvalues import PValueMethod

__all__ = ["CONDITIONAL_RISKS", "ConditionalRisk", "ConditionalRiskName", "conditional_risk"]

ConditionalRiskName = Literal["precision", "recall", "fnr", "fpr", "selective_error"]
CONDITIONAL_RISKS: Final[tuple[str, ...]] = (
    "precision",
    "recall",
    "fnr",
    "fpr",
    "selective_error",
)
# Most conservative grid point first: the one expected to have the lowest risk.
_DESCENDING: Final = frozenset({"precision", "fpr"})

_UNSIGNED: Final = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_GUESS_MIN_ROWS: Final = 2048  # below it a binary search per score is as fast (measured)

_RULES: Final[dict[str, str]] = {
    "precision": "loss: flagged (score > λ) and label 0; counts: flagged",
    "recall": "loss: label 1 and not flagged (score <= λ); counts: label 1",
    "fnr": "loss: label 1 and not flagged (score <= λ); counts: label 1",
    "fpr": "loss: label 0 and flagged (score > λ); counts: label 0",
    "selective_error": "loss: label 1 (weak verdict wrong) and kept (score <= λ); counts: kept",
}


@dataclass(frozen=True, repr=False)
class ConditionalRisk:
    """A conditional risk on a threshold grid: counts, sample sizes and the testing order.

    Attributes
    ----------
    risk
        The risk's name, one of :data:`CONDITIONAL_RISKS`.
    grid
        The thresholds λ (increasing), shape (m,).
    counts
        k_j: losses among the rows that count at λ_j, shape (m,).
    n
        n_j: rows that count at λ_j, shape (m,) (0 where none: such a point is never certified).
    order
        The natural testing order, most conservative first (fixed before the data; see the
        module notes on why a fixed sequence in this order can stop at once).
    labels, scores
        The calibration data (``labels`` are the errors of the weak verdict for
        ``"selective_error"``).
    """

    risk: str
    grid: FloatArray
    counts: IntArray
    n: IntArray
    order: IntArray
    labels: IntArray
    scores: FloatArray

    @property
    def rule(self) -> str:
        """The loss and the rows that count, in words."""
        return _RULES[self.risk]

    @property
    def where(self) -> BoolArray:
        """Shape (n_rows, m): True where row i counts toward the risk at λ_j."""
        flagged: BoolArray = self.scores[:, None] > self.grid[None, :]
        if self.risk == "precision":
            return flagged
        if self.risk == "selective_error":
            return ~flagged
        positive = self.labels == (0 if self.risk == "fpr" else 1)
        return np.repeat(positive[:, None], self.grid.size, axis=1)

    @property
    def losses(self) -> BoolArray:
        """Shape (n_rows, m): True where row i counts at λ_j and is an error (0 elsewhere)."""
        flagged: BoolArray = self.scores[:, None] > self.grid[None, :]
        positive: BoolArray = self.labels[:, None] == 1
        if self.risk in ("precision", "fpr"):
            return flagged & ~positive  # a false alarm
        return ~flagged & positive  # a missed positive, or a wrong verdict that was kept

    @property
    def empirical(self) -> FloatArray:
        """k_j / n_j (NaN where n_j = 0)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.counts / np.maximum(self.n, 1), np.nan)

    def certify(
        self,
        *,
        alpha: float,
        delta: float,
        procedure: LTTProcedure = "holm",
        method: PValueMethod = "binomial",
        strict: bool = False,
        opt_fraction: float = 0.3,
        seed: int = 42,
    ) -> LTTResult:
        """Certify the thresholds whose risk is at most ``alpha``, tested in ``self.order``.

        Learn-then-Test on these counts: bit for bit ``learn_then_test(counts=self.counts,
        n=self.n, order=self.order, ...)``, without validating the counts again (they are this
        object's own read-only arrays). ``"split_fixed_sequence"`` and ``method="wsr"`` need
        the rows: they run ``learn_then_test(self.losses, where=self.where, ...)``.

        Guarantee (LTT paper, Angelopoulos et al. 2022, Thm. 1, with one sample size per
        threshold): with probability ≥ 1 − ``delta`` over the calibration rows, every
        certified threshold has risk ≤ ``alpha``. The default ``"holm"`` never stops at the
        data-poor first point of ``self.order`` (see the module notes); ``"fixed_sequence"``
        and ``"fallback"`` test in ``self.order``. Select a threshold with
        ``result.select(self.grid, rule=...)``: "most_aggressive" flags (or keeps) the most.

        Examples
        --------
        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> unsafe = rng.uniform(size=2000) < 0.3
        >>> score = np.where(unsafe, rng.beta(4, 2, 2000), rng.beta(2, 4, 2000))
        >>> r = conditional_risk(unsafe, score, risk="precision", grid=np.linspace(0, 1, 101))
        >>> res = r.certify(alpha=0.2, delta=0.1)     # P(safe | flagged) ≤ 0.2, w.p. ≥ 0.9
        >>> res.found, round(float(res.select(r.grid, rule="most_aggressive")), 2)
        (True, 0.73)
        """
        alphas, delta, strict = options_iv(alpha, delta, method, procedure, strict)
        if alphas.size != 1:
            raise ValueError(f"alpha: expected one level for one risk, got {alphas.size}")
        if method == "wsr" or procedure == "split_fixed_sequence":
            return learn_then_test(
                self.losses,
                where=self.where,
                alpha=alpha,
                delta=delta,
                method=method,
                procedure=procedure,
                order=self.order,
                strict=strict,
                opt_fraction=opt_fraction,
                seed=seed,
            )
        sizes = self.n[None]  # read-only, as learn_then_test's own copy
        return decide(
            count_pvalues(self.counts[None], sizes, alphas, method),
            alphas=alphas,
            delta=delta,
            method=method,
            procedure=procedure,
            idx=self.order,
            strict=strict,
            n_cal=int(self.n.max()),
            sizes=sizes,
            source=(self.counts, sizes),
        )

    def __repr__(self) -> str:
        return result_repr(
            self,
            f"risk={self.risk}, m={self.grid.size}, rows={self.scores.size}",
            [("rule", self.rule), "counts", "n", ("empirical", self.empirical), "order"],
        )


def conditional_risk(
    labels: ArrayLike, scores: ArrayLike, *, risk: ConditionalRiskName, grid: ArrayLike
) -> ConditionalRisk:
    """Counts, per-threshold sample sizes and testing order of a conditional risk.

    Parameters
    ----------
    labels
        0/1 per calibration input: the true class (1 = positive, e.g. unsafe) for
        ``"precision"``, ``"recall"``, ``"fnr"`` and ``"fpr"``; 1 where the weak verdict is
        wrong for ``"selective_error"``.
    scores
        Finite scores, same length: an input is flagged (or delegated) iff score > λ and kept
        iff score ≤ λ.
    risk
        One of :data:`CONDITIONAL_RISKS` (``"recall"`` and ``"fnr"`` are the same risk,
        1 − recall = the false-negative rate).
    grid
        Strictly increasing finite thresholds λ_1 < … < λ_m.

    Returns
    -------
    ConditionalRisk
        ``counts`` and ``n`` (shape (m,)) for ``learn_then_test(counts=..., n=...)``; the
        ``losses`` / ``where`` matrices (n_rows, m) for ``learn_then_test(losses, where=...)``;
        ``order``, the data-independent testing order.

    Raises
    ------
    ValueError
        ``labels`` not 0/1 or not 1-d, ``scores`` not finite or of another length, ``grid`` not
        strictly increasing, ``risk`` unknown.

    Notes
    -----
    Validity (LTT paper, Angelopoulos et al. 2022, Thm. 1, with one sample size per threshold):
    whether row i counts at λ_j is a function of row i alone, so given the selected rows their
    losses are i.i.d. Bernoulli(R(λ_j)) and P(Bin(n_j, α) ≤ k_j) is super-uniform under
    H_j: R(λ_j) > α. Using the total row count in place of n_j is NOT valid (anti-conservative).
    Counting is a binary search of each score in the grid and one bincount, O(n log m + m).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 2, size=1000)
    >>> scores = np.clip(0.3 * labels + rng.uniform(size=1000) * 0.7, 0, 1)
    >>> r = conditional_risk(labels, scores, risk="precision", grid=np.linspace(0, 1, 11))
    >>> int(r.n[-1]), int(r.order[0])          # flag nothing at λ = 1: no rows, tested first
    (0, 10)
    >>> bool(np.array_equal(r.counts, r.losses.sum(axis=0)))
    True
    """
    check_choice(risk, "risk", CONDITIONAL_RISKS)
    y = _labels_iv(labels)
    s = _scores_iv(scores)
    check_same_length("labels", y, "scores", s)
    g = _grid_iv(grid)
    counts, n = _counts(y, s, g, risk)
    m = g.size
    if risk in _DESCENDING:
        order = np.arange(m - 1, -1, -1, dtype=np.int64)
    else:
        order = np.arange(m, dtype=np.int64)
    for arr in (counts, n, order):  # read-only: certify() trusts them without a check
        arr.flags.writeable = False
    # Fields set as the frozen dataclass's __init__ would, at a tenth of its cost.
    result = object.__new__(ConditionalRisk)
    result.__dict__.update(risk=risk, grid=g, counts=counts, n=n, order=order, labels=y, scores=s)
    return result


# Fast paths for float64 / integer arrays, which the general validators accept unchanged (no
# copy): the same checks in fewer passes. Any doubt goes to the general path and its messages.
def _labels_iv(labels: ArrayLike) -> IntArray:
    """0/1 labels as int64; an integer or boolean 1-d array is checked without a float copy."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "biu" and labels.ndim == 1:
        if labels.dtype.kind == "b" and labels.size:
            return labels.astype(np.int64)
        # Read as unsigned, a negative label is huge: one reduction checks 0 ≤ y ≤ 1.
        if labels.size and labels.view(_UNSIGNED[labels.dtype.itemsize]).max() <= 1:
            return labels.astype(np.int64)
    return as_binary_array(labels, "labels")  # the general path, and its error messages


def _scores_iv(scores: ArrayLike) -> FloatArray:
    """Finite 1-d scores (as :func:`as_float_array`): a float64 array is returned as given."""
    if (
        isinstance(scores, np.ndarray)
        and scores.dtype == np.float64
        and scores.ndim == 1
        and scores.size
        and math.isfinite(np.add.reduce(scores))  # a finite sum has no NaN or ±inf term
    ):
        return scores
    return as_float_array(scores, "scores", ndim=1)


def _grid_iv(grid: ArrayLike) -> FloatArray:
    """A strictly increasing finite grid (as :func:`check_grid`), float64 arrays as given."""
    if (
        isinstance(grid, np.ndarray)
        and grid.dtype == np.float64
        and grid.ndim == 1
        and grid.size
        and math.isfinite(grid[0])
        and math.isfinite(grid[-1])
        # Every step increases (False at a NaN, so every value is finite).
        and np.count_nonzero(grid[1:] > grid[:-1]) == grid.size - 1
    ):
        return grid
    return check_grid(grid, "grid")


def _counts(y: IntArray, s: FloatArray, g: FloatArray, risk: str) -> tuple[IntArray, IntArray]:
    """(k, n) per grid point (validated inputs), O(n log m + m): no sort of the scores.

    A row with score s is flagged at λ_j iff λ_j < s, i.e. for j < #{λ < s}; one bincount of
    that index per class and a cumulative sum give the flagged rows of each class per λ.
    """
    m = g.size
    below = _below(g, s)  # #{λ < s}: flagged at the first `below` points
    per_class = np.bincount(below + (m + 1) * y, minlength=2 * (m + 1)).reshape(2, m + 1)
    cum = per_class.cumsum(axis=1)
    flagged = np.asarray(cum[:, -1:] - cum[:, :m], dtype=np.int64)  # [negatives, positives]
    n_neg, n_pos = int(cum[0, -1]), int(cum[1, -1])
    if risk == "precision":  # false alarms among all flagged
        return flagged[0], flagged[0] + flagged[1]
    if risk == "fpr":
        return flagged[0], np.full(m, n_neg, dtype=np.int64)
    missed = n_pos - flagged[1]  # positives kept (score ≤ λ)
    if risk in ("recall", "fnr"):
        return missed, np.full(m, n_pos, dtype=np.int64)
    return missed, missed + (n_neg - flagged[0])  # selective: wrong verdicts among kept


def _below(g: FloatArray, s: FloatArray) -> IntArray:
    """#{j : g[j] < s} per score: ``g.searchsorted(s, side="left")``, exactly.

    A binary search per score mispredicts its branches on fresh data (~25 ns a score); for many
    rows an evenly spaced guess c = ⌈(s − λ_1)/h⌉ checked by g[c − 1] < s ≤ g[c] is branch-free,
    and the rows where it is off (rounding, or an uneven grid) are searched.
    """
    m = g.size
    span = float(g[-1] - g[0]) if m > 1 else 0.0
    if (
        s.size < _GUESS_MIN_ROWS
        or not (0.0 < span < math.inf)
        or not math.isfinite(scale := (m - 1) / span)
    ):
        return g.searchsorted(s, side="left")
    with np.errstate(over="ignore", under="ignore"):  # ±inf guesses: clipped to 0 or m
        guess = np.ceil((s - g[0]) * scale)
    np.clip(guess, 0, m, out=guess)
    c: IntArray = guess.astype(np.int64)
    padded = np.concatenate([[-np.inf], g, [np.inf]])  # padded[c] = g[c - 1], padded[c + 1] = g[c]
    off = ~((padded.take(c) < s) & (padded.take(c + 1) >= s))
    if off.any():
        wrong = np.flatnonzero(off)
        c[wrong] = g.searchsorted(s[wrong], side="left")
    return c
