"""Exact, tamper-evident JSON for calibration results and monitor states.

A calibrated threshold is computed offline and used in a serving process; a running monitor is
checkpointed and restored. Both need a file that comes back *exactly* (every float bit-for-bit,
±∞ included) and that refuses to load when it was edited, truncated or written by a schema this
version does not know. The payload is::

    {"format": "ctd_stats", "schema_version": 1, "kind": "<class name>",
     "package_version": "...", "guarantee": "<the guarantee in words>", "n": <calibration size>,
     "calibration_sha256": "<sha256 of the calibration scores>" | null,
     "settings": {...}, "fields": {...}, "checksum": "sha256:<hex>"}

``fields`` holds every dataclass field (so ``from_json`` rebuilds the same object); ``settings``
repeats the user-chosen settings for a human reader. The checksum is the sha256 of the canonical
JSON of everything else. Python's ``repr`` of a float round-trips exactly, so plain JSON numbers
are exact; non-finite values, arrays, tuples and nested results are tagged objects.

Classes opt in by inheriting :class:`JSONSerializable` (frozen dataclasses only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["SCHEMA_VERSION", "JSONSerializable", "array_sha256"]

SCHEMA_VERSION = 1
_FORMAT = "ctd_stats"
_REGISTRY: dict[str, type[JSONSerializable]] = {}
_HEADER_KEYS = (
    "format",
    "schema_version",
    "kind",
    "package_version",
    "guarantee",
    "n",
    "calibration_sha256",
    "settings",
    "fields",
)

T = TypeVar("T", bound="JSONSerializable")


def array_sha256(values: ArrayLike) -> str:
    """sha256 of an array's float64 bytes (C order) and shape: identifies calibration scores."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    h = hashlib.sha256(repr(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def _package_version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------- encoding
