"""Learn-then-Test with groups: per-group budgets and risks (beyond the papers).

Calibration rows carry a group g (a tenant, a product surface, a task type); within a group the
rows are i.i.d. from that group's distribution. R_g(λ) is group g's risk (e.g. its delegation
rate) and α_g its cap. Three ways to certify, each a standard result built on the LTT theorem
(Angelopoulos et al. 2022, Thm. 1) and the binomial p-values of :mod:`ctd_stats.pvalues`:

``"per_group"`` (Mondrian)
    LTT on group g's rows alone at δ. For each g separately:
    P(∀λ certified for g: R_g(λ) ≤ α_g) ≥ 1 − δ. Not simultaneous over groups.
``"simultaneous"``
    LTT per group at δ_g: Bonferroni δ/G (always valid, a union bound), or Šidák
    1 − (1 − δ)^{1/G}, valid when the groups' rows are disjoint and independent and the
    certification is read given the group sizes (stratified sampling, or i.i.d. rows with the
    sizes conditioned on): the G certifications are then independent events. Guarantee:
    P(∀g, ∀λ certified for g: R_g(λ) ≤ α_g) ≥ 1 − δ. A new input's group must be known when
    its threshold is applied.
``"shared"`` (intersection–union)
    One threshold for every group: H0(λ) = {R(λ) > α} ∪ ⋃_g {R_g(λ) > α_g} has the valid
    p-value max(p_all(λ), max_g p_g(λ)) (under H0 some component null is true, and the max is
    ≤ t only if that component's p-value is; Berger 1982), tested by the FWER procedure at δ
    with no correction. Guarantee: P(every certified λ meets the overall budget and every
    cap) ≥ 1 − δ. No group needed at decision time.

Small groups: with zero losses the binomial p-value is (1 − α_g)^{n_g}, so a group certifies
nothing unless n_g ≥ ln(δ_g) / ln(1 − α_g) (44 rows at α_g = 0.05, δ_g = 0.1); the result
reports that size per group as ``min_n``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ._grouped_result import GroupedLTTResult, GroupLabel, Reasons
from ._grouped_result import group_position as group_position  # one label lookup, re-used
from ._ltt_result import first_level
from ._serialize import array_sha256
from ._validation import (
    as_float_array,
    as_int_array,
    check_choice,
    check_grid,
    check_level,
    plain,
)
from .fwer import PROCEDURES, Order, Procedure, check_strict, fwer_kernel, order_iv
from .pvalues import (
    METHODS,
    PValueMethod,
    check_binary,
    from_counts,
    min_n_for_zero_losses,
    wsr_kernel,
)
from .typing import BoolArray, FloatArray, IntArray

__all__ = [
    "CORRECTIONS",
    "GROUP_MODES",
    "Correction",
    "GroupCounts",
    "GroupLabel",
    "GroupMode",
    "GroupedLTTResult",
    "group_counts_above",
    "learn_then_test_grouped",
]

GroupMode = Literal["per_group", "simultaneous", "shared"]
GROUP_MODES: Final[tuple[str, ...]] = ("per_group", "simultaneous", "shared")
Correction = Literal["bonferroni", "sidak"]
CORRECTIONS: Final[tuple[str, ...]] = ("bonferroni", "sidak")
Caps = float | Mapping[Any, float] | Sequence[float] | ArrayLike


class GroupCounts(NamedTuple):
    """Per-group counts of a threshold rule: ``counts[g, j]`` of the ``n[g]`` rows of group g."""

    groups: tuple[GroupLabel, ...]
    counts: IntArray
    n: IntArray


# --------------------------------------------------------------------------- validation
def group_labels(
    groups: ArrayLike, name: str = "groups"
) -> tuple[tuple[GroupLabel, ...], IntArray]:
    """Sorted distinct labels (ints or non-empty strings) and each row's index into them."""
    try:
        arr = np.asarray(groups)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected one label per row (1-d), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: must not be empty")
    if arr.dtype.kind == "O":
        kinds = {type(v) for v in arr.tolist()}
        if kinds <= {str}:
            arr = arr.astype(str)
        elif all(issubclass(k, (int, np.integer)) and not issubclass(k, bool) for k in kinds):
            arr = arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    if arr.dtype.kind not in "iuU":
        raise ValueError(
            f"{name}: expected integer or string labels, got an array of dtype {arr.dtype}"
        )
    if arr.dtype.kind in "iu" and int(arr.max()) - int(arr.min()) <= 4 * arr.size:
        # Dense integer labels: np.unique's answer by counting, O(n) instead of a sort.
        offset = (arr - arr.min()).astype(np.intp)
        present = np.bincount(offset) > 0
        labels = np.flatnonzero(present) + arr.min()
        inverse = (np.cumsum(present) - 1)[offset]
    else:
        labels, inverse = np.unique(arr, return_inverse=True)
    if arr.dtype.kind == "U" and labels[0] == "":
        raise ValueError(f"{name}: contains an empty label ''")
    return tuple(labels.tolist()), inverse.astype(np.int64).ravel()


