"""Selective classification with a guaranteed error on the kept inputs: :func:`calibrate_selective`.

A cascade keeps the weak model's verdict when its delegation score is at most τ and delegates
otherwise (the CTD rule "delegate iff score > τ", CTD paper §4.2). CTD certifies what the expert
costs (the delegation rate); this policy certifies how good the kept verdicts are: the selective
risk R_S(τ) = P(weak verdict wrong | score ≤ τ) of Geifman & El-Yaniv (2017, "Selective
classification for deep neural networks", Sec. 3), and, when a budget is given, the delegation
rate R_B(τ) = P(score > τ) at the same time.

Each τ of the grid is tested by Learn-then-Test (Angelopoulos et al. 2022) with one sample size per
threshold: the binomial p-value of H_j: R_S(τ_j) > α uses the n_j calibration inputs kept at τ_j
and the k_j wrong verdicts among them (valid given n_j, since whether an input is kept depends on
its own score only). With a budget, H_j is the union of both nulls and p_j = max of the two
p-values, each with its own sample size (intersection–union). The family-wise error is controlled
by Holm (default), Bonferroni or a split fixed sequence; a fixed sequence from the most
conservative τ would start where almost nothing is kept and stop at once.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike

from .._serialize import array_sha256
from .._validation import (
    IntArray,
    as_binary_array,
    as_float_array,
    check_choice,
    check_grid,
    check_int_seed,
    check_level,
    check_same_length,
)
from ..ltt import LTTResult, learn_then_test
from ..risks import conditional_risk
from .calibration import ThresholdCalibration
from .policies import min_n_split
from .signals import check_budget, threshold_grid

__all__ = ["SELECTIVE", "SELECTIVE_PROCEDURES", "SelectiveProcedure", "calibrate_selective"]

SELECTIVE: Final = "selective"
SelectiveProcedure = Literal["holm", "bonferroni", "split_fixed_sequence"]
SELECTIVE_PROCEDURES: Final[tuple[str, ...]] = ("holm", "bonferroni", "split_fixed_sequence")


def calibrate_selective(
    scores: ArrayLike,
    errors: ArrayLike,
    *,
    alpha: float,
    delta: float = 0.1,
    budget: float | None = None,
    grid: ArrayLike | None = None,
    procedure: SelectiveProcedure = "holm",
    opt_fraction: float = 0.3,
    seed: int = 42,
) -> ThresholdCalibration:
    """Certify "keep the weak verdict iff score ≤ τ" for the error of the kept verdicts.

    Parameters
    ----------
    scores
        Delegation scores (e.g. DV scores) of the calibration inputs, finite, shape (n,).
    errors
        1 where the weak verdict on that input is wrong, 0 where it is right; shape (n,).
    alpha
        Level in (0, 1) for the error among kept inputs, P(wrong | score ≤ τ).
    delta
        Probability in (0, 1) that the calibration fails.
    budget
        Optional level in (0, 1] for the delegation rate P(score > τ), certified at the same
        time (``None`` or 1: no budget).
    grid
        Candidate thresholds, strictly increasing; default
        :func:`~ctd_stats.cascade.threshold_grid` of ``scores``.
    procedure
        ``"holm"`` (default), ``"bonferroni"``, or ``"split_fixed_sequence"`` (the order is
        learned on ``opt_fraction`` of the calibration inputs, drawn by ``seed``, and tested on
        the rest).
    opt_fraction, seed
        The split of ``"split_fixed_sequence"`` (ignored otherwise).

    Returns
    -------
    ThresholdCalibration
        ``method="selective"``; ``threshold`` is the certified τ that delegates least (the
        largest); ``alpha`` is the certified delegation budget (1 without one: the
        :class:`~ctd_stats.cascade.Delegator` then attaches no budget monitor) and
        ``settings["error_alpha"]`` the kept-error level. ``pvalues`` are the combined p-values,
        ``opt_budget`` / ``opt_performance`` the empirical delegation rate and kept error per τ
        on the data that chose the order (all of it for Holm and Bonferroni). When nothing is
        certified, ``found=False``, ``reason`` says why (with ``min_n`` when the calibration set
        is too small) and ``threshold = -inf``: every input is delegated, no uncertified verdict
        is kept (this exceeds any budget below 1: check ``found`` before deploying).

    Raises
    ------
    ValueError
        A message starting with the argument's name: ``scores`` not finite, ``errors`` not 0/1 or
        of another length, ``alpha``/``delta``/``budget``/``opt_fraction`` out of range,
        ``grid`` not strictly increasing, ``procedure`` unknown.

    Notes
    -----
    Guarantee: with probability at least 1 − δ over the calibration data (exchangeable with the
    deployment data), every certified τ — hence the returned one — has
    P(weak verdict wrong | score ≤ τ) ≤ α, and, with a budget, P(score > τ) ≤ budget as well.
    Proof: each p-value is super-uniform under its null given the number of kept inputs
    (Geifman & El-Yaniv 2017, Sec. 3; LTT paper Thm. 1); the max over the two risks is a valid
    p-value for the union null; Holm, Bonferroni and a fixed sequence in an order fixed before
    the tested rows control the FWER at δ (LTT paper Sec. 4).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scores = rng.uniform(size=5000)
    >>> errors = rng.uniform(size=5000) < 0.4 * scores       # errors grow with the score
    >>> cal = calibrate_selective(scores, errors, alpha=0.1, delta=0.1, budget=0.7)
    >>> cal.found, bool(0.3 <= cal.threshold <= 0.5)   # kept error 0.2 τ ≤ 0.1, 1 − τ ≤ 0.7
    (True, True)
    """
    a = check_level(alpha, "alpha")
    d = check_level(delta, "delta")
    b = None if budget is None else check_budget(budget, "budget")
    if b is not None and b >= 1.0:
        b = None  # a budget of 1 always holds: nothing to certify
    check_choice(procedure, "procedure", SELECTIVE_PROCEDURES)
    frac = check_level(opt_fraction, "opt_fraction")
    seed = check_int_seed(seed, "seed")
    s = as_float_array(scores, "scores", ndim=1)
    e = as_binary_array(errors, "errors")
    check_same_length("scores", s, "errors", e)
    g = threshold_grid(s) if grid is None else check_grid(grid, "grid")

    risk = conditional_risk(e, s, risk="selective_error", grid=g)
    m, n = g.size, s.size
    alphas = [a] if b is None else [a, b]
    descending = np.arange(m - 1, -1, -1, dtype=np.int64)  # least delegation first
    if procedure == "split_fixed_sequence":
        losses, where = risk.losses, risk.where
        if b is not None:
            losses = np.stack([losses, ~where])  # delegated = not kept, counted over every row
            where = np.stack([where, np.ones_like(where)])
        res = learn_then_test(
            losses,
            where=where,
            alpha=alphas,
            delta=d,
            procedure="split_fixed_sequence",
            order=descending,
            opt_fraction=frac,
            seed=seed,
        )
        n_opt = res.n_opt
    else:
        counts: IntArray = risk.counts
        sizes: IntArray = risk.n
        if b is not None:
            counts = np.stack([risk.counts, n - risk.n])
            sizes = np.stack([risk.n, np.full(m, n, dtype=np.int64)])
        res = learn_then_test(
            counts=counts, n=sizes, alpha=alphas, delta=d, procedure=procedure, order=descending
        )
        n_opt = 0
    n_test = n - n_opt

    # Empirical risks on the rows that chose the order (all rows without a split).
    opt_rows = _opt_rows(n, n_opt, seed, frac)
    opt = conditional_risk(e[opt_rows], s[opt_rows], risk="selective_error", grid=g)
    opt_budget = (opt_rows.size - opt.n) / opt_rows.size
    opt_error = opt.empirical

    index = int(np.flatnonzero(res.certified).max()) if res.found else None
    reason, min_n = (None, None) if res.found else _why_none(res, risk.n, g, a, b, d, n, frac)
    return ThresholdCalibration(
        method=SELECTIVE,
        signal="dv",
        alpha=1.0 if b is None else b,
        delta=d,
        found=index is not None,
        threshold=float("-inf") if index is None else float(g[index]),
        index=index,
        reason=reason,
        min_n=min_n,
        grid=g,
        certified=res.certified,
        front=descending if res.order is None else res.order,
        pvalues=res.pvalues,
        opt_budget=opt_budget,
        opt_performance=opt_error,
        n_opt=n_opt,
        n_test=n_test,
        calibration_sha256=array_sha256(np.stack([s, e])),
        settings={
            "error_alpha": a,
            "budget": b,
            "procedure": procedure,
            "opt_fraction": frac,
            "seed": seed,
        },
    )


def _opt_rows(n: int, n_opt: int, seed: int, frac: float) -> IntArray:
    """The rows whose empirical risks are reported: the order-learning part, or every row."""
    if n_opt == 0:
        return np.arange(n, dtype=np.int64)
    from ..splits import split_indices

    return split_indices(n, first_fraction=frac, seed=seed).first


def _why_none(
    res: LTTResult,
    kept: IntArray,
    grid: ArrayLike,
    alpha: float,
    budget: float | None,
    delta: float,
    n: int,
    frac: float,
) -> tuple[str, int | None]:
    """``reason`` and ``min_n`` of a calibration that certified no threshold."""
    g = np.asarray(grid, dtype=np.float64)
    need = res.min_n  # rows needed at one threshold (tested part), zero losses
    levels = f"alpha = {alpha:.6g}" + ("" if budget is None else f", budget = {budget:.6g}")
    if need is not None and res.n < need:
        total = need if res.n_opt == 0 else min_n_split(need, frac)
        return (
            f"n: {n} calibration inputs cannot certify any threshold at {levels}, "
            f"delta = {delta:.6g}: even no errors and no delegations need {need} tested inputs "
            f"({res.procedure}); at least {total} calibration inputs are needed",
            total,
        )
    j = int(np.argmin(res.pvalues))
    if need is not None and kept[j] < need and res.n_opt == 0:
        return (
            f"threshold {g[j]:.4g} keeps {int(kept[j])} calibration inputs; at least {need} are "
            f"needed at {levels}, delta = {delta:.6g} ({res.procedure}); no threshold keeps "
            "enough inputs with few enough errors",
            None,
        )
    return (
        f"no threshold is certified at {levels}, delta = {delta:.6g}: the smallest p-value is "
        f"{res.pvalues[j]:.4g}, at threshold {g[j]:.4g} ({res.procedure}); {res.reason}",
        None,
    )
