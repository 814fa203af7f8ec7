"""Error messages print plain numbers: ``found 2.0``, not ``found np.float64(2.0)``.

numpy >= 2 writes ``repr(np.float64(2.0))`` as ``np.float64(2.0)``; the shared validators format
every offending value with ``_validation.plain``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ctd_stats import binomial_pvalue, learn_then_test
from ctd_stats._validation import (
    as_binary_array,
    as_float_array,
    check_choice,
    check_level,
    check_positive_finite,
    plain,
)


def test_plain_unwraps_numpy_scalars() -> None:
    assert plain(np.float64(2.0)) == "2.0"
    assert plain(np.int64(3)) == "3"
    assert plain(np.str_("x")) == "'x'"
    assert plain(np.bool_(True)) == "True"
    assert plain(2.5) == "2.5" and plain("a") == "'a'"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: as_float_array(np.array([0.5, 2.0]), "x", high=1.0),
            "x: values must be <= 1.0, found 2.0",
        ),
        (
            lambda: as_float_array([-1.0], "x", low=np.float64(0.0)),
            "x: values must be >= 0.0, found -1.0",
        ),
        (
            lambda: as_binary_array(np.array([0.0, 2.0]), "labels"),
            "labels: values must be 0 or 1, found 2.0",
        ),
        (lambda: check_level(np.float64(2.0), "alpha"), "alpha: must lie in (0, 1), got 2.0"),
        (lambda: check_choice(np.str_("x"), "rule", ["a"]), "rule: must be one of ['a'], got 'x'"),
        (
            lambda: check_positive_finite(np.float64(-1.0), "C"),
            "C: must be a positive finite number, got -1.0",
        ),
        (
            lambda: binomial_pvalue(1, 10, alpha=np.float64(1.5)),
            "alpha: must lie in (0, 1), got 1.5",
        ),
        (
            lambda: learn_then_test(np.array([[0.5, 3.0]]), alpha=0.1, delta=0.1),
            "losses: values must be <= 1.0, found 3.0",
        ),
    ],
)
def test_messages_show_plain_numbers(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message
    assert "np." not in str(info.value)