def caps_iv(alpha: Caps, labels: tuple[GroupLabel, ...], name: str) -> FloatArray:
    """One cap per group, in the order of ``labels``: a number, a mapping or a sequence."""
    if isinstance(alpha, Mapping):
        keys = list(alpha)
        unknown = [k for k in keys if k not in labels]
        if unknown:
            raise ValueError(f"{name}: group {plain(unknown[0])} has no calibration rows")
        missing = [g for g in labels if g not in alpha]
        if missing:
            raise ValueError(f"{name}: no cap for group {plain(missing[0])}, which has rows")
        caps = [alpha[g] for g in labels]
    else:
        arr = as_float_array(alpha, name, ndim=(0, 1))
        if arr.ndim == 0:
            caps = [float(arr)] * len(labels)
        elif arr.size != len(labels):
            raise ValueError(
                f"{name}: got {arr.size} caps for {len(labels)} groups; give one number, one "
                "per group in the result's group order, or a mapping group -> cap"
            )
        else:
            caps = arr.tolist()
    return np.array([check_level(float(a), name) for a in caps], dtype=np.float64)


def caps_per_group(alpha: Caps) -> bool:
    """Whether ``alpha`` gives caps per group (a mapping, sequence or array), not one number."""
    if isinstance(alpha, np.ndarray):
        return alpha.ndim > 0
    return isinstance(alpha, (Mapping, Sequence)) and not isinstance(alpha, str)


def corrected_delta(delta: float, n_groups: int, correction: str) -> float:
    """Each group's level for all ``n_groups`` groups at once at δ (validated inputs).

    ``"bonferroni"``: δ/G (a union bound, valid for any dependence between the groups);
    ``"sidak"``: 1 − (1 − δ)^{1/G} (valid for independent groups). δ itself for one group.
    """
    if n_groups == 1:
        return delta
    if correction == "bonferroni":
        return delta / n_groups
    return -math.expm1(math.log1p(-delta) / n_groups)  # Šidák 1 − (1 − δ)^{1/G}


def _group_delta(delta: float, n_groups: int, mode: str, correction: str) -> float:
    """The level each group is tested at."""
    if mode != "simultaneous":
        return delta
    return corrected_delta(delta, n_groups, correction)


# --------------------------------------------------------------------------- counting
def _partition(inverse: IntArray, n_groups: int) -> tuple[IntArray, IntArray]:
    """Rows grouped together in their original order (stable), and each group's bounds."""
    # A stable sort of small integers is a radix sort in numpy: O(n) with uint8/uint16 keys.
    small = np.uint8 if n_groups <= 2**8 else np.uint16 if n_groups <= 2**16 else np.int64
    perm = np.argsort(inverse.astype(small), kind="stable")
    bounds = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(inverse, minlength=n_groups), out=bounds[1:])
    return perm, bounds


def group_counts_above(scores: ArrayLike, *, groups: ArrayLike, grid: ArrayLike) -> GroupCounts:
    """``counts[g, j]`` = #{rows i of group g with score_i > grid_j}, one sort per group.

    The losses of "delegate iff score > λ" (or "alarm iff score > λ"), counted per group for
    :func:`learn_then_test_grouped` (``counts=``, ``n=``, ``groups=``). Groups in sorted order.

    >>> c = group_counts_above([0.1, 0.9, 0.5, 0.7], groups=["b", "a", "b", "a"],
    ...                        grid=[0.0, 0.6])
    >>> c.groups, c.counts.tolist(), c.n.tolist()
    (('a', 'b'), [[2, 2], [2, 0]], [2, 2])
    """
    labels, inverse = group_labels(groups)
    s = as_float_array(scores, "scores", ndim=1)
    if inverse.size != s.size:
        raise ValueError(f"groups: length {inverse.size} does not match scores ({s.size} rows)")
    g = check_grid(grid, finite=False)
    perm, bounds = _partition(inverse, len(labels))
    counts = np.empty((len(labels), g.size), dtype=np.int64)
    for i in range(len(labels)):
        mine = np.sort(s[perm[bounds[i] : bounds[i + 1]]])
        counts[i] = mine.size - np.searchsorted(mine, g, side="right")
    return GroupCounts(labels, counts, np.diff(bounds))


