"""ThresholdCalibration ships as exact JSON: round trip, guarantee text, tamper refusal, reprs."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctd_stats._serialize import array_sha256
from ctd_stats.cascade import (
    CascadeTable,
    ThresholdCalibration,
    calibrate_budget_only,
    calibrate_ctd,
    calibrate_plug_in,
    calibrate_uncertainty,
    simulate_cascade,
)


def _table(n: int, seed: int) -> CascadeTable:
    t = simulate_cascade(n, seed=seed)
    labels = t.labels.copy()
    labels[:2] = [0, 1]  # both classes in every split is not guaranteed, but in the table
    return CascadeTable.from_arrays(probe=t.probe, expert=t.expert, dv=t.dv, labels=labels)


def _calibrate(method: str, t: CascadeTable, alpha: float, strict: bool) -> ThresholdCalibration:
    if method == "ctd":
        return calibrate_ctd(t.labels, t.probe, t.expert, t.dv, alpha=alpha, strict=strict)
    if method == "unc":
        return calibrate_uncertainty(t.labels, t.probe, t.expert, alpha=alpha, performance="auroc")
    if method == "budget_only":
        return calibrate_budget_only(t.dv, alpha=alpha, strict=strict)
    return calibrate_plug_in(t.dv, alpha=alpha)


def assert_same(a: ThresholdCalibration, b: ThresholdCalibration) -> None:
    assert type(a) is type(b)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f.name
        elif isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), f.name
        else:
            assert x == y and type(x) is type(y), f.name


alphas = st.one_of(st.sampled_from([1.0, 1e-3, 0.05]), st.floats(0.001, 1.0))


@given(
    st.sampled_from(["ctd", "unc", "budget_only", "plug_in"]),
    st.integers(8, 300),
    st.integers(0, 10_000),
    alphas,
    st.booleans(),
)
def test_round_trip_is_exact(method: str, n: int, seed: int, alpha: float, strict: bool) -> None:
    t = _table(n, seed)
    try:
        c = _calibrate(method, t, alpha, strict)
    except ValueError as exc:  # an opt split with one class cannot rank for AUROC
        assert str(exc).startswith("labels:")
        return
    back = ThresholdCalibration.from_json(c.to_json())
    assert_same(c, back)
    # the reloaded policy takes the same decisions
    x = t.probe if c.signal == "uncertainty" else t.dv
    assert np.array_equal(back.delegate(x), c.delegate(x))
    if not c.found:
        assert back.threshold == math.inf and back.reason and "found=False" in repr(back)


def test_payload_header_states_guarantee_n_and_data_hash() -> None:
    t = simulate_cascade(500, seed=1)
    c = calibrate_ctd(t.labels, t.probe, t.expert, t.dv, alpha=0.2)
    payload = json.loads(c.to_json())
    assert payload["kind"] == "ThresholdCalibration"
    assert "1 - delta" in payload["guarantee"] and "alpha" in payload["guarantee"]
    assert payload["n"] == 500 == c.n
    assert payload["calibration_sha256"] == array_sha256(
        np.stack([t.dv, t.probe, t.expert, t.labels])
    )
    assert payload["settings"]["performance"] == "accuracy"
    plug = json.loads(calibrate_plug_in(t.dv, alpha=0.2).to_json())
    assert plug["guarantee"].startswith("NO guarantee") and plug["fields"]["delta"] is None


def test_tampered_unknown_schema_and_malformed_payloads_are_refused() -> None:
    t = simulate_cascade(300, seed=2)
    text = calibrate_budget_only(t.dv, alpha=0.3).to_json()
    payload = json.loads(text)
    edited = json.loads(text)
    edited["fields"]["threshold"] = edited["fields"]["threshold"] - 0.1
    with pytest.raises(ValueError, match="checksum"):
        ThresholdCalibration.from_json(json.dumps(edited))
    future = dict(payload, schema_version=99)
    with pytest.raises(ValueError, match="schema_version"):
        ThresholdCalibration.from_json(json.dumps(future))
    with pytest.raises(ValueError, match="text:"):
        ThresholdCalibration.from_json(text[: len(text) // 2])
    with pytest.raises(ValueError, match="text:"):
        ThresholdCalibration.from_json(json.dumps({"format": "ctd_stats"}))
    with pytest.raises(TypeError, match="text"):
        ThresholdCalibration.from_json(payload)


def test_not_found_result_is_explicit() -> None:
    t = simulate_cascade(60, seed=3)
    c = calibrate_ctd(t.labels, t.probe, t.expert, t.dv, alpha=0.01)
    assert not c.found and c.index is None and c.threshold == math.inf
    assert c.reason is not None and c.reason.startswith("n: 42 test points")
    # 0.99^n <= 0.1 needs 230 test points; with opt_fraction 0.3 that is n = 328
    assert c.min_n == 328 and 328 - int(0.3 * 328) >= 230 > 327 - int(0.3 * 327)
    lines = repr(c).splitlines()
    assert lines[0] == "ThresholdCalibration(method=ctd, found=False, threshold=inf)"
    assert lines[1].startswith("  reason: n: 42 test points")  # the repr leads with why
    assert not c.delegate(t.dv).any()
    big = simulate_cascade(c.min_n, seed=3)
    assert calibrate_ctd(big.labels, big.probe, big.expert, big.dv, alpha=0.01).found


def test_compact_reprs() -> None:
    t = simulate_cascade(400, seed=4)
    c = calibrate_ctd(t.labels, t.probe, t.expert, t.dv, alpha=0.3)
    r = repr(c)
    assert r.startswith("ThresholdCalibration(method=ctd, found=True") and len(r.splitlines()) <= 12
    assert "None (no guarantee)" in repr(calibrate_plug_in(t.dv, alpha=0.3))
