"""The shared JSON payload (ctd_stats._serialize): exact round trip, tamper, schema, malformed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ctd_stats._serialize import SCHEMA_VERSION, JSONSerializable, array_sha256


@dataclass(frozen=True)
class _Inner(JSONSerializable):
    value: float
    mask: np.ndarray


@dataclass(frozen=True)
class _Outer(JSONSerializable):
    a: np.ndarray
    b: Any
    inner: _Inner
    label: str | None
    flag: bool
    count: int

    def _json_meta(self) -> dict[str, Any]:
        return {
            "guarantee": "a test guarantee",
            "n": self.count,
            "calibration_sha256": array_sha256(self.a),
            "settings": {"label": self.label, "levels": (0.1, float("inf"))},
        }


floats = st.floats(allow_nan=True, allow_infinity=True)
any_arrays = st.one_of(
    arrays(np.float64, st.tuples(st.integers(0, 3), st.integers(0, 3)), elements=floats),
    arrays(np.int64, st.integers(0, 5)),
    arrays(np.bool_, st.integers(0, 5)),
    arrays(np.float32, st.integers(0, 4), elements=st.floats(width=32)),
    arrays(np.uint8, st.integers(0, 4)),
)
tagged = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), floats, st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
    ),
    max_leaves=8,
)


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, np.ndarray):
        return (
            isinstance(y, np.ndarray)
            and x.dtype == y.dtype
            and x.shape == y.shape
            and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
        )
    if isinstance(x, float):
        return isinstance(y, float) and (x == y or (x != x and y != y))
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(map(_same, x, y))
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, JSONSerializable):
        return type(x) is type(y) and all(
            _same(getattr(x, f), getattr(y, f))
            for f in x.__dataclass_fields__  # type: ignore[attr-defined]
        )
    return type(x) is type(y) and x == y


def _outer(a: np.ndarray, b: Any, v: float = 0.5) -> _Outer:
    inner = _Inner(value=v, mask=np.array([True, False]))
    return _Outer(a=a, b=b, inner=inner, label="x", flag=True, count=3)


@given(any_arrays, tagged, floats)
def test_round_trip_is_exact(a: np.ndarray, b: Any, v: float) -> None:
    obj = _outer(a, b, v)
    back = _Outer.from_json(obj.to_json())
    assert _same(obj, back)


def test_header_and_infinities() -> None:
    obj = _outer(np.array([np.inf, -np.inf, np.nan, 0.1]), {"k": (float("-inf"), 1)})
    payload = json.loads(obj.to_json())
    assert payload["schema_version"] == SCHEMA_VERSION and payload["kind"] == "_Outer"
    assert payload["guarantee"] == "a test guarantee" and payload["n"] == 3
    assert payload["calibration_sha256"] == array_sha256(obj.a)
    assert payload["settings"]["levels"] == {"__tuple__": [0.1, {"__float__": "inf"}]}
    assert payload["checksum"].startswith("sha256:")
    back = _Outer.from_json(obj.to_json())
    assert _same(obj, back)


def test_array_sha256_depends_on_values_and_shape() -> None:
    a = np.arange(6.0)
    assert array_sha256(a) == array_sha256(list(a)) == array_sha256(a.astype(np.int64))
    assert array_sha256(a) != array_sha256(a.reshape(2, 3))
    assert array_sha256(a) != array_sha256(a + 1e-16 * 0 + np.array([0, 0, 0, 0, 0, 1e-12]))


def _edit(text: str, fn: Any) -> str:
    payload = json.loads(text)
    fn(payload)
    return json.dumps(payload)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["fields"].__setitem__("count", 4), "text: checksum mismatch"),
        (lambda p: p.__setitem__("guarantee", "none"), "text: checksum mismatch"),
        (lambda p: p.__setitem__("schema_version", 99), "text: unknown schema_version 99"),
        (lambda p: p.pop("checksum"), r"text: malformed payload \(missing"),
        (lambda p: p.__setitem__("format", "other"), "text: not a ctd_stats payload"),
    ],
)
def test_tampered_payloads_are_refused(edit: Any, message: str) -> None:
    text = _outer(np.arange(3.0), None).to_json()
    with pytest.raises(ValueError, match=message):
        _Outer.from_json(_edit(text, edit))


def test_wrong_kind_malformed_and_not_text() -> None:
    text = _outer(np.arange(3.0), None).to_json()
    with pytest.raises(ValueError, match="text: holds a '_Outer' payload, not '_Inner'"):
        _Inner.from_json(text)
    for bad in ("", "{", "[1, 2]", "null", '{"format": "ctd_stats", "schema_version": 1}'):
        with pytest.raises(ValueError, match=r"^text:"):
            _Outer.from_json(bad)
    for wrong in (None, 3, ["a"], {"format": "ctd_stats"}):
        with pytest.raises(TypeError, match=r"^text:"):
            _Outer.from_json(wrong)  # type: ignore[arg-type]


def _recheck(payload: dict[str, Any]) -> str:
    """Re-sign an edited payload, as a careless tool would: only the content checks remain."""
    from ctd_stats._serialize import _checksum

    payload["checksum"] = _checksum(payload)
    return json.dumps(payload)


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p["fields"].pop("count"),
        lambda p: p["fields"].__setitem__("extra", 1),
        lambda p: p["fields"].__setitem__(
            "a", {"__ndarray__": {"dtype": "<U3", "shape": [0], "data": []}}
        ),
        lambda p: p["fields"].__setitem__("b", {"__float__": "big"}),
        lambda p: p["fields"].__setitem__("b", {"__weird__": 1}),
        lambda p: p["fields"].__setitem__("b", {"x": 1, "y": 2}),
        lambda p: p["fields"]["inner"]["__result__"].__setitem__("kind", "Nope"),
        lambda p: p["fields"].__setitem__(
            "a", {"__ndarray__": {"dtype": "<f8", "shape": [5], "data": [1]}}
        ),
        lambda p: p["fields"].__setitem__("a", {"__ndarray__": {"dtype": "<f8"}}),
        lambda p: p["fields"].__setitem__(
            "a", {"__ndarray__": {"dtype": "zz", "shape": [0], "data": []}}
        ),
    ],
)
def test_resigned_malformed_fields_raise_value_error_named_text(edit: Any) -> None:
    payload = json.loads(_outer(np.arange(3.0), None).to_json())
    edit(payload)
    with pytest.raises(ValueError, match=r"^text:"):
        _Outer.from_json(_recheck(payload))


def test_unserialisable_values_are_type_errors() -> None:
    with pytest.raises(TypeError):
        _outer(np.arange(2.0), np.array(["a"])).to_json()
    with pytest.raises(TypeError):
        _outer(np.arange(2.0), {1: 2}).to_json()
    with pytest.raises(TypeError):
        _outer(np.arange(2.0), object()).to_json()