# --------------------------------------------------------------------------- public
def learn_then_test_grouped(
    losses: ArrayLike | None = None,
    *,
    groups: ArrayLike | None = None,
    counts: ArrayLike | None = None,
    n: int | ArrayLike | None = None,
    alpha: Caps,
    delta: float,
    order: Order | None = None,
    mode: GroupMode = "per_group",
    correction: Correction = "bonferroni",
    overall_alpha: float | None = None,
    method: PValueMethod = "binomial",
    procedure: Procedure = "fixed_sequence",
    strict: bool = False,
) -> GroupedLTTResult:
    """Learn-then-Test with a cap per group: per group, simultaneous, or one shared threshold.

    Parameters
    ----------
    losses, groups
        Loss matrix (n, m) in [0, 1] (one risk) and each row's group label (n,) (integers or
        non-empty strings). Groups are reported in sorted label order.
    counts, n, groups
        Instead of ``losses``: integer loss counts per group (G, m) and the group sizes ``n``:
        one integer for every group, one per group (G,), or one per group and grid point
        (G, m) for conditional risks (:func:`ctd_stats.learn_then_test`'s counts form per
        group). ``groups`` then labels the rows of ``counts`` (distinct; default 0..G−1) and
        the result keeps that order. :func:`group_counts_above` builds them from scores.
    alpha
        The cap α_g: one number for every group, a mapping group → cap (exactly the groups
        with rows), or a sequence in the result's group order. Each in (0, 1).
    delta
        Failure probability in (0, 1) (per group in ``"per_group"`` mode, overall otherwise).
    order, procedure, strict, method
        As in :func:`ctd_stats.learn_then_test` (``procedure`` one of
        :data:`ctd_stats.fwer.PROCEDURES`; ``"wsr"`` needs ``losses``).
    mode
        ``"per_group"`` (default), ``"simultaneous"`` or ``"shared"`` (module docstring).
    correction
        ``"simultaneous"`` only: ``"bonferroni"`` (δ/G, always valid) or ``"sidak"``
        (1 − (1 − δ)^{1/G}: needs disjoint, independent groups and reads the guarantee given
        the group sizes).
    overall_alpha
        ``"shared"`` only: the overall budget R(λ) ≤ ``overall_alpha`` tested with the caps;
        ``None`` tests the caps alone.

    Returns
    -------
    GroupedLTTResult

    Raises
    ------
    ValueError
        A message starting with the argument's name: ``groups`` NaN, empty, of the wrong length
        or with an empty label; ``alpha`` naming a group with no rows, missing a group with
        rows, of the wrong length, or outside (0, 1); ``n`` = 0 for a group; and the checks of
        :func:`ctd_stats.learn_then_test`.

    Notes
    -----
    Guarantees (LTT paper, Thm. 1, applied per group or to the intersection–union null):
    per group, P(∀λ certified for g: R_g(λ) ≤ α_g) ≥ 1 − δ for each g; simultaneous, the same
    for all g at once; shared, every certified λ meets the overall budget and every cap at
    once, w.p. ≥ 1 − δ. With one group, every mode equals :func:`ctd_stats.learn_then_test`
    bit for bit (``group_delta`` = δ). Counting is one pass per group; the statistics are a
    p-value and FWER kernel call per group on m values.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(["x", "y"], 1000)
    >>> scores = np.concatenate([rng.uniform(size=1000), rng.uniform(size=1000) ** 2])
    >>> grid = np.linspace(0, 1, 101)
    >>> c = group_counts_above(scores, groups=groups, grid=grid)
    >>> res = learn_then_test_grouped(counts=c.counts, n=c.n, groups=c.groups,
    ...                               alpha={"x": 0.2, "y": 0.1}, delta=0.1,
    ...                               order="descending", mode="shared")
    >>> res.select(grid)   # delegate iff score > λ: every group under its cap
    0.84
    """
    check_choice(mode, "mode", GROUP_MODES)
    check_choice(correction, "correction", CORRECTIONS)
    check_choice(method, "method", METHODS)
    check_choice(procedure, "procedure", PROCEDURES)
    delta = check_level(delta, "delta")
    strict = check_strict(strict)
    if (losses is None) == (counts is None):
        raise ValueError("losses: give exactly one of losses (with groups) or counts (with n)")
    if mode != "shared" and overall_alpha is not None:
        raise ValueError(f"overall_alpha: only used with mode='shared', not {plain(mode)}")
    total_alpha = None if overall_alpha is None else check_level(overall_alpha, "overall_alpha")

    x: FloatArray | BoolArray | None = None
    sizes: IntArray | None = None
    if losses is not None:
        if n is not None:
            raise ValueError("n: only used with counts; losses already give the group sizes")
        if groups is None:
            raise ValueError("groups: required with losses (one label per row)")
        labels, inverse = group_labels(groups)
        if isinstance(losses, np.ndarray) and losses.dtype == np.bool_ and method != "wsr":
            if losses.ndim != 2 or 0 in losses.shape:
                raise ValueError(f"losses: expected a non-empty 2-d array, got {losses.shape}")
            x = losses
        else:
            x = as_float_array(losses, "losses", ndim=2, low=0.0, high=1.0)
            check_binary(x, method)
        if inverse.size != x.shape[0]:
            raise ValueError(
                f"groups: length {inverse.size} does not match losses ({x.shape[0]} rows)"
            )
        k, group_n, rows = _sum_by_group(x, inverse, len(labels), method)
        source = np.concatenate([k.ravel(), group_n.astype(np.float64)])
    else:
        if n is None:
            raise ValueError("n: required with counts")
        if method == "wsr":
            raise ValueError("method: 'wsr' depends on the order of the losses; pass losses")
        assert counts is not None  # exactly one of losses/counts was given
        k = as_int_array(counts, "counts", ndim=2, low=0)
        if 0 in k.shape:
            raise ValueError(f"counts: must not be empty, got shape {k.shape}")
        labels = _row_labels(groups, k.shape[0])
        group_n, sizes = _sizes_iv(n, k)
        rows = None
        source = np.concatenate([k.ravel(), (group_n if sizes is None else sizes).ravel()])
    n_groups, m = k.shape
    caps = caps_iv(alpha, labels, "alpha")
    idx = order_iv(order, procedure, m)
    if idx is not None and procedure in ("holm", "bonferroni") and idx.size != m:
        raise ValueError(f"order: must list every grid index once for procedure={plain(procedure)}")

    # Kernels only from here on: every input is validated.
    level = _group_delta(delta, n_groups, mode, correction)
    p = np.empty((n_groups, m), dtype=np.float64)
    for g in range(n_groups):
        if method == "wsr":
            assert x is not None and rows is not None
            p[g] = wsr_kernel(np.asarray(x[rows[g]], dtype=np.float64), float(caps[g]), level)
        else:
            size: int | IntArray = int(group_n[g]) if sizes is None else sizes[g]
            p[g] = from_counts(k[g], size, float(caps[g]), method)
    shared_p = overall_p = None
    if mode == "shared":
        shared_p = p.max(axis=0)
        if total_alpha is not None:
            overall_p = _overall_pvalues(x, k, group_n, sizes, total_alpha, method, delta)
            shared_p = np.maximum(shared_p, overall_p)
        fw = fwer_kernel(shared_p, delta, procedure, idx, strict)
        certified = np.repeat(fw.rejected[None], n_groups, axis=0)
        indices = tuple(fw.indices.copy() for _ in range(n_groups))
    else:
        per_group = [fwer_kernel(p[g], level, procedure, idx, strict) for g in range(n_groups)]
        certified = np.stack([fw.rejected for fw in per_group])
        indices = tuple(fw.indices for fw in per_group)
    found = np.array([i.size > 0 for i in indices], dtype=bool)
    first = first_level(level, procedure, m, idx)
    needed: dict[float, int] = {}
    for a in caps.tolist():
        if a not in needed:
            v = min_n_for_zero_losses(a, first, method, strict=strict)
            needed[a] = -1 if v is None else v
    min_n = np.array([needed[a] for a in caps.tolist()], dtype=np.int64)
    most = group_n if sizes is None else sizes.max(axis=1)
    why = Reasons(labels, caps, level, first, method, procedure, idx, strict)
    if mode == "shared":
        reason_all = None if found[0] else why.shared(p, overall_p, total_alpha, min_n, most)
        reasons = tuple(reason_all for _ in labels)
    else:
        reasons = tuple(
            None if found[g] else why.group(g, p[g], int(min_n[g]), int(most[g]))
            for g in range(n_groups)
        )
    return GroupedLTTResult(
        groups=labels,
        mode=mode,
        correction=correction if mode == "simultaneous" else None,
        found=found,
        certified=certified,
        indices=indices,
        pvalues=p,
        alpha=caps,
        delta=delta,
        group_delta=level,
        method=method,
        procedure=procedure,
        strict=strict,
        order=idx,
        n=group_n,
        min_n=min_n,
        reason=reasons,
        calibration_sha256=array_sha256(source),
        sample_sizes=sizes,
        overall_alpha=total_alpha,
        shared_pvalues=shared_p,
        overall_pvalues=overall_p,
    )


