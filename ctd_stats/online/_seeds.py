"""Seed checks shared by the monitoring and cascade halves (named errors before numpy's)."""

from __future__ import annotations

from typing import Any

import numpy as np

_INT64_MAX = int(np.iinfo(np.int64).max)


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
