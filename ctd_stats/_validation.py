"""Input validation shared by every public function.

Every check raises ``ValueError`` (or ``TypeError`` for a wrong kind of object) whose message
starts with the argument's name, so a user knows at once which input is wrong. Nothing is
silently dropped, clipped or coerced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Re-exported: modules may take the array aliases from here or from the public ctd_stats.typing.
from .typing import BoolArray as BoolArray
from .typing import FloatArray as FloatArray
from .typing import IntArray as IntArray

_INT64_MAX = int(np.iinfo(np.int64).max)


def as_float_array(
    value: ArrayLike,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    allow_empty: bool = False,
    finite: bool = True,
    low: float | None = None,
    high: float | None = None,
) -> FloatArray:
    """Convert ``value`` to a float64 array and check it.

    ``ndim`` may be one number or a tuple of allowed numbers; ``finite`` rejects NaN and ±inf
    (NaN is always rejected); ``low``/``high`` are inclusive bounds.
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name}: expected an array of numbers, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested sequences
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from None
    if arr.dtype == np.bool_:
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected numbers, got an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name}: expected {want} dimension(s), got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name}: must not be empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name}: contains NaN")
    if finite and np.isinf(arr).any():
        raise ValueError(f"{name}: contains infinite values")
    if low is not None and arr.size and arr.min() < low:
        raise ValueError(f"{name}: values must be >= {plain(low)}, found {plain(arr.min())}")
    if high is not None and arr.size and arr.max() > high:
        raise ValueError(f"{name}: values must be <= {plain(high)}, found {plain(arr.max())}")
    return arr


def as_int_array(
    value: ArrayLike,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    allow_empty: bool = False,
    low: int | None = None,
    high: int | None = None,
) -> IntArray:
    """Convert ``value`` to an int64 array; floats are accepted only if integral.

    Integrality and the range are checked *before* the cast, so a value such as 9.3e18 is
    reported as out of range instead of wrapping around to a negative int64.
    """
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu":
        return _int_array_fast(value, name, ndim=ndim, allow_empty=allow_empty, low=low, high=high)
    arr = as_float_array(value, name, ndim=ndim, allow_empty=allow_empty)
    raw = np.asarray(value)
    if raw.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
        raise ValueError(f"{name}: expected integer counts, found non-integer values")
    if low is not None and arr.size and arr.min() < low:
        raise ValueError(f"{name}: values must be >= {plain(low)}, found {_as_int_repr(arr.min())}")
    if high is not None and arr.size and arr.max() > high:
        raise ValueError(
            f"{name}: values must be <= {plain(high)}, found {_as_int_repr(arr.max())}"
        )
    if raw.dtype.kind == "u" and raw.size and raw.max() > _INT64_MAX:
        raise ValueError(f"{name}: values must fit in a 64-bit integer")
    if raw.dtype.kind in "iub":
        return raw.astype(np.int64)  # exact: no detour through float64
    if arr.size and (arr.min() < -(2.0**63) or arr.max() >= 2.0**63):
        raise ValueError(f"{name}: values must fit in a 64-bit integer")
    return arr.astype(np.int64)


def _int_array_fast(
    raw: NDArray[Any],
    name: str,
    *,
    ndim: int | tuple[int, ...] | None,
    allow_empty: bool,
    low: int | None,
    high: int | None,
) -> IntArray:
    """:func:`as_int_array` for an integer ndarray: the same checks, no float copy."""
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if raw.ndim not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name}: expected {want} dimension(s), got shape {raw.shape}")
    if raw.size == 0:
        if not allow_empty:
            raise ValueError(f"{name}: must not be empty")
        return raw.astype(np.int64)
    lo, hi = int(raw.min()), int(raw.max())
    if low is not None and lo < low:
        raise ValueError(f"{name}: values must be >= {plain(low)}, found {lo}")
    if high is not None and hi > high:
        raise ValueError(f"{name}: values must be <= {plain(high)}, found {hi}")
    if hi > _INT64_MAX:
        raise ValueError(f"{name}: values must fit in a 64-bit integer")
    return raw.astype(np.int64)