def _sum_by_group(
    x: FloatArray | BoolArray, inverse: IntArray, n_groups: int, method: str
) -> tuple[Any, IntArray, list[IntArray]]:
    """Per-group loss sums (integer counts for boolean or binomial losses), sizes and rows."""
    if n_groups == 1:  # no copy: the sums are ungrouped LTT's, bit for bit
        rows = [np.arange(x.shape[0], dtype=np.int64)]
        sums = x.sum(axis=0)[None]
    else:
        perm, bounds = _partition(inverse, n_groups)
        rows = [perm[bounds[g] : bounds[g + 1]] for g in range(n_groups)]
        sums = np.stack([x[r].sum(axis=0) for r in rows])
    if method == "binomial" and sums.dtype.kind == "f":
        sums = sums.astype(np.int64)
    return sums, np.array([r.size for r in rows], dtype=np.int64), rows


def _overall_pvalues(
    x: FloatArray | BoolArray | None,
    k: Any,
    group_n: IntArray,
    sizes: IntArray | None,
    alpha: float,
    method: str,
    delta: float,
) -> FloatArray:
    """p-values of the overall budget R(λ) ≤ alpha on all rows together."""
    if method == "wsr":
        assert x is not None
        return wsr_kernel(np.asarray(x, dtype=np.float64), alpha, delta)
    total: int | IntArray = int(group_n.sum()) if sizes is None else sizes.sum(axis=0)
    return from_counts(k.sum(axis=0), total, alpha, method)


