"""Compact, scipy.stats-style reprs for every result and state of the package.

A result over a 1,000-point grid must print in a dozen lines, not 47 kB: arrays are summarised
(shape, dtype, a few values, range or count of True), scalars printed short. Every result and
state class writes its ``__repr__`` as one call of :func:`result_repr`, so they all look alike::

    LTTResult(found=False, n_certified=0)
      reason: no grid point certified ...
      certified: bool[1000] [False, False, False, ..., False, False, False] (0 True)
      pvalues: float64[1000] [0.91, 0.93, 0.95, ..., 1, 1, 1] (min 0.42, max 1)

For example::

    def __repr__(self) -> str:
        return result_repr(self, f"found={self.found}", ["reason", "threshold", "pvalues"])
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["fmt", "format_value", "headline", "result_repr", "summarise", "summarise_array"]

#: Arrays with at most this many elements are printed in full.
_FULL = 6
#: Elements shown at each end of a longer array.
_EDGE = 3
#: Long lines (reasons) are wrapped to fit a terminal or a book page.
_WIDTH = 96


def _fmt_scalar(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.4g}"
    return repr(x)


def summarise_array(a: Any) -> str:
    """One-line summary of an array: ``dtype[shape] values`` with a range or True count.

    Short 1-d arrays (≤ 6 elements) are printed in full; longer ones show the first and last
    three values. Boolean arrays add the number of True entries, numeric ones min/max over the
    finite-or-infinite values (NaN ignored).
    """
    arr = np.asarray(a)
    shape = ",".join(str(s) for s in arr.shape)
    head = f"{arr.dtype.name}[{shape}]"
    if arr.size == 0:
        return f"{head} (empty)"
    flat = arr.ravel()
    if flat.size <= _FULL:
        body = "[" + ", ".join(_fmt_scalar(v) for v in flat) + "]"
    else:
        left = ", ".join(_fmt_scalar(v) for v in flat[:_EDGE])
        right = ", ".join(_fmt_scalar(v) for v in flat[-_EDGE:])
        body = f"[{left}, ..., {right}]"
    if arr.dtype.kind == "b":
        return f"{head} {body} ({int(np.count_nonzero(flat))} True)"
    if arr.dtype.kind in "iuf" and flat.size > _FULL:
        values = flat[~np.isnan(flat)] if arr.dtype.kind == "f" else flat
        if values.size:
            lo, hi = _fmt_scalar(values.min()), _fmt_scalar(values.max())
            return f"{head} {body} (min {lo}, max {hi})"
    return f"{head} {body}"


def format_value(value: Any) -> str:
    """Arrays summarised with :func:`summarise_array`, tuples of arrays likewise, scalars short."""
    if isinstance(value, np.ndarray):
        return _fmt_scalar(value[()]) if value.ndim == 0 else summarise_array(value)
    if isinstance(value, np.generic):
        return _fmt_scalar(value)
    if isinstance(value, (list, tuple)) and len(value) > _FULL:
        return summarise_array(np.asarray(value)) if _numeric(value) else f"<{len(value)} items>"
    if isinstance(value, str):
        return value  # reasons and names read better unquoted
    if isinstance(value, float):
        return _fmt_scalar(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _numeric(values: Iterable[Any]) -> bool:
    return all(isinstance(v, (bool, int, float, np.generic)) for v in values)


def fmt(x: float | None) -> str:
    """A float for a headline, in 6 significant digits (``None`` stays ``"None"``)."""
    return "None" if x is None else f"{x:.6g}"


def summarise(name: str, arr: NDArray[np.generic] | None) -> str:
    """``name=array(shape=(m,), min=…, max=…)`` (finite values only; NaN-only arrays say so).

    The older one-line style of the cascade reprs; new reprs pass arrays to :func:`result_repr`,
    which summarises them with :func:`summarise_array`.
    """
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


def headline(obj: object) -> str:
    """The first line of ``repr(obj)`` (a nested result or state shown by its headline)."""
    return "none" if obj is None else repr(obj).split("\n", 1)[0]


def result_repr(
    obj: object,
    headline: str,
    lines: Iterable[str | tuple[str, Any]] | None = None,
) -> str:
    """``Name(headline)`` then one indented ``key: value`` line per entry, values summarised.

    Parameters
    ----------
    obj
        The object being printed (its class name heads the repr), or the name itself.
    headline
        The most important facts as ``key=value`` pairs, e.g. ``"found=False"`` or
        ``f"found=True, threshold={fmt(t)}"``.
    lines
        Entries below the headline: a field name of ``obj`` (its value is read from it) or a
        ``(key, value)`` pair. ``None`` lists every dataclass field of ``obj`` in order. Put
        ``reason`` / ``min_n`` first when nothing was found so the repr leads with it. Entries
        whose value is ``None`` are skipped.
    """
    name = obj if isinstance(obj, str) else type(obj).__name__
    if lines is None:
        lines = [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else []
    pairs = [(e, getattr(obj, e)) if isinstance(e, str) else e for e in lines]
    body = [
        textwrap.fill(
            f"{key}: {format_value(value)}",
            _WIDTH,
            initial_indent="  ",
            subsequent_indent="    ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        for key, value in pairs
        if value is not None
    ]
    return "\n".join([f"{name}({headline})", *body])