def plain(value: Any) -> str:
    """A value as an error message shows it: ``2.0``, not ``np.float64(2.0)`` (numpy >= 2 reprs).

    numpy scalars become the Python number (or string, bool) they hold; everything else is its
    ``repr``.
    """
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _as_int_repr(v: np.float64) -> str:
    return str(int(v)) if abs(v) < 2.0**63 else repr(float(v))


def as_binary_array(value: ArrayLike, name: str, *, ndim: int | tuple[int, ...] = 1) -> IntArray:
    """Labels or indicators that must be exactly 0 or 1 (bool accepted)."""
    arr = as_float_array(value, name, ndim=ndim)
    if not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)][0]
        raise ValueError(f"{name}: values must be 0 or 1, found {plain(bad)}")
    return arr.astype(np.int64)


def check_level(value: float, name: str, *, closed_right: bool = False) -> float:
    """A probability level such as α or δ: a real number in (0, 1) (or (0, 1] if asked)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    upper_ok = v <= 1.0 if closed_right else v < 1.0
    if math.isnan(v) or not (v > 0.0 and upper_ok):
        interval = "(0, 1]" if closed_right else "(0, 1)"
        raise ValueError(f"{name}: must lie in {interval}, got {plain(value)}")
    return v


def check_levels(
    value: float | Sequence[float] | ArrayLike, name: str, *, closed_right: bool = False
) -> FloatArray:
    """One level or a 1-d sequence of levels, each in (0, 1) (or (0, 1] if asked); 1-d out."""
    arr = as_float_array(value, name, ndim=(0, 1))
    arr = np.atleast_1d(arr)
    for v in arr:
        check_level(float(v), name, closed_right=closed_right)
    return arr


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if type(value) is int and value >= minimum:  # the common case: no isinstance on numpy types
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if int(value) < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: must be one of {sorted(choices)}, got {plain(value)}")
    return value


def check_same_length(name_a: str, a: NDArray[Any], name_b: str, b: NDArray[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_b}: length {len(b)} does not match {name_a} (length {len(a)})")


def check_sorted(arr: NDArray[Any], name: str, *, strict: bool = True) -> None:
    """The grid must be increasing (strictly by default)."""
    diffs = np.diff(arr)
    ok = bool(np.all(diffs > 0)) if strict else bool(np.all(diffs >= 0))
    if not ok:
        kind = "strictly increasing" if strict else "non-decreasing"
        raise ValueError(f"{name}: must be {kind}")


def check_grid(grid: ArrayLike, name: str = "grid", *, finite: bool = True) -> FloatArray:
    """A user-given threshold grid: 1-d, non-empty, strictly increasing.

    ``finite=False`` admits ±inf end points (the online calibrations' "never / always alarm").
    """
    g = as_float_array(grid, name, ndim=1, finite=finite)
    check_sorted(g, name)
    return g


def check_positive_finite(value: Any, name: str) -> float:
    """A positive finite real number, such as a regularisation constant ``C``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: must be a positive finite number, got {plain(value)}")
    v = float(value)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{name}: must be a positive finite number, got {plain(value)}")
    return v


def check_seed(value: Any, name: str = "seed", *, allow_none: bool = False) -> Any:
    """A seed for ``numpy.random.default_rng``: an integer >= 0, a Generator, a BitGenerator or
    a SeedSequence (or None when ``allow_none``); returned unchanged."""
    if value is None and allow_none:
        return value
    if isinstance(value, (np.random.Generator, np.random.BitGenerator, np.random.SeedSequence)):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name}: expected an integer or a numpy Generator, got {type(value).__name__}"
        )
    if value < 0:
        raise ValueError(f"{name}: must be >= 0, got {value}")
    return value


def check_int_seed(value: Any, name: str = "seed", *, count: int = 1) -> int:
    """An integer seed >= 0 such that ``seed + count - 1`` still fits in an int64."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    v = int(value)
    if v < 0 or v > _INT64_MAX - (count - 1):
        raise ValueError(f"{name}: must lie in [0, {_INT64_MAX - (count - 1)}], got {v}")
    return v