def _encode_float(v: float) -> Any:
    if math.isfinite(v):
        return v
    return {"__float__": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _encode_float(float(value))
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"cannot serialise an array of dtype {value.dtype}")
        flat = value.ravel().tolist()
        data = [_encode_float(x) for x in flat] if value.dtype.kind == "f" else flat
        return {"__ndarray__": {"dtype": value.dtype.str, "shape": list(value.shape), "data": data}}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("cannot serialise a mapping with non-string keys")
        return {"__dict__": {k: _encode(v) for k, v in value.items()}}
    if isinstance(value, JSONSerializable):
        return {"__result__": {"kind": type(value).__name__, "fields": value._fields_json()}}
    raise TypeError(f"cannot serialise a value of type {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ValueError(f"text: malformed payload (untagged object with keys {sorted(value)})")
    ((tag, body),) = value.items()
    if tag == "__float__":
        if body not in ("nan", "inf", "-inf"):
            raise ValueError(f"text: malformed payload (unknown float {body!r})")
        return float(body)
    if tag == "__ndarray__":
        dtype = np.dtype(body["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"text: malformed payload (array dtype {dtype})")
        data = [_decode(x) for x in body["data"]]
        return np.array(data, dtype=dtype).reshape(body["shape"])
    if tag == "__tuple__":
        return tuple(_decode(v) for v in body)
    if tag == "__dict__":
        return {str(k): _decode(v) for k, v in body.items()}
    if tag == "__result__":
        return _build(body["kind"], body["fields"])
    raise ValueError(f"text: malformed payload (unknown tag {tag!r})")


def _build(kind: str, fields: Any) -> JSONSerializable:
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise ValueError(f"text: unknown result kind {kind!r}")
    if not isinstance(fields, dict):
        raise ValueError(f"text: malformed payload (fields of {kind} are not an object)")
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    if set(fields) != names:
        raise ValueError(
            f"text: fields of {kind} do not match this version "
            f"(missing {sorted(names - set(fields))}, unexpected {sorted(set(fields) - names)})"
        )
    decoded = {k: _decode(v) for k, v in fields.items()}
    return cls._from_fields(decoded)


def _canonical(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _checksum(payload: Mapping[str, Any]) -> str:
    body = {k: payload[k] for k in _HEADER_KEYS}
    return "sha256:" + hashlib.sha256(_canonical(body).encode()).hexdigest()


# --------------------------------------------------------------------------- equality
def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
        )
    if isinstance(a, (tuple, list)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(_values_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _fields_equal(self: Any, other: Any) -> Any:  # bool, or NotImplemented
    """Field-by-field equality; arrays equal when dtype, shape and values (NaN too) agree."""
    if type(other) is not type(self):
        return NotImplemented
    return all(
        _values_equal(getattr(self, f.name), getattr(other, f.name))
        for f in dataclasses.fields(self)
    )


# --------------------------------------------------------------------------- the mixin
class JSONSerializable:
    """Mixin for frozen dataclasses: ``to_json()`` and ``from_json(text)``, exact round trip.

    Subclasses may override :meth:`_json_meta` to state their guarantee, calibration size, the
    sha256 of the calibration scores and the user-chosen settings.
    """

    _json_guarantee: ClassVar[str] = ""
    #: Fields repeated under ``settings`` in the header, for a human reader of the file.
    _json_settings: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls
        # Set before @dataclass runs, so its generated __eq__ (a tuple comparison, which raises
        # on array fields) is not installed: ``loaded == original`` compares arrays exactly.
        if "__eq__" not in cls.__dict__:
            cls.__eq__ = _fields_equal  # type: ignore[method-assign]

    # Hooks -----------------------------------------------------------------
    def _json_meta(self) -> dict[str, Any]:
        """``guarantee``, ``n``, ``calibration_sha256`` and ``settings`` for the header.

        By default the object's own ``guarantee`` / ``n`` / ``calibration_sha256`` fields (where
        it has them; else ``_json_guarantee`` and ``None``) and its ``_json_settings`` fields.
        """
        return {
            "guarantee": getattr(self, "guarantee", self._json_guarantee),
            "n": getattr(self, "n", None),
            "calibration_sha256": getattr(self, "calibration_sha256", None),
            "settings": {name: getattr(self, name) for name in self._json_settings},
        }

    @classmethod
    def _from_fields(cls: type[T], fields: dict[str, Any]) -> T:
        return cls(**fields)

    def _fields_json(self) -> dict[str, Any]:
        return {
            f.name: _encode(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.init
        }

    # Public ------------------------------------------------------------------
    def to_json(self) -> str:
        """Exact JSON: schema version, guarantee, settings, n, data hash and a checksum."""
        meta = self._json_meta()
        payload: dict[str, Any] = {
            "format": _FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kind": type(self).__name__,
            "package_version": _package_version(),
            "guarantee": str(meta.get("guarantee", self._json_guarantee)),
            "n": meta.get("n"),
            "calibration_sha256": meta.get("calibration_sha256"),
            "settings": _encode(dict(meta.get("settings", {})))["__dict__"],
            "fields": self._fields_json(),
        }
        payload["checksum"] = _checksum(payload)
        return json.dumps(payload, allow_nan=False)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        """Rebuild the object written by :meth:`to_json`.

        Raises ``ValueError`` (message starting with ``text:``) for malformed JSON, a payload
        that is not this kind, an unknown schema version, or a checksum mismatch (an edited
        file); ``TypeError`` if ``text`` is not a string.
        """
        if not isinstance(text, (str, bytes, bytearray)):
            raise TypeError(f"text: expected a JSON string, got {type(text).__name__}")
        try:
            payload = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"text: not valid JSON ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError("text: not a ctd_stats payload (no 'format': 'ctd_stats')")
        version = payload.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"text: unknown schema_version {version!r}; this ctd_stats "
                f"{_package_version()} reads version {SCHEMA_VERSION}"
            )
        missing = [k for k in (*_HEADER_KEYS, "checksum") if k not in payload]
        if missing:
            raise ValueError(f"text: malformed payload (missing {missing})")
        try:
            expected = _checksum(payload)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"text: malformed payload ({exc})") from None
        if payload["checksum"] != expected:
            raise ValueError("text: checksum mismatch: the payload was modified or is corrupt")
        if payload["kind"] != cls.__name__:
            raise ValueError(f"text: holds a {payload['kind']!r} payload, not {cls.__name__!r}")
        try:
            obj = _build(cls.__name__, payload["fields"])
        except ValueError as exc:
            if str(exc).startswith("text:"):
                raise
            raise ValueError(f"text: malformed payload ({exc})") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"text: malformed payload ({exc!r})") from None
        assert isinstance(obj, cls)
        return obj
