"""The shared JSON payload (ctd_stats._serialize): exact round trip, tamper, schema, malformed."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ctd_stats._serialize import SCHEMA_VERSION, JSONSerializable, array_sha256, exact_eq


@exact_eq
@dataclass(frozen=True)
class _Inner(JSONSerializable, kind="tests.Inner"):
    value: float
    mask: np.ndarray


@exact_eq
@dataclass(frozen=True)
class _Outer(JSONSerializable, kind="tests.Outer"):
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
    if isinstance(x, JSONSerializable) and dataclasses.is_dataclass(x):
        return type(x) is type(y) and all(
            _same(getattr(x, f.name), getattr(y, f.name)) for f in dataclasses.fields(x)
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
    assert payload["schema_version"] == SCHEMA_VERSION and payload["kind"] == "tests.Outer"
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
    wrong_kind = r"text: holds a 'tests\.Outer' payload, not 'tests\.Inner'"
    with pytest.raises(ValueError, match=wrong_kind):
        _Inner.from_json(text)
    for bad in ("", "{", "[1, 2]", "null", '{"format": "ctd_stats", "schema_version": 1}'):
        with pytest.raises(ValueError, match=r"^text:"):
            _Outer.from_json(bad)
    not_text: tuple[Any, ...] = (None, 3, ["a"], {"format": "ctd_stats"})
    for wrong in not_text:
        with pytest.raises(TypeError, match=r"^text:"):
            _Outer.from_json(wrong)


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


# --------------------------------------------------------------------------- kinds and equality
def test_two_classes_claiming_one_kind_raise_at_definition() -> None:
    with pytest.raises(TypeError, match=r"^kind: 'tests.Outer' is already claimed by"):

        @dataclass(frozen=True)
        class _Impostor(JSONSerializable, kind="tests.Outer"):
            a: int

    with pytest.raises(TypeError, match=r"^kind: 'ctd_stats.LTTResult' is already claimed"):

        @dataclass(frozen=True)
        class LTTResult(JSONSerializable, kind="ctd_stats.LTTResult"):
            a: int

    with pytest.raises(TypeError, match=r"^kind: .*_Undeclared must declare its payload kind"):

        @dataclass(frozen=True)
        class _Undeclared(JSONSerializable):  # a kind is required: none is derived from the name
            a: int

    with pytest.raises(TypeError, match=r"^kind: expected a qualified name"):

        class _Bare(JSONSerializable, kind="Bare"):
            pass


def test_ctd_stats_kinds_are_written_without_the_namespace() -> None:
    """``format: ctd_stats`` names the namespace: 1.0 payloads (``"kind": "LTTResult"``) still load,
    and the fully qualified spelling is read as the same kind."""
    import ctd_stats

    res = ctd_stats.learn_then_test(
        np.array([[0, 1], [1, 1], [0, 0]]), alpha=0.5, delta=0.2, order="ascending"
    )
    payload = json.loads(res.to_json())
    assert payload["kind"] == "LTTResult"
    payload["kind"] = "ctd_stats.LTTResult"
    back = ctd_stats.LTTResult.from_json(_recheck(payload))
    assert back == res
    payload["kind"] = "elsewhere.LTTResult"
    with pytest.raises(ValueError, match=r"text: holds a 'elsewhere\.LTTResult' payload"):
        ctd_stats.LTTResult.from_json(_recheck(payload))


# An LTTResult written by ctd_stats 1.0.0 (learn_then_test(counts=[0, 3, 9], n=40, alpha=0.3,
# delta=0.1, order="ascending")): it predates the fields n_opt and sample_sizes.
_LTT_1_0 = (
    '{"format": "ctd_stats", "schema_version": 1, "kind": "LTTResult", "package_version": "1.'
    '0.0", "guarantee": "Learn-then-Test: with probability at least 1 - 0.1 over the 40 calib'
    "ration points, every certified grid point has true risk <= alpha = [0.3] (one level per "
    'risk), by fixed_sequence FWER control of binomial p-values.", "n": 40, "calibration_sha2'
    '56": "bd2cc1afce8582dea2c34b43305b83e52fcb58aa41102f2a842285d5241bd7a9", "settings": {"a'
    'lpha": [0.3], "delta": 0.1, "method": "binomial", "procedure": "fixed_sequence", "strict'
    '": false}, "fields": {"found": true, "certified": {"__ndarray__": {"dtype": "|b1", "shap'
    'e": [3], "data": [true, true, false]}}, "indices": {"__ndarray__": {"dtype": "<i8", "sha'
    'pe": [2], "data": [0, 1]}}, "pvalues": {"__ndarray__": {"dtype": "<f8", "shape": [3], "d'
    'ata": [6.366805760909033e-07, 0.000597928446682593, 0.19592542377711875]}}, "risk_pvalue'
    's": {"__ndarray__": {"dtype": "<f8", "shape": [1, 3], "data": [6.366805760909033e-07, 0.'
    '000597928446682593, 0.19592542377711875]}}, "order": {"__ndarray__": {"dtype": "<i8", "s'
    'hape": [3], "data": [0, 1, 2]}}, "alpha": {"__ndarray__": {"dtype": "<f8", "shape": [1],'
    ' "data": [0.3]}}, "delta": 0.1, "method": "binomial", "procedure": "fixed_sequence", "st'
    'rict": false, "n": 40, "calibration_sha256": "bd2cc1afce8582dea2c34b43305b83e52fcb58aa41'
    '102f2a842285d5241bd7a9", "reason": null, "min_n": null}, "checksum": "sha256:e1c2f417617'
    '45f0039e9fafe7b587643084e09f19e2fa79c97124ed775bd3deb"}'
)


def test_a_1_0_payload_without_later_defaulted_fields_still_loads() -> None:
    import ctd_stats

    old = ctd_stats.LTTResult.from_json(_LTT_1_0)
    assert "n_opt" not in json.loads(_LTT_1_0)["fields"]
    now = ctd_stats.learn_then_test(
        counts=np.array([0, 3, 9]), n=40, alpha=0.3, delta=0.1, order="ascending"
    )
    assert old == now
    # A missing field WITHOUT a default is still refused, and the checksum still guards edits.
    payload = json.loads(_LTT_1_0)
    del payload["fields"]["pvalues"]
    with pytest.raises(ValueError, match=r"text: fields of LTTResult do not match.*'pvalues'"):
        ctd_stats.LTTResult.from_json(_recheck(payload))
    payload = json.loads(_LTT_1_0)
    payload["fields"]["delta"] = 0.2
    with pytest.raises(ValueError, match="text: checksum mismatch"):
        ctd_stats.LTTResult.from_json(json.dumps(payload))


def test_every_package_result_has_a_distinct_kind() -> None:
    import ctd_stats
    from ctd_stats._serialize import _REGISTRY

    classes = {
        obj
        for name in ctd_stats.__all__
        if isinstance(obj := getattr(ctd_stats, name), type) and issubclass(obj, JSONSerializable)
    }
    assert classes
    kinds = [cls._json_kind for cls in classes]
    assert len(set(kinds)) == len(kinds)
    for cls in classes:
        assert _REGISTRY[cls._json_kind] is cls
        assert cls._json_kind.startswith("ctd_stats.")


def test_exact_equality_is_declared_not_inherited() -> None:
    @dataclass(frozen=True)
    class _Plain(JSONSerializable, kind="tests.Plain"):
        a: np.ndarray

    @exact_eq
    @dataclass(frozen=True)
    class _Exact(JSONSerializable, kind="tests.Exact"):
        a: np.ndarray

    x = np.array([1.0, np.nan])
    with pytest.raises(ValueError, match="truth value"):  # the dataclass tuple comparison
        _ = _Plain(x) == _Plain(x.copy())
    assert _Exact(x) == _Exact.from_json(_Exact(x).to_json())
    assert _Exact(x) != _Exact(np.array([1.0, 2.0]))
    assert _Exact(x) != _Exact(x.astype(np.float32))  # the dtype is part of the value
    assert (_Exact(x) == "x") is False


def test_from_json_takes_utf8_bytes_as_documented() -> None:
    """The docstring says str, bytes or bytearray (UTF-8); anything else is a TypeError."""
    original = _outer(np.array([1.0, np.inf, -0.0]), {"k": [1, 2]})
    text = original.to_json()
    assert "bytes" in (_Outer.from_json.__doc__ or "")
    for data in (text, text.encode(), bytearray(text.encode())):
        assert _Outer.from_json(data) == original
    with pytest.raises(ValueError, match=r"^text: not valid JSON"):
        _Outer.from_json(b"\xff" + text.encode())
    with pytest.raises(TypeError, match=r"^text: expected a JSON string or bytes, got int"):
        _Outer.from_json(3)  # type: ignore[arg-type]