def _row_labels(groups: ArrayLike | None, n_rows: int) -> tuple[GroupLabel, ...]:
    """Labels of the rows of ``counts``, distinct, in the order given."""
    if groups is None:
        return tuple(range(n_rows))
    labels, inverse = group_labels(groups)
    if inverse.size != n_rows:
        raise ValueError(f"groups: length {inverse.size} does not match counts ({n_rows} rows)")
    if len(labels) != n_rows:
        raise ValueError("groups: labels of the rows of counts must be distinct")
    return tuple(labels[i] for i in inverse.tolist())


def _sizes_iv(n: int | ArrayLike, k: IntArray) -> tuple[IntArray, IntArray | None]:
    """Group sizes (G,) and, for conditional risks, per grid point sizes (G, m)."""
    arr = as_int_array(n, "n", ndim=(0, 1, 2), low=0)
    n_groups = k.shape[0]
    if arr.ndim == 2:
        if arr.shape != k.shape:
            raise ValueError(
                f"n: expected shape {k.shape} (per group and grid point), got {arr.shape}"
            )
        sizes: IntArray | None = arr
        group_n = arr.max(axis=1)
        full = arr
    else:
        if arr.ndim == 1 and arr.size != n_groups:
            raise ValueError(f"n: got {arr.size} sizes for {n_groups} groups (rows of counts)")
        group_n = np.broadcast_to(arr, (n_groups,)).astype(np.int64)
        sizes, full = None, group_n[:, None]
    if (group_n == 0).any():
        raise ValueError(f"n: group {int(np.argmin(group_n))} of counts has no rows")
    above = k > full
    if above.any():
        g, j = (int(v) for v in np.argwhere(above)[0])
        raise ValueError(
            f"counts: {int(k[g, j])} losses at grid point {j} of group {g} exceed "
            f"its n = {int(np.broadcast_to(full, k.shape)[g, j])}"
        )
    return group_n, sizes
