"""``loaded == original`` works for results with array fields (exact, NaN-aware)."""

from __future__ import annotations

import numpy as np

import ctd_stats as c


def test_restored_calibration_equals_the_original() -> None:
    cal = c.simulate_cascade(1500, seed=3)
    a = c.calibrate_ctd(cal.labels, cal.probe, cal.expert, cal.dv, alpha=0.2, delta=0.1)
    b = c.ThresholdCalibration.from_json(a.to_json())
    assert a == b and not (a != b)
    other = c.calibrate_ctd(cal.labels, cal.probe, cal.expert, cal.dv, alpha=0.3, delta=0.1)
    assert a != other


def test_arrays_compare_by_dtype_shape_and_value() -> None:
    grid = np.linspace(0, 1, 21)
    scores = np.random.default_rng(0).uniform(size=400)
    res = c.learn_then_test(scores[:, None] > grid, alpha=0.3, delta=0.1, order="descending")
    same = c.LTTResult.from_json(res.to_json())
    assert res == same
    looser = c.learn_then_test(scores[:, None] > grid, alpha=0.3, delta=0.2, order="descending")
    assert res != looser
    assert (res == "not a result") is False
