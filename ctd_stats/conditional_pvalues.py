"""Learn-then-Test p-values with one sample size per grid point (conditional risks).

Risks such as alarm precision (false alarms among the FLAGGED inputs) or the error of kept
answers (errors among the KEPT inputs) average over rows selected by the threshold itself, so
grid point j has its own sample size n_j. Its binomial p-value P(Bin(n_j, α) ≤ k_j) is valid
given n_j because whether a row counts depends on that row alone (given the selection, the
selected losses are i.i.d. Bernoulli with the conditional risk); the FWER procedures of the LTT
paper (Angelopoulos et al. 2022, Sec. 3) then apply unchanged. n_j = 0 gives p = 1.

Kernels of :func:`ctd_stats.ltt.learn_then_test` (``n`` per grid point, or ``where=``); not
part of the public API.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._validation import as_int_array
from .pvalues import from_counts, from_losses, wsr_kernel
from .typing import BoolArray, FloatArray, IntArray

__all__: list[str] = []


def where_iv(where: ArrayLike, shape: tuple[int, ...]) -> BoolArray:
    """``where``: a boolean array of exactly the shape of ``losses``."""
    try:
        mask = np.asarray(where)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise ValueError(f"where: cannot be read as an array ({exc})") from None
    if mask.dtype != np.bool_:
        raise ValueError(f"where: expected a boolean mask, got dtype {mask.dtype}")
    if mask.shape != shape:
        raise ValueError(f"where: expected the shape of losses {shape}, got {mask.shape}")
    return mask


def counts_sizes_iv(counts: ArrayLike, n: ArrayLike) -> tuple[IntArray, IntArray]:
    """Integer counts (m,) or (n_risks, m), ≥ 0, and their sample sizes (:func:`sizes_iv`).

    Counts and sizes from :func:`ctd_stats.risks.conditional_risk` (int64 arrays of one shape)
    are checked in two reductions and copied; anything else, or any failure, takes the general
    path, which gives the same arrays and names the faulty argument.
    """
    if (
        isinstance(counts, np.ndarray)
        and isinstance(n, np.ndarray)
        and counts.dtype == np.int64
        and n.dtype == np.int64
        and counts.shape == n.shape
        and counts.ndim in (1, 2)
        and counts.size
        and not np.count_nonzero(counts < 0)
        and not np.count_nonzero(counts > n)  # hence n ≥ counts ≥ 0 everywhere
    ):
        return counts.astype(np.int64), n.astype(np.int64)  # copies, as the general path
    k = as_int_array(counts, "counts", ndim=(1, 2), low=0)
    return k, sizes_iv(n, k)


def sizes_iv(n: ArrayLike, k: IntArray) -> IntArray:
    """Per-grid-point sample sizes: integers ≥ 0 broadcastable to ``counts``, each ≥ its count."""
    sizes = as_int_array(n, "n", ndim=(0, 1, 2), low=0)
    if sizes.shape != k.shape:
        try:
            sizes = np.ascontiguousarray(np.broadcast_to(sizes, k.shape))
        except ValueError:
            raise ValueError(
                f"n: shape {sizes.shape} does not broadcast to the shape of counts {k.shape}"
            ) from None
    above = k > sizes
    if above.any():
        at = tuple(int(i) for i in np.argwhere(above)[0])
        where = f"grid point {at[-1]}" + ("" if k.ndim == 1 else f" of risk {at[0]}")
        raise ValueError(f"counts: {int(k[at])} losses at {where} exceed its n = {int(sizes[at])}")
    return sizes


def count_pvalues(
    k: IntArray | FloatArray, n: int | IntArray, alphas: FloatArray, method: str
) -> FloatArray:
    """(n_risks, m) p-values from counts (n one size, or per risk and grid point)."""
    if alphas.size == 1:
        return from_counts(k[0], n if isinstance(n, int) else n[0], float(alphas[0]), method)[None]
    per_risk = [
        from_counts(k[r], n if isinstance(n, int) else n[r], float(a), method)
        for r, a in enumerate(alphas)
    ]
    return per_risk[0][None] if len(per_risk) == 1 else np.stack(per_risk)


def risk_pvalues(
    x: FloatArray, mask: BoolArray | None, alphas: FloatArray, method: str, delta: float
) -> tuple[FloatArray, IntArray | None]:
    """(n_risks, m) p-values from losses (n_risks, n, m), with the per-point sizes under a mask."""
    if mask is None:
        per_risk = [from_losses(x[r], float(a), method, delta) for r, a in enumerate(alphas)]
        return (per_risk[0][None] if len(per_risk) == 1 else np.stack(per_risk)), None
    sizes = mask.sum(axis=1)
    if method != "wsr":
        return count_pvalues((x * mask).sum(axis=1), sizes, alphas, method), sizes
    # WSR bets along each grid point's own selected rows, in their original order.
    p = np.ones(sizes.shape)
    for r, a in enumerate(alphas):
        for j in np.flatnonzero(sizes[r]):
            p[r, j] = wsr_kernel(x[r, mask[r, :, j], j], float(a), delta)
    return p, sizes


def too_few_reason(
    sizes: IntArray,
    needed: list[int | None],
    alphas: FloatArray,
    delta: float,
    method: str,
    procedure: str,
    idx: IntArray | None,
    op: str,
    level: float,
) -> str | None:
    """Why nothing was certified, when grid points have too few rows of their own (or None)."""
    need = np.array(needed, dtype=np.int64)[:, None]
    enough: BoolArray = np.all(sizes >= need, axis=0)  # zero losses could certify these
    levels = ", ".join(f"{float(a):.4g}" for a in alphas)
    rule = f"at alpha = {levels}, delta = {delta:.4g} ({method} p-value {op} {level:.4g})"
    if not enough.any():
        j = int(np.argmax((sizes - need).min(axis=0)))
        r = int(np.argmin(sizes[:, j] - need[:, 0]))
        return (
            f"too few calibration points at every grid point: grid point {j} has the most, "
            f"n = {int(sizes[r, j])} counting toward its risk; at least {int(need[r, 0])} are "
            f"needed {rule}"
        )
    if procedure in ("fixed_sequence", "split_fixed_sequence") and idx is not None:
        first = int(idx[0])
        if not enough[first]:
            r = int(np.argmin(sizes[:, first] - need[:, 0]))
            return (
                f"grid point {first}, tested first, has n = {int(sizes[r, first])} calibration "
                f"points counting toward its risk; at least {int(need[r, 0])} are needed "
                f"{rule}, so testing stopped (procedure='holm', 'fallback' or "
                "'split_fixed_sequence' do not stop there)"
            )
    return None
