"""Importance-weighted losses from an audit sample, for the anytime certifier.

A risk that needs a label (the cascade's error) is observed only for audited inputs: input t is
audited with a known probability π_t ∈ [π_min, 1], chosen before its label is seen (it may depend
on the past and on the input), and A_t ~ Bernoulli(π_t). The weighted loss

    L̃_t = A_t L_t / π_t ∈ [0, B/π_min],   E[L̃_t | past, π_t] = E[L_t | past, π_t],

keeps every conditional mean, so the betting e-process of :class:`~ctd_stats.online.AnytimeLTT`
run with ``bound = B/π_min`` stays anytime valid (Xu, Wang & Ramdas 2024, active anytime-valid
risk control, Sec. 3).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._validation import as_binary_array, as_float_array, check_level, plain
from ..typing import FloatArray

__all__ = ["importance_weighted_losses"]


def importance_weighted_losses(
    losses: ArrayLike,
    audited: ArrayLike,
    pi: float | ArrayLike,
    *,
    pi_min: float | None = None,
    bound: float = 1.0,
) -> FloatArray:
    """L̃ = A·L/π for one input (losses (m,)) or T inputs (losses (T, m)).

    Parameters
    ----------
    losses
        The grid's losses in [0, ``bound``] where the input was audited; NaN (no label) where
        it was not. Shape (m,) for one input with a scalar ``audited``, or (T, m) with (T,).
    audited
        Whether each input was audited (0/1 or bool).
    pi
        The audit probability of each input, in (0, 1], fixed before the label was seen
        (a scalar or one per input).
    pi_min
        Optional floor: every ``pi`` must be ≥ ``pi_min``, so L̃ ≤ ``bound``/``pi_min`` (the
        certifier's bound).
    bound
        Upper bound B of the unweighted losses.

    Returns
    -------
    FloatArray
        The weighted losses, the shape of ``losses``: 0 where not audited.

    Raises
    ------
    ValueError
        ``pi`` outside (0, 1] or below ``pi_min``; ``losses`` with a label (a non-NaN value) on
        an unaudited input, a missing label (NaN) on an audited one, or a loss outside
        [0, ``bound``]; shapes that do not match.

    Notes
    -----
    Unbiasedness, E[A L/π | past, π] = L·π/π, needs π fixed before the label is seen and A drawn
    independently of the label (Xu, Wang & Ramdas 2024, Sec. 3).

    Examples
    --------
    >>> import numpy as np
    >>> importance_weighted_losses([[1.0, 0.0], [np.nan, np.nan]], [1, 0], 0.5)
    array([[2., 0.],
           [0., 0.]])
    """
    if not (isinstance(bound, (int, float)) and not isinstance(bound, bool) and bound > 0):
        raise ValueError(f"bound: must be a positive number, got {plain(bound)}")
    raw = _losses_with_nan(losses)
    single = raw.ndim == 1
    rows = raw.reshape(1, -1) if single else raw
    a = as_binary_array(np.reshape(_read(audited, "audited"), -1), "audited").astype(bool)
    if a.size != rows.shape[0]:
        want = "a scalar" if single else f"{rows.shape[0]} values (one per input)"
        raise ValueError(f"audited: expected {want}, got {a.size}")
    p = as_float_array(pi, "pi", ndim=(0, 1)).reshape(-1)
    if p.size not in (1, a.size):
        raise ValueError(f"pi: expected one probability or {a.size}, got {p.size}")
    if np.any(p <= 0.0) or np.any(p > 1.0):
        raise ValueError(
            f"pi: audit probabilities must lie in (0, 1], got {plain(p.min())}..{plain(p.max())}"
        )
    if pi_min is not None:
        floor = check_level(pi_min, "pi_min", closed_right=True)
        if p.min() < floor:
            raise ValueError(f"pi: must be >= pi_min = {plain(floor)}, found {float(p.min())}")
    missing = np.isnan(rows)
    if np.any(~missing[~a]):
        raise ValueError("losses: a label (non-NaN loss) was given for an unaudited input")
    if np.any(missing[a]):
        raise ValueError("losses: an audited input has a missing (NaN) loss")
    seen = rows[a]
    if seen.size and (seen.min() < 0.0 or seen.max() > bound):
        raise ValueError(f"losses: audited losses must lie in [0, {plain(bound)}]")
    pis = np.broadcast_to(p, a.shape)[:, None]
    out = np.where(a[:, None], np.where(missing, 0.0, rows) / pis, 0.0)
    return out[0] if single else out


def _losses_with_nan(losses: ArrayLike) -> FloatArray:
    """A 1-d or 2-d float array in which NaN (no label) is allowed; ±inf is not."""
    if isinstance(losses, (str, bytes)):
        raise TypeError(f"losses: expected an array of numbers, got {type(losses).__name__}")
    arr = _read(losses, "losses")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"losses: expected numbers, got an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim not in (1, 2) or arr.size == 0:
        raise ValueError(f"losses: expected a non-empty (m,) or (T, m) array, got {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError("losses: contains infinite values")
    return arr


def _read(value: ArrayLike, name: str) -> np.ndarray:
    """``np.asarray(value)``, a ragged sequence refused with an error that names ``name``."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from None
