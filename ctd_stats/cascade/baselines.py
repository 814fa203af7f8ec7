"""Batched top-k baselines and the global oracle (no guarantee; they need a whole batch).

* "Unc. top-k" (McKenzie et al. 2025): in each consecutive batch of B inputs, delegate the k
  items ranked around the batch median of the probe score p (the most uncertain).
* "DV top-k": the k largest DV scores d of each batch; "Oracle top-k": the k largest TRUE
  delegation values v (CTD paper §5.1, App. B for the batch sizes).
* The global oracle: the top min(⌈αn⌉, #{v > 0}) inputs of the whole evaluation set by true v,
  the ceiling of what any policy at budget α can achieve (CTD paper §5.3, FAIC).

⌈αn⌉ is computed as ⌈round(αn, 9)⌉ so that floating-point noise such as
0.3·100 = 30.000000000000004 does not add one delegation.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from .._validation import (
    as_float_array,
    as_int_array,
    check_choice,
    check_levels,
    check_positive_int,
)
from ..typing import BoolArray, FloatArray, IntArray

__all__ = ["TopkWindow", "global_oracle_masks", "topk_budgets", "topk_masks"]

TopkWindow = Literal["top", "median"]


def topk_budgets(batch_size: int, *, steps: int = 20) -> IntArray:
    """k values of the batched baselines: unique(int(linspace(0, B, steps + 1)))."""
    b = check_positive_int(batch_size, "batch_size")
    steps = check_positive_int(steps, "steps")
    return topk_budgets_unchecked(b, steps)


def topk_budgets_unchecked(b: int, steps: int) -> IntArray:
    return np.unique(np.linspace(0, b, steps + 1).astype(np.int64))


def _batch_ranks(scores: FloatArray, batch_size: int, *, descending: bool) -> IntArray:
    """Rank of each score inside its consecutive batch (0 = first); stable for ties."""
    n = scores.size
    ranks = np.empty(n, dtype=np.int64)
    n_full = (n // batch_size) * batch_size
    key = -scores if descending else scores
    if n_full:
        blocks = key[:n_full].reshape(-1, batch_size)
        order = np.argsort(blocks, axis=1, kind="stable")
        r = np.empty_like(order)
        np.put_along_axis(r, order, np.arange(batch_size)[None, :], axis=1)
        ranks[:n_full] = r.ravel()
    if n_full < n:
        order = np.argsort(key[n_full:], kind="stable")
        r1 = np.empty_like(order)
        r1[order] = np.arange(order.size)
        ranks[n_full:] = r1
    return ranks


def topk_masks(
    scores: ArrayLike, *, batch_size: int, k: ArrayLike, window: TopkWindow = "top"
) -> BoolArray:
    """Batched top-k delegation masks, one row per k (shape (len(k), n)).

    The stream is cut into consecutive batches of ``batch_size`` (the last, partial batch is kept;
    in a batch of L items at most min(k, L) are delegated). ``window="top"``: the k largest
    scores of each batch ("DV top-k" on d, "Oracle top-k" on v; ties go to the earlier item).
    ``window="median"`` ("Unc. top-k" on probe scores p): the items with ascending rank in
    [start, start + k) where start = max(0, L//2 − k//2), shifted back when it overflows L.
    Every full batch delegates exactly k items.
    """
    s = as_float_array(scores, "scores", ndim=1)
    b = check_positive_int(batch_size, "batch_size")
    check_choice(window, "window", ("top", "median"))
    ks = np.atleast_1d(as_int_array(k, "k", ndim=(0, 1), low=0, high=b))
    return topk_masks_unchecked(s, b, ks, window)


def topk_masks_unchecked(s: FloatArray, b: int, ks: IntArray, window: str) -> BoolArray:
    """Kernel of :func:`topk_masks` (validated inputs, ks 1-d in [0, b])."""
    n = s.size
    ranks = _batch_ranks(s, b, descending=(window == "top"))
    length = np.full(n, b, dtype=np.int64)
    n_full = (n // b) * b
    length[n_full:] = n - n_full
    k_eff = np.minimum(ks[:, None], length[None, :])
    if window == "top":
        return np.asarray(ranks[None, :] < k_eff)
    start = np.maximum(0, length[None, :] // 2 - k_eff // 2)
    end = np.minimum(length[None, :], start + k_eff)
    start = end - k_eff
    return np.asarray((ranks[None, :] >= start) & (ranks[None, :] < end))


def _ceil_count(alpha: float, n: int) -> int:
    return math.ceil(round(alpha * n, 9))


def global_oracle_masks(values: ArrayLike, *, alpha: float | ArrayLike) -> BoolArray:
    """Global oracle at each budget α: delegate the top min(⌈αn⌉, #{v > 0}) inputs by true v.

    ``alpha`` is one budget or a 1-d array of budgets in (0, 1]; shape (number of budgets, n).
    Never delegates an input with v ≤ 0.
    """
    v = as_float_array(values, "values", ndim=1)
    return oracle_masks_unchecked(v, check_levels(alpha, "alpha", closed_right=True))


def oracle_masks_unchecked(v: FloatArray, a: FloatArray) -> BoolArray:
    """Kernel of :func:`global_oracle_masks` (validated inputs)."""
    n = v.size
    capacity = int(np.sum(v > 0))
    ks = np.array([min(_ceil_count(float(x), n), capacity) for x in a], dtype=np.int64)
    order = np.argsort(-v, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return np.asarray(rank[None, :] < ks[:, None])
