"""Compact, scipy.stats-style reprs for the cascade results (arrays summarised, never printed)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__: list[str] = []


def summarise(name: str, arr: NDArray[np.generic] | None) -> str:
    """``name=array(shape=(m,), min=…, max=…)`` (finite values only; NaN-only arrays say so)."""
    if arr is None:
        return f"{name}=None"
    a = np.asarray(arr)
    if a.size == 0:
        return f"{name}=array(shape={a.shape})"
    if a.dtype == np.bool_:
        return f"{name}=array(shape={a.shape}, {int(a.sum())} True)"
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    if finite.size == 0:
        return f"{name}=array(shape={a.shape}, no finite values)"
    return f"{name}=array(shape={a.shape}, min={finite.min():.4g}, max={finite.max():.4g})"


def fmt(x: float | None) -> str:
    """A float in 6 significant digits (``None`` stays ``None``)."""
    return "None" if x is None else f"{x:.6g}"
